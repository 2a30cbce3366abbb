/**
 * A node's disk identity. All cards written from one image share the disk id (and so every
 * PARTUUID) until first boot, so two unbooted cards in one reader collide (docs/raspios.md #5):
 * each node gets its own id, and `root=PARTUUID=` in cmdline.txt and /etc/fstab change with it.
 */
import { createHash } from 'node:crypto';
import { formatDiskId } from '../formats/mbr.js';
import type { FsEditor } from '../fs/editor.js';
import { type PartitionOptions, withPartition } from '../fs/partition.js';
import { replacePartUuids } from '../text/etc-files.js';
import { writeDiskId } from './clone.js';
import { type ImageLayout, readLayout } from './layout.js';

/** A stable disk id for node `index` of a cluster: a hash, never a random source. Never 0. */
export function deriveDiskId(seed: string, index: number): number {
  const digest = createHash('sha256').update(`swarmcard disk-id\0${seed}\0${index}`).digest();
  return digest.readUInt32LE(0) || 1;
}

/** Point `root=PARTUUID=` in cmdline.txt at a new disk id (inside a boot partition session). */
export async function retargetCmdline(boot: FsEditor, oldId: number, newId: number): Promise<void> {
  const cmdline = await boot.readText('/cmdline.txt');
  const updated = replacePartUuids(cmdline, formatDiskId(oldId), formatDiskId(newId));
  if (updated !== cmdline) await boot.write('/cmdline.txt', updated);
}

/** Point /etc/fstab's PARTUUIDs at a new disk id, keeping the file's mode and owner. */
export async function retargetFstab(root: FsEditor, oldId: number, newId: number): Promise<void> {
  const st = await root.stat('/etc/fstab');
  if (!st) return;
  const fstab = await root.readText('/etc/fstab');
  const updated = replacePartUuids(fstab, formatDiskId(oldId), formatDiskId(newId));
  if (updated !== fstab) await root.write('/etc/fstab', updated, { mode: st.mode, uid: st.uid, gid: st.gid });
}

/** Set the disk id and rewrite every PARTUUID reference to it; returns the re-read layout. */
export async function setDiskIdentity(
  layout: ImageLayout,
  diskId: number,
  options: PartitionOptions,
): Promise<ImageLayout> {
  await writeDiskId(layout.path, diskId);
  await withPartition(layout, 'boot', options, (fs) => retargetCmdline(fs, layout.mbr.diskId, diskId));
  await withPartition(layout, 'root', options, (fs) => retargetFstab(fs, layout.mbr.diskId, diskId));
  return readLayout(layout.path);
}
