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
