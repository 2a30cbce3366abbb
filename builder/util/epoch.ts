import { UserError } from '../errors.js';

/**
 * The timestamp every written file gets: SOURCE_DATE_EPOCH when set (reproducible-builds.org),
 * otherwise the caller's fixed fallback (a profile's sourceDateEpoch). Never the clock.
 */
export function buildEpoch(fallback: number): number {
  const raw = process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw))
    throw new UserError(
      `SOURCE_DATE_EPOCH="${raw}" is not a whole number of seconds; unset it or set it to e.g. 1700000000.`,
    );
  return Number(raw);
}
