/**
 * The FAT boot partition through mtools (`-i image@@offset`): no root and no kernel vfat driver
 * (the CI kernel has none). FAT has no modes, owners or symlinks; timestamps come from
 * SOURCE_DATE_EPOCH and are stored as local time, so TZ is pinned to UTC for identical bytes.
 */
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { run, ToolError } from '../exec/run.js';
import {
  baseName,
  type DirEntry,
  EditorBase,
  type EditorContext,
  type FileAttrs,
  FileNotFoundError,
  type FileStat,
  type FsEditor,
  normalizePath,
  parentOf,
  pathSegments,
} from './editor.js';

export class MtoolsEditor extends EditorBase implements FsEditor {
  readonly filesystem = 'fat';
  readonly backend = 'mtools';
  protected readonly checksOwnership = false;
  private staged = 0;
  private stagingDir?: string;
  /** Directory listings seen in this session, kept in step with our own changes. */
  private readonly listings = new Map<string, DirEntry[]>();

  constructor(private readonly ctx: EditorContext) {
    super();
  }

  private get drive(): string {
    return `${this.ctx.image}@@${this.ctx.offset}`;
  }

  private get env(): Record<string, string> {
    return {
      MTOOLS_SKIP_CHECK: '1',
      MTOOLSRC: '/dev/null', // no user configuration can change what we write
      SOURCE_DATE_EPOCH: String(this.ctx.epoch),
      TZ: 'UTC',
    };
  }

  private async mtools(tool: 'mcopy' | 'mmd' | 'mdel' | 'mdeltree' | 'mdir', args: string[]): Promise<string> {
    return (await run(tool, ['-i', this.drive, ...args], { env: this.env })).stdout;
  }

  private static dos(path: string): string {
    return `::${normalizePath(path)}`;
  }

  async list(path: string): Promise<DirEntry[]> {
    const st = await this.stat(path);
    if (!st) throw new FileNotFoundError(path);
    if (st.type !== 'dir') throw new Error(`${path} is not a directory`);
    return this.listRaw(path);
  }

  private async listRaw(path: string, options: { fresh?: boolean } = {}): Promise<DirEntry[]> {
    const key = normalizePath(path).toLowerCase();
    const cached = options.fresh ? undefined : this.listings.get(key);
    if (cached) return cached;
    const entries = await this.listFromDisk(path);
    this.listings.set(key, entries);
    return entries;
  }

  /** Record our own change in the cached listing of its parent. */
  private noteEntry(path: string, type: DirEntry['type'] | undefined): void {
    const parent = this.listings.get(parentOf(path).toLowerCase());
    if (!parent) return;
    const name = baseName(path);
    const rest = parent.filter((e) => e.name.toLowerCase() !== name.toLowerCase());
    this.listings.set(
      parentOf(path).toLowerCase(),
      type ? [...rest, { name, type }].sort((a, b) => a.name.localeCompare(b.name)) : rest,
    );
    if (type === undefined || type === 'dir') {
      for (const key of this.listings.keys())
        if (key.startsWith(`${normalizePath(path).toLowerCase()}/`) || key === normalizePath(path).toLowerCase())
          this.listings.delete(key);
      if (type === 'dir') this.listings.set(normalizePath(path).toLowerCase(), []);
    }
  }

  private async listFromDisk(path: string): Promise<DirEntry[]> {
    return (await this.mtools('mdir', ['-b', '-a', MtoolsEditor.dos(path)]))
      .split('\n')
      .filter((l) => l.startsWith('::'))
      .map((l) => ({
        name: l.replace(/\/$/, '').split('/').at(-1)!,
        type: l.endsWith('/') ? ('dir' as const) : ('file' as const),
      }))
      .filter((e) => e.name !== '.' && e.name !== '..')
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async stat(path: string, options: { fresh?: boolean } = {}): Promise<FileStat | undefined> {
    const segments = pathSegments(path);
    if (segments.length === 0) return { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0 };
    let entries: DirEntry[];
    try {
      entries = await this.listRaw(parentOf(path), options);
    } catch (error) {
      if (error instanceof ToolError && /not found|No such file/i.test(error.stderr)) return undefined;
      throw error;
    }
    // FAT names are case-insensitive.
    const entry = entries.find((e) => e.name.toLowerCase() === baseName(path).toLowerCase());
    return entry
      ? { type: entry.type, mode: entry.type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: this.ctx.epoch }
      : undefined;
  }

  async read(path: string): Promise<Buffer> {
    const st = await this.stat(path);
    if (!st) throw new FileNotFoundError(path);
    if (st.type !== 'file') throw new Error(`${path} is a ${st.type}, not a file`);
    return (await run('mtype', ['-i', this.drive, MtoolsEditor.dos(path)], { env: this.env, binary: true })).stdout;
  }

  async write(path: string, data: string | Buffer, attrs: FileAttrs = {}): Promise<void> {
    if (pathSegments(path).length === 0) throw new UserError('cannot write the root of the boot partition as a file.');
    const existing = await this.stat(path);
    if (existing?.type === 'dir')
      throw new UserError(`cannot write the file ${path} on the boot partition: a directory is in the way.`);
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
    this.stagingDir ??= await this.ctx.scope.tempDir('swarmcard-mtools-');
    const local = join(this.stagingDir, `file-${this.staged++}`);
    await writeFile(local, bytes);
    const mtime = attrs.mtime ?? this.ctx.epoch;
    await utimes(local, mtime, mtime);
    // -o overwrite without asking, -m keep the staged file's (fixed) mtime.
    await this.mtools('mcopy', ['-o', '-m', local, MtoolsEditor.dos(path)]);
    this.noteEntry(path, 'file');
    this.expectWrite(path, bytes, {});
  }

  async mkdir(path: string, attrs: FileAttrs & { parents?: boolean } = {}): Promise<void> {
    const segments = pathSegments(path);
    for (let i = 0; i < segments.length; i++) {
      const prefix = `/${segments.slice(0, i + 1).join('/')}`;
      const st = await this.stat(prefix);
      const last = i === segments.length - 1;
      if (st?.type === 'dir') continue;
      if (st) throw new UserError(`cannot create the directory ${path} on the boot partition: ${prefix} is a file.`);
      if (!last && !attrs.parents)
        throw new UserError(`cannot create the directory ${path} on the boot partition: ${prefix} does not exist.`);
      await this.mtools('mmd', [MtoolsEditor.dos(prefix)]);
      this.noteEntry(prefix, 'dir');
      this.expect(prefix, { type: 'dir', attrs: {} });
    }
  }

  async symlink(path: string): Promise<void> {
    throw new UserError(`cannot create the symlink ${path}: the boot partition is FAT, which has no symbolic links.`);
  }

  async remove(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    const st = await this.stat(path);
    if (!st) return;
    if (st.type === 'dir') {
      if (!options.recursive && (await this.listRaw(path)).length > 0) {
        throw new UserError(`cannot remove ${path} from the boot partition: the directory is not empty.`);
      }
      await this.mtools('mdeltree', [MtoolsEditor.dos(path)]);
    } else {
      await this.mtools('mdel', [MtoolsEditor.dos(path)]);
    }
    this.noteEntry(path, undefined);
    this.expect(path, 'absent');
  }

  /** Verify against fresh listings from disk, not the session's cache. */
  async commit(): Promise<void> {
    this.listings.clear();
    await this.verify();
  }
}
