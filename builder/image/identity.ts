/**
 * A node's disk identity. All cards written from one image share the disk id (and so every
 * PARTUUID) until first boot, so two unbooted cards in one reader collide (raspios-facts.md #5):
 * each node gets its own id, and `root=PARTUUID=` in cmdline.txt and /etc/fstab change with it.
 */
import { createHash } from 'node:crypto';
import { withPartition, type PartitionOptions } from '../fs/partition.js';
import { replacePartUuids } from '../text/etc-files.js';
import { writeDiskId } from './clone.js';
import { readLayout, type ImageLayout } from './layout.js';
import { formatDiskId } from './mbr.js';

/** A stable disk id for node `index` of a cluster: a hash, never a random source. Never 0. */
export function deriveDiskId(seed: string, index: number): number {
  const digest = createHash('sha256').update(`swarmcard disk-id\0${seed}\0${index}`).digest();
  return digest.readUInt32LE(0) || 1;
}

/** Set the disk id and rewrite every PARTUUID reference to it; returns the re-read layout. */
export async function setDiskIdentity(layout: ImageLayout, diskId: number, options: PartitionOptions): Promise<ImageLayout> {
  const oldId = formatDiskId(layout.mbr.diskId);
  const newId = formatDiskId(diskId);
  await writeDiskId(layout.path, diskId);
  await withPartition(layout, 'boot', options, async (fs) => {
    const cmdline = await fs.readText('/cmdline.txt');
    const updated = replacePartUuids(cmdline, oldId, newId);
    if (updated !== cmdline) await fs.write('/cmdline.txt', updated);
  });
  await withPartition(layout, 'root', options, async (fs) => {
    if (!(await fs.exists('/etc/fstab'))) return;
    const fstab = await fs.readText('/etc/fstab');
    const updated = replacePartUuids(fstab, oldId, newId);
    // Keep the file's own mode and owner: only the content changes.
    const st = await fs.stat('/etc/fstab');
    if (updated !== fstab) await fs.write('/etc/fstab', updated, { mode: st?.mode, uid: st?.uid, gid: st?.gid });
  });
  return readLayout(layout.path);
}
