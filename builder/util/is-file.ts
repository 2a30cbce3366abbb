import { stat } from 'node:fs/promises';

/** Whether `path` is a regular file (following symlinks); false when it is absent or unreadable. */
export function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}
