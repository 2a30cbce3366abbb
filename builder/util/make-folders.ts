/**
 * Making folders, and why it failed. Kept out of errors.ts, which planning imports and which must
 * not reach the file system.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdir, readlink, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { UserError } from '../errors.js';

/**
 * `mkdir -p`, one level at a time; returns the first folder it made, as Node's recursive mkdir
 * does. That one spins for ever where mkdir answers ENOENT under a folder that exists (procfs,
 * sysfs: `--out /proc/x`); made level by level, such a folder fails at once, with its path.
 */
export async function makeFolders(dir: string, mode?: number): Promise<string | undefined> {
  const missing: string[] = [];
  // Walked as given, so the folder returned is in the caller's form (relative stays relative).
  for (let at = dir; ; at = dirname(at)) {
    const found = await stat(at).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    // A file in the way: mkdir says so (EEXIST for the folder itself, ENOTDIR below it).
    if (found && !found.isDirectory() && missing.length === 0) await mkdir(at);
    if (found || at === dirname(at)) break;
    missing.unshift(at);
  }
  for (const folder of missing)
    await mkdir(folder, { mode }).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
      // Made meanwhile by another process: fine. A link to nothing "exists" for mkdir, not for stat.
      const link = await readlink(folder).catch(() => undefined);
      if (link !== undefined && !existsSync(folder))
        throw new UserError(
          `${folder} is a symbolic link to ${link}, which does not exist; make that folder or choose another path.`,
        );
    });
  return missing[0];
}

/**
 * mkdir reports ENOENT when the folder it would create is on a read-only or unwritable
 * filesystem: ask the deepest folder that exists why (no side effects), keeping the path. Where
 * that folder is the parent and writable, it is a filesystem that makes no folders (procfs).
 */
export function realMkdirCause(error: unknown): unknown {
  const errno = error as NodeJS.ErrnoException;
  if (!(error instanceof Error) || errno.code !== 'ENOENT' || errno.syscall !== 'mkdir' || !errno.path) return error;
  let dir = errno.path;
  while (dir !== dirname(dir) && !existsSync(dir)) dir = dirname(dir);
  // Its parent is there, yet mkdir says ENOENT: a filesystem that makes no folders, for anyone.
  if (dir === dirname(errno.path))
    return new UserError(
      `${errno.path} cannot be created: ${dir} takes no new folders (a virtual filesystem such as /proc); ` +
        'choose another path.',
      { cause: error },
    );
  try {
    accessSync(dir, constants.W_OK);
    return error;
  } catch (cause) {
    return Object.assign(cause as NodeJS.ErrnoException, { path: errno.path });
  }
}
