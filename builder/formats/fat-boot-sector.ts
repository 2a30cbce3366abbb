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

/**
 * Bytes from the start of a FAT filesystem to its first data cluster: the boot and reserved
 * sectors, every FAT, and (FAT12/16) the fixed root directory. Undefined when the BIOS parameter
 * block does not describe one.
 */
export function fatSystemAreaBytes(sector: Buffer): number | undefined {
  if (!parseFatBootSector(sector)) return undefined;
  const bytesPerSector = sector.readUInt16LE(11);
  const reserved = sector.readUInt16LE(14);
  const fats = sector[16]!;
  const rootEntries = sector.readUInt16LE(17);
  const fatSectors = sector.readUInt16LE(22) || sector.readUInt32LE(36);
  if (![512, 1024, 2048, 4096].includes(bytesPerSector) || reserved === 0 || fats === 0 || fatSectors === 0)
    return undefined;
  const rootSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  return (reserved + fats * fatSectors + rootSectors) * bytesPerSector;
}
