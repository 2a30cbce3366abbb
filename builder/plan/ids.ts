/**
 * Every identifier a node image carries that must differ between siblings yet stay the same on a
 * rebuild: derived from the cluster name (or seed) and the node index by a hash or a fixed scheme,
 * never from a random source. Pure, so planning can use them without touching an image.
 */
import { createHash } from 'node:crypto';

/** A stable MBR disk id for node `index` of a cluster (docs/raspios.md #5). Never 0. */
export function deriveDiskId(seed: string, index: number): number {
  const digest = createHash('sha256').update(`swarmcard disk-id\0${seed}\0${index}`).digest();
  return digest.readUInt32LE(0) || 1;
}

/** A stable UUID for a NetworkManager connection: a hash of cluster, node and interface. */
export function connectionUuid(cluster: string, index: number, iface: string): string {
  const h = createHash('sha256').update(`swarmcard nm-connection\0${cluster}\0${index}\0${iface}`).digest('hex');
  // Shaped as a version 4 (random) UUID so NetworkManager accepts it; the bits come from the hash.
  const variant = ((Number.parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * g_ether MAC addresses for the gadget on worker k. Without fixed MACs they are random on every
 * boot, and host-side interface names drift (docs/raspios.md #3).
 * k ≤ 9: the classic Pi Zero OTG guide's scheme, reproduced exactly —
 *   host_addr 00:22:82:ff:ff:0k, dev_addr 00:22:82:ff:ff:1k.
 * k ≥ 10: the guide's digits run out, so the fourth octet marks the side and the last two carry k:
 *   host_addr 00:22:82:fe:HH:LL, dev_addr 00:22:82:fd:HH:LL (HH:LL = k, big endian) — never equal
 *   to a k ≤ 9 address (fourth octet ff there) nor to each other, for every k up to 65535.
 */
export interface GadgetMacs {
  hostMac: string;
  devMac: string;
}

const hex = (n: number) => n.toString(16).padStart(2, '0');

export function gadgetMacs(k: number): GadgetMacs {
  if (!Number.isInteger(k) || k < 0 || k > 0xffff) throw new RangeError(`gadget index ${k} is outside 0..65535`);
  if (k <= 9) return { hostMac: `00:22:82:ff:ff:0${k}`, devMac: `00:22:82:ff:ff:1${k}` };
  const tail = `${hex(k >> 8)}:${hex(k & 0xff)}`;
  return { hostMac: `00:22:82:fe:${tail}`, devMac: `00:22:82:fd:${tail}` };
}
