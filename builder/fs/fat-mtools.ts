/**
 * The FAT boot partition through mtools (`-i image@@offset`): no root and no kernel vfat driver
 * (the CI kernel has none). FAT has no modes, owners or symlinks; timestamps come from
 * SOURCE_DATE_EPOCH and are stored as local time, so TZ is pinned to UTC for identical bytes.
 */
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { run, ToolError } from '../exec/run.js';
import type { DirEntry, EditorContext, FileAttrs, FileStat } from './editor.js';
import { EditorBase } from './editor-base.js';
import { baseName, isBelow, normalizePath, parentOf, pathSegments } from './paths.js';

/** FAT names are case-insensitive: listings are cached under the lower-cased path. */
const listingKey = (path: string): string => normalizePath(path).toLowerCase();

export class MtoolsEditor extends EditorBase {
  readonly filesystem = 'fat';
  readonly backend = 'mtools';
  protected readonly storesOwnership = false;
  protected override readonly partitionName = 'the boot partition';
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
    return (await run(tool, ['-i', this.drive, ...args], { env: this.env }).catch(this.damaged)).stdout;
  }

  /** mtools' words for a broken FAT: the image's fault, said as such. */
  private readonly damaged = (error: unknown): never => {
    const line = error instanceof ToolError ? /^.*(Bad FAT entry|fat_read).*$/im.exec(error.stderr) : null;
    if (!line) throw error;
    throw new UserError(
      `the boot partition of ${this.ctx.image} is damaged (${line[0].trim()}); check it with "fsck.vfat -n" ` +
        'or download the image again.',
      { cause: error },
    );
  };

  private static dos(path: string): string {
    return `::${normalizePath(path)}`;
  }

  /** FAT has no symlinks, so every path is already canonical. */
  protected override async resolve(path: string): Promise<string> {
    return normalizePath(path);
  }

  /** One at a time: nothing exists below a missing entry or a file (and mdir would list the file itself). */
  protected async lstatMany(paths: string[]): Promise<(FileStat | undefined)[]> {
    const answers = new Map<string, FileStat | undefined>();
    for (const path of paths) {
      const blocked = [...answers].some(([other, st]) => st?.type !== 'dir' && isBelow(path, other));
      answers.set(path, blocked ? undefined : await this.lstatOne(path));
    }
    return paths.map((path) => answers.get(path));
  }

  private async lstatOne(path: string): Promise<FileStat | undefined> {
    if (pathSegments(path).length === 0) return { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0 };
    let entries: DirEntry[];
    try {
      entries = await this.listing(parentOf(path));
    } catch (error) {
      if (error instanceof ToolError && /not found|No such file/i.test(error.stderr)) return undefined;
      throw error;
    }
    const entry = entries.find((e) => e.name.toLowerCase() === baseName(path).toLowerCase());
    return entry
      ? { type: entry.type, mode: entry.type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: this.ctx.epoch }
      : undefined;
  }

  private async listing(path: string): Promise<DirEntry[]> {
    const cached = this.listings.get(listingKey(path));
    if (cached) return cached;
    const entries = (await this.mtools('mdir', ['-b', '-a', MtoolsEditor.dos(path)]))
      .split('\n')
      .filter((l) => l.startsWith('::'))
      .map((l) => ({
        name: l.replace(/\/$/, '').split('/').at(-1)!,
        type: l.endsWith('/') ? ('dir' as const) : ('file' as const),
      }))
      .filter((e) => e.name !== '.' && e.name !== '..')
      .sort((a, b) => a.name.localeCompare(b.name));
    this.listings.set(listingKey(path), entries);
    return entries;
  }

  /** Record our own change (`undefined`: removed) in the cached listing of its parent. */
  private noteEntry(path: string, type: DirEntry['type'] | undefined): void {
    const parentKey = listingKey(parentOf(path));
    const parent = this.listings.get(parentKey);
    if (!parent) return;
    const name = baseName(path);
    const rest = parent.filter((e) => e.name.toLowerCase() !== name.toLowerCase());
    this.listings.set(parentKey, type ? [...rest, { name, type }].sort((a, b) => a.name.localeCompare(b.name)) : rest);
    if (type === undefined || type === 'dir') {
      const key = listingKey(path);
      for (const cached of this.listings.keys())
        if (cached === key || isBelow(cached, key)) this.listings.delete(cached);
      if (type === 'dir') this.listings.set(key, []);
    }
  }

  protected async readAt(path: string): Promise<Buffer> {
    const args = ['-i', this.drive, MtoolsEditor.dos(path)];
    return (await run('mtype', args, { env: this.env, binary: true }).catch(this.damaged)).stdout;
  }

  protected listAt(path: string): Promise<DirEntry[]> {
    return this.listing(path);
  }

  protected async writeAt(path: string, data: Buffer, attrs: FileAttrs): Promise<FileAttrs> {
    this.stagingDir ??= await this.ctx.scope.tempDir('swarmcard-mtools-');
    const local = join(this.stagingDir, `file-${this.staged++}`);
    await writeFile(local, data);
    const mtime = attrs.mtime ?? this.ctx.epoch;
    await utimes(local, mtime, mtime);
    // -o overwrite without asking, -m keep the staged file's (fixed) mtime.
    await this.mtools('mcopy', ['-o', '-m', local, MtoolsEditor.dos(path)]);
    this.noteEntry(path, 'file');
    return {};
  }

  protected async mkdirAt(path: string, _attrs: FileAttrs, options: { exists: boolean }): Promise<FileAttrs> {
    if (!options.exists) {
      await this.mtools('mmd', [MtoolsEditor.dos(path)]);
      this.noteEntry(path, 'dir');
    }
    return {};
  }

  protected async removeAt(path: string, existing: FileStat): Promise<void> {
    await this.mtools(existing.type === 'dir' ? 'mdeltree' : 'mdel', [MtoolsEditor.dos(path)]);
    this.noteEntry(path, undefined);
  }

  /** Verify against fresh listings from disk, not the session's cache. */
  async commit(): Promise<void> {
    this.listings.clear();
    await this.verify();
  }
}
