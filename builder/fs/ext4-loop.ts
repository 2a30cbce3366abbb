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
import { checkInterrupted } from '../util/scope.js';
import type { DirEntry, EditorContext, FileAttrs, FileStat, FileType } from './editor.js';
import { EditorBase } from './editor-base.js';
import { pathSegments } from './paths.js';

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

/** Whether something is mounted on `dir` (per /proc/self/mountinfo, field 5: the mount point). */
async function isMounted(dir: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  const escaped = dir.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return mounts.split('\n').some((line) => line.split(' ')[4] === escaped);
}

/** Detach every loop device backed by `image` at `offset` (`losetup --associated`). */
async function detachAll(image: string, offset: number): Promise<void> {
  const { stdout } = await run('losetup', ['--associated', image, '--offset', String(offset)]);
  for (const line of stdout.split('\n').filter(Boolean)) {
    const device = line.slice(0, line.indexOf(':'));
    await retryBusy(() => run('losetup', ['--detach', device]));
  }
}

/** The type of a node:fs Stats or Dirent. */
function typeOf(entry: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): FileType {
  if (entry.isFile()) return 'file';
  if (entry.isDirectory()) return 'dir';
  return entry.isSymbolicLink() ? 'symlink' : 'other';
}

export class LoopEditor extends EditorBase {
  readonly filesystem = 'ext4';
  readonly backend = 'loop';
  protected readonly storesOwnership = true;

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
    const mountPoint = await ctx.scope.tempDir('swarmcard-mnt-', { mountPoint: true });
    // Each cleanup is registered before its action, and finds what to undo by itself: a signal can
    // stop losetup or mount after the kernel attached or mounted but before we learnt it.
    ctx.scope.defer(`detach the loop devices of ${ctx.image}`, () => detachAll(ctx.image, ctx.offset));
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
    ctx.scope.defer(`unmount ${mountPoint}`, async () => {
      if (!(await isMounted(mountPoint))) return;
      // A mount namespace created meanwhile (a container, unshare) holds a copy of this mount, and
      // umount then leaves the filesystem live there: write everything into the image first.
      await run('sync', ['--file-system', mountPoint]);
      await retryBusy(() => run('umount', [mountPoint]));
    });
    await run('mount', ['-t', 'ext4', device, mountPoint]);
    return new LoopEditor(ctx, mountPoint);
  }

  /** Where a canonical in-partition path is in the mount; nothing is touched after a signal. */
  private host(path: string): string {
    checkInterrupted();
    return join(this.root, ...pathSegments(path));
  }

  protected lstatMany(paths: string[]): Promise<(FileStat | undefined)[]> {
    return Promise.all(paths.map((p) => this.lstatOne(p)));
  }

  private async lstatOne(path: string): Promise<FileStat | undefined> {
    try {
      const st = await lstat(this.host(path));
      const type = typeOf(st);
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
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw error;
    }
  }

  protected readAt(path: string): Promise<Buffer> {
    return readFile(this.host(path));
  }

  protected async listAt(path: string): Promise<DirEntry[]> {
    return (await readdir(this.host(path), { withFileTypes: true }))
      .map((e) => ({ name: e.name, type: typeOf(e) }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Owner, then mode (chown clears setuid bits), then times. */
  private async applyAttrs(path: string, attrs: FileAttrs, defaultMode: number): Promise<FileAttrs> {
    const applied = {
      mode: attrs.mode ?? defaultMode,
      uid: attrs.uid ?? 0,
      gid: attrs.gid ?? 0,
      mtime: attrs.mtime ?? this.ctx.epoch,
    };
    const host = this.host(path);
    await chown(host, applied.uid, applied.gid);
    await chmod(host, applied.mode);
    await utimes(host, applied.mtime, applied.mtime);
    return applied;
  }

  protected async writeAt(path: string, data: Buffer, attrs: FileAttrs, existing?: FileStat): Promise<FileAttrs> {
    if (existing) await rm(this.host(path));
    await writeFile(this.host(path), data, { mode: 0o600 });
    return this.applyAttrs(path, attrs, 0o644);
  }

  protected async mkdirAt(path: string, attrs: FileAttrs, options: { exists: boolean }): Promise<FileAttrs> {
    if (!options.exists) await mkdir(this.host(path));
    return this.applyAttrs(path, attrs, 0o755);
  }

  /** A symlink's own owner and times (lchown, lutimes); its mode is always 0777. */
  protected override async symlinkAt(
    path: string,
    target: string,
    attrs: FileAttrs,
    existing?: FileStat,
  ): Promise<FileAttrs> {
    if (existing) await rm(this.host(path));
    await symlink(target, this.host(path));
    const uid = attrs.uid ?? 0;
    const gid = attrs.gid ?? 0;
    const mtime = attrs.mtime ?? this.ctx.epoch;
    await lchown(this.host(path), uid, gid);
    await lutimes(this.host(path), mtime, mtime);
    return { uid, gid, mtime };
  }

  protected async removeAt(path: string): Promise<void> {
    await rm(this.host(path), { recursive: true });
  }

  async commit(): Promise<void> {
    await this.verify();
  }
}
