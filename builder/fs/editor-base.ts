/**
 * The rules every editor shares, written once: how paths resolve, what may stand in the way of a
 * write, `mkdir -p`, when a directory may be removed, and the read-back of every promised change at
 * commit. A backend (fat-mtools.ts, ext4-debugfs.ts, ext4-loop.ts) implements only the primitives
 * below, each called with a canonical path (no symlink in it) once the shared rules have passed.
 */
import { createHash } from 'node:crypto';
import { UserError } from '../errors.js';
import {
  type DirEntry,
  type FileAttrs,
  FileNotFoundError,
  type FileStat,
  type FileType,
  type FsEditor,
} from './editor.js';
import {
  baseName,
  canonicalPath,
  childOf,
  isBelow,
  normalizePath,
  parentOf,
  pathPrefixes,
  pathSegments,
} from './paths.js';

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

interface Expected {
  type: FileType;
  sha256?: string;
  target?: string;
  attrs: FileAttrs;
}

export abstract class EditorBase implements FsEditor {
  abstract readonly filesystem: FsEditor['filesystem'];
  abstract readonly backend: FsEditor['backend'];
  /**
   * ext4 stores modes and owners. FAT has neither: there `mode`, `uid` and `gid` are ignored and
   * nothing but type and content is read back.
   */
  protected abstract readonly storesOwnership: boolean;
  /** Named in refusals where it helps the reader ("the boot partition"). */
  protected readonly partitionName?: string;
  /** What each change promised, by canonical path, for the read-back in `commit()`. */
  protected readonly expected = new Map<string, Expected | 'absent'>();

  // Primitives. `existing` is what the shared rules found at the path.
  protected abstract lstatMany(paths: string[]): Promise<(FileStat | undefined)[]>;
  protected abstract readAt(path: string): Promise<Buffer>;
  protected abstract listAt(path: string): Promise<DirEntry[]>;
  /** Create or replace a regular file; returns the attributes it now has. */
  protected abstract writeAt(
    path: string,
    data: Buffer,
    attrs: FileAttrs,
    existing: FileStat | undefined,
  ): Promise<FileAttrs>;
  /** Create the directory unless it `exists`, then apply `attrs`; returns the attributes it now has. */
  protected abstract mkdirAt(path: string, attrs: FileAttrs, options: { exists: boolean }): Promise<FileAttrs>;
  /** Absent on a filesystem without symbolic links. Returns the attributes the link now has. */
  protected symlinkAt?(path: string, target: string, attrs: FileAttrs, existing?: FileStat): Promise<FileAttrs>;
  /** Remove a file, symlink or directory; a directory is empty unless `recursive`. */
  protected abstract removeAt(path: string, existing: FileStat, options: { recursive?: boolean }): Promise<void>;
  abstract commit(): Promise<void>;

  /** Canonical path; the parent is always resolved, the last component only with `followLast`. */
  protected async resolve(path: string, options: { followLast: boolean }): Promise<string> {
    const lstatMany = (paths: string[]) => this.lstatMany(paths);
    if (options.followLast) return canonicalPath(path, lstatMany, { followLast: true });
    if (pathSegments(path).length === 0) return '/';
    return childOf(await canonicalPath(parentOf(path), lstatMany, { followLast: true }), baseName(path));
  }

  /** Only a hint (FsEditor.prefetch): backends that answer cheaply ignore it. */
  async prefetch(_paths: string[]): Promise<void> {}

  protected async lstat(path: string): Promise<FileStat | undefined> {
    return (await this.lstatMany([path]))[0];
  }

  async stat(path: string): Promise<FileStat | undefined> {
    return this.lstat(await this.resolve(path, { followLast: false }));
  }

  async exists(path: string): Promise<boolean> {
    return (await this.stat(path)) !== undefined;
  }

  async read(path: string): Promise<Buffer> {
    const resolved = await this.resolve(path, { followLast: true });
    const st = await this.lstat(resolved);
    if (!st) throw new FileNotFoundError(path);
    if (st.type !== 'file') throw new Error(`${path} is a ${st.type}, not a file`);
    return this.readAt(resolved);
  }

