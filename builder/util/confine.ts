/**
 * Confinement of the files a profile names: after symlinks, each must lie inside the profile's
 * directory (an overlay's sources: inside its overlays directory) or inside a directory the user
 * allowed on the command line (`--allow-path DIR`), so a profile cannot copy any file of the build
 * machine (`compose: /etc/passwd`) into an image.
 */
import { realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';

let allowed: string[] = [];

/** The directories given with `--allow-path`. */
export function allowPaths(dirs: readonly string[]): void {
  allowed = dirs.map((d) => resolve(d));
}

/** The real path of `path`; for a file that does not exist yet, its real parent plus its name. */
async function real(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return join(await real(dirname(path)).catch(() => dirname(path)), basename(path));
  }
}

const inside = (path: string, root: string): boolean => {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
};

/** Undefined when `path` resolves inside `root` or an allowed directory, else where it resolves. */
export async function escapes(path: string, root: string): Promise<string | undefined> {
  const resolved = await real(path);
  const roots = await Promise.all([root, ...allowed].map((r) => real(r)));
  return roots.some((r) => inside(resolved, r)) ? undefined : resolved;
}

export const allowHint = 'move it next to the profile or allow its directory with --allow-path DIR';
