/**
 * MBR (DOS) partition table: read from and written into the first sector. Raspberry Pi OS images
 * use MBR with a 32-bit disk identifier at offset 440; PARTUUID is `<diskid>-0N` (8 hex digits).
 */
import { UserError } from '../errors.js';

export const SECTOR = 512;
export const DISK_ID_OFFSET = 440;

export interface MbrPartition {
  /** 1-based slot number, as in PARTUUID `<diskid>-0N` and `/dev/mmcblk0pN`. */
  number: number;
  type: number;
  bootable: boolean;
  startSector: number;
  sectors: number;
  offset: number;
  size: number;
}

export interface Mbr {
  diskId: number;
  partitions: MbrPartition[];
}

export const FAT_TYPES = new Set([0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e]);
export const LINUX_TYPE = 0x83;
const GPT_PROTECTIVE = 0xee;
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);

/** The 0x55 0xAA signature that ends a master boot record, and a FAT boot sector too. */
export function hasBootSignature(sector: Buffer): boolean {
  return sector.length >= SECTOR && sector[510] === 0x55 && sector[511] === 0xaa;
}

/** Parse sector 0. `source` names the file in error messages. */
export function parseMbr(sector0: Buffer, source: string): Mbr {
  if (sector0.length < SECTOR) throw new UserError(`${source} is shorter than one sector; it is not a disk image.`);
  if (!hasBootSignature(sector0)) {
    throw new UserError(
      `${source} has no partition table (no MBR signature); ` +
        'give a whole-disk Raspberry Pi OS image, not a partition or an archive.',
    );
  }
  const partitions: MbrPartition[] = [];
  for (let slot = 0; slot < 4; slot++) {
    const entry = 446 + slot * 16;
    const type = sector0[entry + 4]!;
    const startSector = sector0.readUInt32LE(entry + 8);
    const sectors = sector0.readUInt32LE(entry + 12);
    if (type === 0 || sectors === 0) continue;
    if (type === GPT_PROTECTIVE) {
      throw new UserError(`${source} has a GPT partition table; Raspberry Pi OS images use MBR, so this is not one.`);
    }
    if (EXTENDED_TYPES.has(type)) continue; // logical partitions are never the boot or root partition of a Pi image
    partitions.push({
      number: slot + 1,
      type,
      bootable: sector0[entry] === 0x80,
      startSector,
      sectors,
      offset: startSector * SECTOR,
      size: sectors * SECTOR,
    });
  }
  if (partitions.length === 0)
    throw new UserError(`${source} has an empty partition table; it is not a Raspberry Pi OS image.`);
  return { diskId: sector0.readUInt32LE(DISK_ID_OFFSET), partitions };
}

export function formatDiskId(diskId: number): string {
  return diskId.toString(16).padStart(8, '0');
}

export function parseDiskId(text: string): number {
  const hex = text.replace(/^0x/i, '');
  if (!/^[0-9a-f]{8}$/i.test(hex))
    throw new UserError(`"${text}" is not a disk identifier; use 8 hex digits such as 0x1a2b3c4d.`);
  return Number.parseInt(hex, 16);
}

/** PARTUUID of partition N as the kernel and fstab spell it: `1a2b3c4d-02`. */
export function partUuid(diskId: number, partition: number): string {
  return `${formatDiskId(diskId)}-${String(partition).padStart(2, '0')}`;
}

/** Return a copy of sector 0 with a new disk identifier. */
export function withDiskId(sector0: Buffer, diskId: number): Buffer {
  const copy = Buffer.from(sector0);
  copy.writeUInt32LE(diskId >>> 0, DISK_ID_OFFSET);
  return copy;
}

/**
 * Every used slot of the partition table as it stands (extended and GPT-protective entries too),
 * without judging the image: for code that must account for every partition, whatever it holds.
 * Undefined when sector 0 has no MBR signature.
 */
export function partitionSlots(
  sector0: Buffer,
): Pick<MbrPartition, 'number' | 'type' | 'offset' | 'size'>[] | undefined {
  if (!hasBootSignature(sector0)) return undefined;
  const slots: Pick<MbrPartition, 'number' | 'type' | 'offset' | 'size'>[] = [];
  for (let slot = 0; slot < 4; slot++) {
    const entry = 446 + slot * 16;
    const type = sector0[entry + 4]!;
    const sectors = sector0.readUInt32LE(entry + 12);
    if (type === 0 || sectors === 0) continue;
    slots.push({ number: slot + 1, type, offset: sector0.readUInt32LE(entry + 8) * SECTOR, size: sectors * SECTOR });
  }
  return slots;
}
