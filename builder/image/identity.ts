/**
 * A node's disk identity. All cards written from one image share the disk id (and so every
 * PARTUUID) until first boot, so two unbooted cards in one reader collide (docs/raspios.md #5):
 * each node gets its own id (`plan/ids.ts`), and `root=PARTUUID=` in cmdline.txt and /etc/fstab
 * change with it. One step for the build and the tests: the MBR is written here; the two files
 * change through edits that run first in the node's partition sessions.
 */
import { formatDiskId } from '../formats/mbr.js';
import type { ImageEdit } from '../plan/edits.js';
import { writeDiskId } from './clone.js';
import { type ImageLayout, readLayout } from './layout.js';

/**
 * Give a copy of a base image the disk id `diskId`: writes the MBR and returns the layout read
 * before (its partitions, the old id) and the edits that retarget the PARTUUIDs. Apply them, first,
 * with `applyEdits(layout, [...identity, ...others])`.
 */
export async function setDiskIdentity(
  image: string,
  diskId: number,
): Promise<{ layout: ImageLayout; identity: ImageEdit[] }> {
  const layout = await readLayout(image);
  await writeDiskId(image, diskId);
  const [from, to] = [formatDiskId(layout.mbr.diskId), formatDiskId(diskId)];
  const origin = 'identity';
  return {
    layout,
    identity: [
      { origin, op: 'partUuids', partition: 'boot', path: '/cmdline.txt', from, to },
      { origin, op: 'partUuids', partition: 'root', path: '/etc/fstab', from, to },
    ],
  };
}
