/**
 * One writer per cluster folder. A build or a merge holds `<parent>/.<folder>.lock` from before it
 * looks into the folder until it leaves it, so two runs into one `--out` cannot remove or
 * overwrite each other's files. proper-lockfile makes the lock a folder (mkdir is atomic, also on
 * NFS) and refreshes its mtime while it is held: a lock whose holder was killed (kill -9, power
 * cut) goes stale after STALE_MS and the next run takes it over; a clean exit or Ctrl-C removes it.
 * Readers (merge of a shard, flash of a folder) only check it.
 */
import { basename, dirname, join } from 'node:path';
import lockfile from 'proper-lockfile';
import { UserError } from '../errors.js';
import { log } from '../log.js';
import type { Scope } from './scope.js';

/** Long enough for a busy machine to refresh it (every STALE_MS / 2), short enough to wait out. */
const STALE_MS = 30_000;

export const lockPathOf = (dir: string): string => join(dirname(dir), `.${basename(dir)}.lock`);

const optionsFor = (dir: string) => ({ lockfilePath: lockPathOf(dir), realpath: false, stale: STALE_MS });

const busy = (dir: string, doing: string) =>
  new UserError(
    `${dir} is being written by another swarmcard run (it holds ${lockPathOf(dir)}); wait for it to finish ` +
      `before ${doing}. A lock left by a run that was killed goes stale within ${STALE_MS / 1000} s.`,
  );

/** Take `dir`'s lock for the scope's life; its parent must exist. Refused at once when held. */
export async function lockFolder(scope: Scope, dir: string): Promise<void> {
  const release = await lockfile
    .lock(dir, {
      ...optionsFor(dir),
      onCompromised: (error) =>
        log.warn(`the lock on ${dir} was lost (${error.message}): another run may be writing into it as well.`),
    })
    .catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ELOCKED') throw busy(dir, 'writing into it');
      // A read-only or full --out: said of the folder the user asked for, not of the lock.
      if (error.path === lockPathOf(dir)) error.path = dir;
      throw error;
    });
  scope.defer(`unlock ${dir}`, () => release().catch(() => undefined));
}

/** Refuse to read `dir` while a run holds its lock: its files are not all written yet. */
export async function assertNotBeingWritten(dir: string, doing: string): Promise<void> {
  // A folder whose parent cannot be read has no lock to find; reading it fails on its own.
  if (await lockfile.check(dir, optionsFor(dir)).catch(() => false)) throw busy(dir, doing);
}
