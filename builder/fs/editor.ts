/**
 * The filesystem-editor interface every backend implements (balena-image-fs style: callers write
 * ordinary file code against one partition). Paths are absolute inside the partition; `..` may
 * not climb above its root and symlinks resolve inside it (chroot semantics), so nothing can be
 * read or written outside the partition.
 */
import { createHash } from 'node:crypto';
import { UserError } from '../errors.js';

export type FileType = 'file' | 'dir' | 'symlink' | 'other';

export interface FileAttrs {
  /** Permission bits, e.g. 0o600. Ignored on FAT. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch; defaults to the editor's build epoch. */
  mtime?: number;
}

export interface FileStat {
  type: FileType;
  /** Permission bits only (no file-type bits). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes; unknown (undefined) on FAT. */
  size?: number;
  mtime: number;
  /** For symlinks: the stored target. */
  target?: string;
}

export interface DirEntry {
  name: string;
  type: FileType;
}

export interface FsEditor {
  readonly filesystem: 'fat' | 'ext4';
  readonly backend: 'mtools' | 'debugfs' | 'loop';
  /** Read a file, following symlinks. */
  read(path: string): Promise<Buffer>;
  readText(path: string): Promise<string>;
  /** Like lstat: the final component is not followed. `undefined` when absent. */
  stat(path: string): Promise<FileStat | undefined>;
  exists(path: string): Promise<boolean>;
  list(path: string): Promise<DirEntry[]>;
  /** Create or replace a regular file (a symlink at `path` is replaced, not followed). */
  write(path: string, data: string | Buffer, attrs?: FileAttrs): Promise<void>;
  /** Create a directory; with `parents`, missing ancestors too (like `mkdir -p`). */
  mkdir(path: string, attrs?: FileAttrs & { parents?: boolean }): Promise<void>;
  symlink(path: string, target: string, attrs?: FileAttrs): Promise<void>;
  /** Remove a file, symlink or (with `recursive`) directory tree. Absent paths are fine. */
  remove(path: string, options?: { recursive?: boolean }): Promise<void>;
  /** Apply everything pending and read every change back; throws if anything differs. */
  commit(): Promise<void>;
}

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
    const prefixes = segments.map((_, i) => `/${segments.slice(0, i + 1).join('/')}`);
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

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

interface Expected {
  type: FileType;
  sha256?: string;
  target?: string;
  attrs: FileAttrs;
}

/**
 * Shared bookkeeping: remembers what each write promised so `commit()` can read it all back
 * through the backend and fail loudly on any difference (content, type, mode, owner, mtime).
 */
export abstract class EditorBase {
  protected readonly expected = new Map<string, Expected | 'absent'>();
  abstract read(path: string): Promise<Buffer>;
  abstract stat(path: string): Promise<FileStat | undefined>;
  protected abstract readonly checksOwnership: boolean;

  async readText(path: string): Promise<string> {
    return (await this.read(path)).toString('utf8');
  }

  async exists(path: string): Promise<boolean> {
    return (await this.stat(path)) !== undefined;
  }

  protected expect(path: string, value: Expected | 'absent'): void {
    this.expected.set(normalizePath(path), value);
    if (value === 'absent') {
      // Anything promised below a removed directory is gone too.
      for (const key of this.expected.keys())
        if (key.startsWith(`${normalizePath(path)}/`)) this.expected.set(key, 'absent');
    }
  }

  protected expectWrite(path: string, data: Buffer, attrs: FileAttrs): void {
    this.expect(path, { type: 'file', sha256: sha256(data), attrs });
  }

  /**
   * Read back every promised change. Called by `commit()` after pending work is applied; a
   * backend may pass readers that fetch everything from disk in one go.
   */
  protected async verify(
    from: { stat(path: string): Promise<FileStat | undefined>; read(path: string): Promise<Buffer> } = this,
  ): Promise<void> {
    const problems: string[] = [];
    for (const [path, want] of [...this.expected].sort(([a], [b]) => a.localeCompare(b))) {
      const got = await from.stat(path);
      if (want === 'absent') {
        if (got) problems.push(`${path} still exists`);
        continue;
      }
      if (!got) {
        problems.push(`${path} is missing`);
        continue;
      }
      if (got.type !== want.type) problems.push(`${path} is a ${got.type}, not a ${want.type}`);
      if (want.sha256 && sha256(await from.read(path)) !== want.sha256) problems.push(`${path} content differs`);
      if (want.target !== undefined && got.target !== want.target)
        problems.push(`${path} points to ${got.target}, not ${want.target}`);
      if (this.checksOwnership) {
        const a = want.attrs;
        if (a.mode !== undefined && got.mode !== a.mode)
          problems.push(`${path} has mode ${got.mode.toString(8)}, not ${a.mode.toString(8)}`);
        if (a.uid !== undefined && got.uid !== a.uid) problems.push(`${path} has uid ${got.uid}, not ${a.uid}`);
        if (a.gid !== undefined && got.gid !== a.gid) problems.push(`${path} has gid ${got.gid}, not ${a.gid}`);
        if (a.mtime !== undefined && want.type === 'file' && got.mtime !== a.mtime)
          problems.push(`${path} has mtime ${got.mtime}, not ${a.mtime}`);
      }
    }
    if (problems.length > 0) throw new Error(`read-back verification failed: ${problems.join('; ')}`);
    this.expected.clear();
  }
}

/** Reading something that is not there. Callers that probe (inspect) catch exactly this. */
export class FileNotFoundError extends Error {
  constructor(readonly path: string) {
    super(`${path} does not exist in the image`);
    this.name = 'FileNotFoundError';
  }
}

/** Where a partition lives inside an image file. */
export interface PartitionLocation {
  image: string;
  offset: number;
  size: number;
}

export interface EditorContext extends PartitionLocation {
  /** Timestamp (seconds) for everything written: SOURCE_DATE_EPOCH / the profile's sourceDateEpoch. */
  epoch: number;
  /** Holds temp dirs, loop devices and mounts; closed by the caller (see `withPartition`). */
  scope: import('../util/scope.js').Scope;
}
