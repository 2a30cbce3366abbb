/**
 * Node's recursive mkdir reports ENOENT when the folder it would create is on a read-only or
 * unwritable filesystem: ask the deepest folder that exists why (no side effects), keeping the path.
 * Kept out of errors.ts, which planning imports and which must not reach the file system.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname } from 'node:path';

export function realMkdirCause(error: unknown): unknown {
  const errno = error as NodeJS.ErrnoException;
  if (!(error instanceof Error) || errno.code !== 'ENOENT' || errno.syscall !== 'mkdir' || !errno.path) return error;
  let dir = errno.path;
  while (dir !== dirname(dir) && !existsSync(dir)) dir = dirname(dir);
  try {
    accessSync(dir, constants.W_OK);
    return error;
  } catch (cause) {
    return Object.assign(cause as NodeJS.ErrnoException, { path: errno.path });
  }
}
