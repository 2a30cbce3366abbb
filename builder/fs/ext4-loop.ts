/**
 * ext4 through the kernel: a loop device at the partition's offset, mounted on a temp dir. Opt-in
 * and root only. NOT byte-reproducible: the kernel stamps mount times and the last-mounted path,
 * writes journal transactions and picks random inode generations (docs/tools.md). Every path is
 * resolved inside the mount with the image's own symlink rules, so absolute links in the image
 * (/etc/resolv.conf → /run/…) can never reach the host.
 */
import {
  chmod,
  chown,
  lchown,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { run } from '../exec/run.js';
import { log } from '../log.js';
import {
  baseName,
  canonicalPath,
  type DirEntry,
  EditorBase,
  type EditorContext,
  type FileAttrs,
  FileNotFoundError,
  type FileStat,
  type FileType,
  type FsEditor,
  parentOf,
  pathSegments,
} from './editor.js';

/** Retry transient EBUSY on detach/unmount: udev or a late flush can hold the device briefly. */
async function retryBusy(action: () => Promise<unknown>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await action();
      return;
    } catch (error) {
      if (attempt >= 5 || !/busy/i.test(String(error))) throw error;
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
  }
}

export class LoopEditor extends EditorBase implements FsEditor {
  readonly filesystem = 'ext4';
  readonly backend = 'loop';
  protected readonly checksOwnership = true;

  private constructor(
    private readonly ctx: EditorContext,
    private readonly root: string,
  ) {
    super();
  }

  static async open(ctx: EditorContext): Promise<LoopEditor> {
    if (process.getuid?.() !== 0)
      throw new UserError('the loop backend needs root; run as root or use the default debugfs backend.');
    log.warn('the loop backend mounts ext4 with the kernel: the image will not be byte-reproducible.');
    const mountPoint = await ctx.scope.tempDir('swarmcard-mnt-');
    const { stdout } = await run('losetup', [
      '--find',
      '--show',
      '--offset',
      String(ctx.offset),
      '--sizelimit',
      String(ctx.size),
      ctx.image,
    ]);
    const device = stdout.trim();
    ctx.scope.defer(`detach ${device}`, () => retryBusy(() => run('losetup', ['--detach', device])));
    await run('mount', ['-t', 'ext4', device, mountPoint]);
    ctx.scope.defer(`unmount ${mountPoint}`, () => retryBusy(() => run('umount', [mountPoint])));
    return new LoopEditor(ctx, mountPoint);
  }

  private host(path: string): string {
    return join(this.root, ...pathSegments(path));
  }

