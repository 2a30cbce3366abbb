/**
 * The FAT boot sector (first sector of the partition): the FAT width and the volume label, which
 * sit at different offsets in the FAT32 extended BIOS parameter block than in the FAT12/16 one.
 */
import { hasBootSignature } from './mbr.js';

export interface FatBootSector {
  /** Volume label ("bootfs" on bookworm+, "boot" before), trailing spaces removed. */
  label: string;
  bits: 12 | 16 | 32;
}

/** Parse a FAT boot sector; undefined when the sector holds no FAT filesystem. */
export function parseFatBootSector(sector: Buffer): FatBootSector | undefined {
  if (!hasBootSignature(sector)) return undefined;
  const text = (start: number, end: number) => sector.subarray(start, end).toString('latin1');
  if (text(82, 87) === 'FAT32') return { label: text(71, 82).trim(), bits: 32 };
  const type = text(54, 62);
  if (type.startsWith('FAT')) return { label: text(43, 54).trim(), bits: type.startsWith('FAT12') ? 12 : 16 };
  return undefined;
}
