/** Undoing `mkdir -p` after a failure: the folders it made go again while they are empty. */
import { rmdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** rmdir `dir` and its parents up to `first` (what `mkdir(dir, { recursive: true })` returned) while empty. */
export async function removeEmptyUpTo(dir: string, first: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    // One that is not there (never made, or gone) is passed by: its parents may still be empty.
    const removed = await rmdir(d).then(
      () => true,
      (error: NodeJS.ErrnoException) => error.code === 'ENOENT',
    );
    // Compared resolved: `first` may be absolute where `dir` is relative, or the reverse.
    if (!removed || resolve(d) === resolve(first) || dirname(d) === d) return;
  }
}
