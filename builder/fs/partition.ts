/**
 * Scoped access to one partition of an image (balena-image-fs `interact()`): open an editor, run the
 * body, commit and verify on success, and always release temp files, loop devices and mounts —
 * on errors too, and on Ctrl-C through the scope registry.
 */
import { UserError } from '../errors.js';
import { run } from '../exec/run.js';
import { assertWritable } from '../formats/ext4-superblock.js';
import type { ImageLayout } from '../image/layout.js';
import { withScope } from '../util/scope.js';
import type { FsEditor } from './editor.js';
import { DebugfsEditor } from './ext4-debugfs.js';
import { LoopEditor } from './ext4-loop.js';
import { MtoolsEditor } from './fat-mtools.js';

export type Ext4Backend = 'debugfs' | 'loop';
export const ext4Backends: readonly Ext4Backend[] = ['debugfs', 'loop'];

export interface PartitionOptions {
  /** Timestamp for everything written. */
  epoch: number;
  ext4Backend?: Ext4Backend;
  /** Read-only access: skips the writability checks, commits nothing. */
  readOnly?: boolean;
}

let cachedVersion: string | undefined;
/** The installed e2fsprogs version, from `debugfs -V` ("debugfs 1.47.0 (5-Feb-2023)"). */
export async function e2fsprogsVersion(): Promise<string> {
  if (cachedVersion) return cachedVersion;
  const { stdout, stderr } = await run('debugfs', ['-V']);
  const match = /debugfs (\d+\.\d+(?:\.\d+)?)/.exec(stdout + stderr);
  if (!match) throw new Error(`cannot read the e2fsprogs version from "debugfs -V": ${stdout}${stderr}`);
  cachedVersion = match[1]!;
  return cachedVersion;
}

export async function withPartition<T>(
  layout: ImageLayout,
  role: 'boot' | 'root',
  options: PartitionOptions,
  body: (fs: FsEditor) => Promise<T>,
): Promise<T> {
  return withScope(async (scope) => {
    const partition = layout[role];
    const ctx = { image: layout.path, offset: partition.offset, size: partition.size, epoch: options.epoch, scope };
    let editor: FsEditor;
    if (role === 'boot') {
      editor = new MtoolsEditor(ctx);
    } else {
      if (!options.readOnly) assertWritable(layout.rootSuperblock, await e2fsprogsVersion(), layout.path);
      const backend = options.ext4Backend ?? 'debugfs';
      if (!ext4Backends.includes(backend))
        throw new UserError(`unknown ext4 backend "${backend}"; use one of ${ext4Backends.join(', ')}.`);
      editor = backend === 'loop' ? await LoopEditor.open(ctx) : new DebugfsEditor(ctx);
    }
    const result = await body(editor);
    if (!options.readOnly) await editor.commit();
    return result;
  });
}
