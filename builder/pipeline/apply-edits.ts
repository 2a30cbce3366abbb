/**
 * Apply a node's edits to its image: one session per partition (so each partition's edits go to
 * disk in one debugfs/mtools batch and are read back together), one handler per edit kind.
 */
import { UserError } from '../errors.js';
import { FileNotFoundError, type FsEditor } from '../fs/editor.js';
import { type Ext4Backend, withPartition } from '../fs/partition.js';
import type { ImageLayout } from '../image/layout.js';
import type { ImageEdit, Partition } from '../plan/edits.js';
import { addToList, formatCmdline, parseCmdline, removeToken, setToken } from '../text/cmdline.js';
import { replacePartUuids } from '../text/etc-files.js';
import { setMarkedBlock } from '../text/marked-block.js';

export interface ApplyOptions {
  epoch: number;
  ext4Backend?: Ext4Backend;
}

type Handler<E extends ImageEdit> = (fs: FsEditor, edit: E) => Promise<void>;
type ByOp = { [K in ImageEdit['op']]: Handler<Extract<ImageEdit, { op: K }>> };

async function readOr(fs: FsEditor, path: string, fallback: string): Promise<string> {
  try {
    return await fs.readText(path);
  } catch (error) {
    if (error instanceof FileNotFoundError) return fallback;
    throw error;
  }
}

/** Create the parent directories a new file needs (root-owned 0755, as packages would). */
async function ensureParent(fs: FsEditor, path: string): Promise<void> {
  const parent = path.slice(0, path.lastIndexOf('/')) || '/';
  if (!(await fs.exists(parent))) await fs.mkdir(parent, { parents: true });
}

const handlers: ByOp = {
  async write(fs, e) {
    await ensureParent(fs, e.path);
    await fs.write(e.path, e.content, { mode: e.mode, uid: e.uid, gid: e.gid });
  },
  async cmdline(fs, e) {
    let tokens = parseCmdline(await fs.readText('/cmdline.txt'));
    // Lists first, then values: `modules-load=dwc2,g_ether g_ether.host_addr=… g_ether.dev_addr=…`.
    for (const key of e.remove) tokens = removeToken(tokens, key);
    for (const [key, items] of Object.entries(e.addToList)) tokens = addToList(tokens, key, items);
    for (const [key, value] of Object.entries(e.set)) tokens = setToken(tokens, key, value);
    await fs.write('/cmdline.txt', formatCmdline(tokens));
  },
  async configTxt(fs, e) {
    const config = await fs.readText('/config.txt');
    await fs.write('/config.txt', setMarkedBlock(config, e.lines, { id: e.block, section: e.section }));
  },
  async block(fs, e) {
    const st = await fs.stat(e.path);
    await ensureParent(fs, e.path);
    const text = await readOr(fs, e.path, '');
    // An existing file keeps its mode and owner; only its content changes.
    await fs.write(e.path, setMarkedBlock(text, e.lines, { id: e.block, comment: e.comment }), {
      mode: e.mode ?? st?.mode,
      uid: st?.uid,
      gid: st?.gid,
    });
  },
  async symlink(fs, e) {
    await ensureParent(fs, e.path);
    await fs.symlink(e.path, e.target);
  },
  async mkdir(fs, e) {
    await fs.mkdir(e.path, { parents: true, mode: e.mode });
  },
  async remove(fs, e) {
    await fs.remove(e.path, { recursive: e.recursive });
  },
  async hostname(fs, e) {
    await fs.write('/etc/hostname', `${e.hostname}\n`);
    // Debian resolves its own name through the 127.0.1.1 line.
    const hosts = await readOr(fs, '/etc/hosts', '127.0.0.1\tlocalhost\n');
    const line = `127.0.1.1\t${e.hostname}`;
    const updated = /^127\.0\.1\.1\s.*$/m.test(hosts)
      ? hosts.replace(/^127\.0\.1\.1\s.*$/m, line)
      : `${hosts.replace(/\n?$/, '\n')}${line}\n`;
    await fs.write('/etc/hosts', updated);
  },
  async json(fs, e) {
    await ensureParent(fs, e.path);
    const text = await readOr(fs, e.path, '{}');
    let data: Record<string, unknown>;
    try {
      data = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      throw new UserError(
        `${e.path} in the base image is not valid JSON (${(error as Error).message}), so swarmcard cannot add ` +
          `${Object.keys(e.set).join(', ')} to it; fix or remove it in the base image.`,
      );
    }
    await fs.write(e.path, `${JSON.stringify({ ...data, ...e.set }, null, 2)}\n`, { mode: e.mode });
  },
  async partUuids(fs, e) {
    const st = await fs.stat(e.path);
    if (!st) return; // no fstab: nothing refers to the partitions by PARTUUID
    const text = await fs.readText(e.path);
    const updated = replacePartUuids(text, e.from, e.to);
    if (updated !== text) await fs.write(e.path, updated, { mode: st.mode, uid: st.uid, gid: st.gid });
  },
};

export function partitionOf(edit: ImageEdit): Partition {
  switch (edit.op) {
    case 'cmdline':
    case 'configTxt':
      return 'boot';
    case 'hostname':
    case 'mkdir':
      return 'root';
    default:
      return edit.partition;
  }
}

/** The paths an edit reads or writes (before symlinks are followed). */
export function editPaths(edit: ImageEdit): string[] {
  switch (edit.op) {
    case 'cmdline':
      return ['/cmdline.txt'];
    case 'configTxt':
      return ['/config.txt'];
    case 'hostname':
      return ['/etc/hostname', '/etc/hosts'];
    default:
      return [edit.path];
  }
}

export async function applyEdits(layout: ImageLayout, edits: ImageEdit[], options: ApplyOptions): Promise<void> {
  for (const partition of ['boot', 'root'] as const) {
    const mine = edits.filter((e) => partitionOf(e) === partition);
    if (mine.length === 0) continue;
    await withPartition(layout, partition, { epoch: options.epoch, ext4Backend: options.ext4Backend }, async (fs) => {
      await fs.prefetch(mine.flatMap(editPaths));
      for (const edit of mine) await (handlers[edit.op] as Handler<ImageEdit>)(fs, edit);
    });
  }
}
