import { UserError } from '../errors.js';

/**
 * The range of timestamps every image format we write can hold: FAT stores years 1980–2107 and
 * ext4's classic inode fields end in January 2038, so an epoch outside this range would be
 * written as some other date (and fail the read-back). Validation and the build share it.
 */
export const EPOCH_MIN = 315532800; // 1980-01-01T00:00:00Z
export const EPOCH_MAX = 2147483647; // 2038-01-19T03:14:07Z
export const epochRange = `${EPOCH_MIN} (1980-01-01) to ${EPOCH_MAX} (2038-01-19)`;

/**
 * The timestamp every written file gets: SOURCE_DATE_EPOCH when set (reproducible-builds.org),
 * otherwise the caller's fixed fallback (a profile's sourceDateEpoch). Never the clock.
 */
export function buildEpoch(fallback: number): number {
  const raw = process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < EPOCH_MIN || Number(raw) > EPOCH_MAX)
    throw new UserError(
      `SOURCE_DATE_EPOCH="${raw}" is not a whole number of seconds from ${epochRange}; ` +
        'unset it or set it to e.g. 1700000000.',
    );
  return Number(raw);
}