  async readText(path: string): Promise<string> {
    return (await this.read(path)).toString('utf8');
  }

  async list(path: string): Promise<DirEntry[]> {
    const resolved = await this.resolve(path, { followLast: true });
    const st = await this.lstat(resolved);
    if (!st) throw new FileNotFoundError(path);
    if (st.type !== 'dir') throw new Error(`${path} is not a directory`);
    return this.listAt(resolved);
  }

  async write(path: string, data: string | Buffer, attrs: FileAttrs = {}): Promise<void> {
    const target = await this.resolve(path, { followLast: false });
    const existing = await this.lstat(target);
    if (existing?.type === 'dir')
      throw new UserError(`cannot write the file ${path}${this.where('on')}: a directory is in the way.`);
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const applied = await this.writeAt(target, bytes, attrs, existing);
    this.expect(target, { type: 'file', sha256: sha256(bytes), attrs: applied });
  }

  /** Missing ancestors get only `mtime`; the directory itself gets every attribute given. */
  async mkdir(path: string, attrs: FileAttrs & { parents?: boolean } = {}): Promise<void> {
    const target = await this.resolve(path, { followLast: true });
    const prefixes = pathPrefixes(target);
    const stats = await this.lstatMany(prefixes);
    // An existing directory is left alone unless it is asked for a mode or owner it can store.
    const setsOwnership =
      this.storesOwnership && (attrs.mode !== undefined || attrs.uid !== undefined || attrs.gid !== undefined);
    for (const [i, prefix] of prefixes.entries()) {
      const st = stats[i];
      const last = i === prefixes.length - 1;
      const refuse = (why: string) =>
        new UserError(`cannot create the directory ${path}${this.where('on')}: ${prefix} ${why}.`);
      if (st && st.type !== 'dir') throw refuse(`is a ${st.type}`);
      if (st && !(last && setsOwnership)) continue;
      if (!st && !last && !attrs.parents) throw refuse('does not exist');
      const applied = await this.mkdirAt(prefix, last ? attrs : { mtime: attrs.mtime }, { exists: st !== undefined });
      this.expect(prefix, { type: 'dir', attrs: applied });
    }
  }

  async symlink(path: string, linkTarget: string, attrs: FileAttrs = {}): Promise<void> {
    if (!this.symlinkAt) {
      const partition = this.partitionName ?? 'the partition';
      throw new UserError(
        `cannot create the symlink ${path}: ${partition} is ${this.filesystem.toUpperCase()}, ` +
          'which has no symbolic links.',
      );
    }
    const target = await this.resolve(path, { followLast: false });
    const existing = await this.lstat(target);
    if (existing?.type === 'dir')
      throw new UserError(`cannot create the symlink ${path}${this.where('on')}: a directory is in the way.`);
    const { uid, gid } = await this.symlinkAt(target, linkTarget, attrs, existing);
    this.expect(target, { type: 'symlink', target: linkTarget, attrs: { uid, gid } });
  }

  async remove(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    const target = await this.resolve(path, { followLast: false });
    const existing = await this.lstat(target);
    if (!existing) return;
    if (existing.type === 'dir' && !options.recursive && (await this.list(target)).length > 0)
      throw new UserError(`cannot remove ${path}${this.where('from')}: the directory is not empty.`);
    await this.removeAt(target, existing, options);
    this.expect(target, 'absent');
  }

  /** " on the boot partition" where the partition is named, else nothing. */
  private where(preposition: 'on' | 'from'): string {
    return this.partitionName ? ` ${preposition} ${this.partitionName}` : '';
  }

  private expect(path: string, value: Expected | 'absent'): void {
    const key = normalizePath(path);
    this.expected.set(key, value);
    if (value === 'absent') {
      // Anything promised below a removed directory is gone too.
      for (const promised of this.expected.keys()) if (isBelow(promised, key)) this.expected.set(promised, 'absent');
    }
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
      if (this.storesOwnership) {
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
