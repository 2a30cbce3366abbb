/**
 * Paths inside a partition: absolute, `/`-separated, never above the partition's root. Symlinks
 * resolve the way the image itself sees them (chroot semantics), so nothing outside is reachable.
 */
import { UserError } from '../errors.js';
import type { FileStat } from './editor.js';

/** Split an absolute in-partition path into segments, refusing anything that leaves the root. */
export function pathSegments(path: string): string[] {
  if (!path.startsWith('/')) throw new UserError(`"${path}" is not an absolute path inside the partition.`);
  if (/[\0\n\r]/.test(path)) throw new UserError(`the path ${JSON.stringify(path)} contains a control character.`);
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (out.length === 0) throw new UserError(`the path "${path}" climbs above the partition's root.`);
      out.pop();
    } else out.push(segment);
  }
  return out;
}

export function normalizePath(path: string): string {
  return `/${pathSegments(path).join('/')}`;
}

export const parentOf = (path: string): string => normalizePath(`${path}/..`);
export const baseName = (path: string): string => pathSegments(path).at(-1) ?? '';

/** `name` inside the normalized directory `dir`. */
export const childOf = (dir: string, name: string): string => `${dir === '/' ? '' : dir}/${name}`;

/** Whether normalized `path` lies strictly below normalized `dir`. */
export const isBelow = (path: string, dir: string): boolean => path.startsWith(`${dir === '/' ? '' : dir}/`);

/** Every ancestor of a path and the path itself, shortest first: `/a/b` → `/a`, `/a/b`. */
export const pathPrefixes = (path: string): string[] => prefixesOf(pathSegments(path));

const prefixesOf = (segments: string[]): string[] => segments.map((_, i) => `/${segments.slice(0, i + 1).join('/')}`);

/**
 * Resolve symlinks the way the image itself would see them (absolute targets from the partition's
 * root, `..` clamped at the root). `lstatMany` is batched so debugfs answers in one call.
 */
export async function canonicalPath(
  path: string,
  lstatMany: (paths: string[]) => Promise<(FileStat | undefined)[]>,
  options: { followLast: boolean },
): Promise<string> {
  let segments = pathSegments(path);
  for (let hops = 0; hops < 40; hops++) {
    const prefixes = prefixesOf(segments);
    const checked = options.followLast ? prefixes : prefixes.slice(0, -1);
    const stats = checked.length > 0 ? await lstatMany(checked) : [];
    const index = stats.findIndex((s) => s?.type === 'symlink');
    if (index === -1) return `/${segments.join('/')}`;
    const target = stats[index]!.target ?? '';
    const base = target.startsWith('/') ? [] : segments.slice(0, index);
    const next: string[] = [];
    for (const segment of [...base, ...target.split('/'), ...segments.slice(index + 1)]) {
      if (segment === '' || segment === '.') continue;
      if (segment === '..') next.pop();
      else next.push(segment);
    }
    segments = next;
  }
  throw new UserError(`too many levels of symbolic links resolving "${path}" inside the image.`);
}