  private async lstatOne(path: string): Promise<FileStat | undefined> {
    try {
      const st = await lstat(this.host(path));
      const type: FileType = st.isFile()
        ? 'file'
        : st.isDirectory()
          ? 'dir'
          : st.isSymbolicLink()
            ? 'symlink'
            : 'other';
      return {
        type,
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        mtime: Math.floor(st.mtimeMs / 1000),
        target: type === 'symlink' ? await readlink(this.host(path)) : undefined,
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR')
        return undefined;
      throw error;
    }
  }

  private resolve(path: string, followLast: boolean): Promise<string> {
    const lstatMany = (paths: string[]) => Promise.all(paths.map((p) => this.lstatOne(p)));
    if (followLast || pathSegments(path).length === 0) return canonicalPath(path, lstatMany, { followLast: true });
    return canonicalPath(parentOf(path), lstatMany, { followLast: true }).then(
      (parent) => `${parent === '/' ? '' : parent}/${baseName(path)}`,
    );
  }

  async stat(path: string): Promise<FileStat | undefined> {
    return this.lstatOne(await this.resolve(path, false));
  }

  async read(path: string): Promise<Buffer> {
    const resolved = await this.resolve(path, true);
    const st = await this.lstatOne(resolved);
    if (!st) throw new FileNotFoundError(path);
    if (st.type !== 'file') throw new Error(`${path} is a ${st.type}, not a file`);
    return readFile(this.host(resolved));
  }

  async list(path: string): Promise<DirEntry[]> {
    const resolved = await this.resolve(path, true);
    const entries = await readdir(this.host(resolved), { withFileTypes: true }).catch(
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') throw new FileNotFoundError(path);
        throw error;
      },
    );
    return entries
      .map((e) => ({
        name: e.name,
        type: (e.isFile() ? 'file' : e.isDirectory() ? 'dir' : e.isSymbolicLink() ? 'symlink' : 'other') as FileType,
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  private async applyAttrs(resolved: string, attrs: FileAttrs, defaultMode: number): Promise<FileAttrs> {
    const applied = {
      mode: attrs.mode ?? defaultMode,
      uid: attrs.uid ?? 0,
      gid: attrs.gid ?? 0,
      mtime: attrs.mtime ?? this.ctx.epoch,
    };
    const host = this.host(resolved);
    await chown(host, applied.uid, applied.gid);
    await chmod(host, applied.mode); // after chown, which clears setuid bits
    await utimes(host, applied.mtime, applied.mtime);
    return applied;
  }

  async write(path: string, data: string | Buffer, attrs: FileAttrs = {}): Promise<void> {
    const resolved = await this.resolve(path, false);
    const existing = await this.lstatOne(resolved);
    if (existing?.type === 'dir') throw new UserError(`cannot write the file ${path}: a directory is in the way.`);
    if (existing) await rm(this.host(resolved));
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
    await writeFile(this.host(resolved), bytes, { mode: 0o600 });
    this.expectWrite(resolved, bytes, await this.applyAttrs(resolved, attrs, 0o644));
  }

  async mkdir(path: string, attrs: FileAttrs & { parents?: boolean } = {}): Promise<void> {
    const resolved = await this.resolve(path, true);
    const segments = pathSegments(resolved);
    for (let i = 0; i < segments.length; i++) {
      const prefix = `/${segments.slice(0, i + 1).join('/')}`;
      const last = i === segments.length - 1;
      const st = await this.lstatOne(prefix);
      if (st && st.type !== 'dir')
        throw new UserError(`cannot create the directory ${path}: ${prefix} is a ${st.type}.`);
      if (st && !last) continue;
      if (!st && !last && !attrs.parents)
        throw new UserError(`cannot create the directory ${path}: ${prefix} does not exist.`);
      if (st && last && attrs.mode === undefined && attrs.uid === undefined && attrs.gid === undefined) return;
      if (!st) await mkdir(this.host(prefix));
      const applied = await this.applyAttrs(prefix, last ? attrs : { mtime: attrs.mtime }, 0o755);
      this.expect(prefix, { type: 'dir', attrs: applied });
    }
  }

  async symlink(path: string, linkTarget: string, attrs: FileAttrs = {}): Promise<void> {
    const resolved = await this.resolve(path, false);
    const existing = await this.lstatOne(resolved);
    if (existing?.type === 'dir') throw new UserError(`cannot create the symlink ${path}: a directory is in the way.`);
    if (existing) await rm(this.host(resolved));
    await symlink(linkTarget, this.host(resolved));
    const uid = attrs.uid ?? 0;
    const gid = attrs.gid ?? 0;
    const mtime = attrs.mtime ?? this.ctx.epoch;
    await lchown(this.host(resolved), uid, gid);
    await lutimes(this.host(resolved), mtime, mtime);
    this.expect(resolved, { type: 'symlink', target: linkTarget, attrs: { uid, gid } });
  }

  async remove(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    const resolved = await this.resolve(path, false);
    const existing = await this.lstatOne(resolved);
    if (!existing) return;
    if (existing.type === 'dir' && !options.recursive && (await readdir(this.host(resolved))).length > 0) {
      throw new UserError(`cannot remove ${path}: the directory is not empty.`);
    }
    await rm(this.host(resolved), { recursive: true });
    this.expect(resolved, 'absent');
  }

  async commit(): Promise<void> {
    await this.verify();
  }
}
