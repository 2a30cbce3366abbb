/**
 * Which parts of a FAT volume are in use, from its bytes alone: the geometry from the BIOS
 * parameter block, and the allocated clusters from the file allocation table (an entry ≠ 0 is
 * allocated: a chain link, an end-of-chain mark or a bad-cluster mark). Pure. The FAT width is
 * decided as Linux, dosfstools 4 and the Microsoft specification decide it (docs/release.md
 * "bmap"): FAT32 when the 16-bit FAT size field is 0, otherwise FAT12 below 4085 clusters, else FAT16.
 */
import type { Range } from '../util/ranges.js';

export type FatBits = 12 | 16 | 32;

export interface FatGeometry {
  bits: FatBits;
  bytesPerSector: number;
  /** Where the first FAT starts, in bytes from the start of the volume (= the reserved area). */
  fatOffset: number;
  /** Bytes of one FAT copy as the BPB gives it. */
  fatBytes: number;
  fats: number;
  /** The FAT12/16 root directory (0 bytes on FAT32), right after the FATs. */
  rootDirOffset: number;
  rootDirBytes: number;
  /** Where cluster 2 starts; everything before it is reserved area, FATs and root directory. */
  dataOffset: number;
  clusterBytes: number;
  /** Data clusters; valid cluster numbers are 2 … clusterCount + 1. */
  clusterCount: number;
  /** Bytes the volume claims (total sectors × sector size). */
  volumeBytes: number;
}

/** Fewer clusters than this is FAT12 (Linux MAX_FAT12 = 4084, dosfstools FAT12_THRESHOLD = 4085). */
const FAT12_THRESHOLD = 4085;

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/** Parse the boot sector's BPB; undefined when it is not a FAT volume this code can read safely. */
export function parseFatGeometry(sector: Buffer): FatGeometry | undefined {
  if (sector.length < 512 || sector[510] !== 0x55 || sector[511] !== 0xaa) return undefined;
  const bytesPerSector = sector.readUInt16LE(11);
  const sectorsPerCluster = sector[13]!;
  const reserved = sector.readUInt16LE(14);
  const fats = sector[16]!;
  const rootEntries = sector.readUInt16LE(17);
  const totalSectors = sector.readUInt16LE(19) || sector.readUInt32LE(32);
  const fat16Size = sector.readUInt16LE(22);
  const fatSectors = fat16Size || sector.readUInt32LE(36);
  if (![512, 1024, 2048, 4096].includes(bytesPerSector)) return undefined;
  if (!isPowerOfTwo(sectorsPerCluster) || reserved === 0 || fats === 0 || fatSectors === 0) return undefined;
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const dataSector = reserved + fats * fatSectors + rootDirSectors;
  if (totalSectors <= dataSector) return undefined;
  const clusterCount = Math.floor((totalSectors - dataSector) / sectorsPerCluster);
  let bits: FatBits;
  if (fat16Size === 0) {
    if (rootEntries !== 0) return undefined;
    bits = 32;
  } else bits = clusterCount < FAT12_THRESHOLD ? 12 : 16;
  const fatBytes = fatSectors * bytesPerSector;
  if (fatBytes < fatTableBytes(bits, clusterCount + 2)) return undefined;
  return {
    bits,
    bytesPerSector,
    fatOffset: reserved * bytesPerSector,
    fatBytes,
    fats,
    rootDirOffset: (reserved + fats * fatSectors) * bytesPerSector,
    rootDirBytes: rootDirSectors * bytesPerSector,
    dataOffset: dataSector * bytesPerSector,
    clusterBytes: sectorsPerCluster * bytesPerSector,
    clusterCount,
    volumeBytes: totalSectors * bytesPerSector,
  };
}

/** Bytes that hold the first `entries` FAT entries. */
export function fatTableBytes(bits: FatBits, entries: number): number {
  return Math.ceil((entries * bits) / 8);
}

/** The value of entry `index` of a table whose first byte holds entry `firstEntry` (even for FAT12). */
function entryAt(table: Buffer, bits: FatBits, index: number): number {
  switch (bits) {
    case 32:
      return table.readUInt32LE(index * 4) & 0x0fffffff; // the top 4 bits are reserved
    case 16:
      return table.readUInt16LE(index * 2);
    case 12: {
      // Two entries share three bytes: the even one is the low 12 bits, the odd one the high 12.
      const at = Math.floor((index * 3) / 2);
      const pair = table[at]! | (table[at + 1]! << 8);
      return index % 2 === 0 ? pair & 0xfff : pair >> 4;
    }
  }
}

/**
 * Allocated clusters (entry ≠ 0) among entries `from` … `to` - 1, from `table`, whose first byte
 * holds entry `firstEntry` (even for FAT12, so entries start on a byte). Entries 0 and 1 are not
 * clusters and are never returned; entries past the end of `table` are not read.
 */
export function allocatedClusters(table: Buffer, bits: FatBits, firstEntry: number, from: number, to: number): Range[] {
  if (bits === 12 && firstEntry % 2 !== 0) throw new Error('a FAT12 table slice must start at an even entry');
  const inTable = Math.floor((table.length * 8) / bits);
  const start = Math.max(from, 2, firstEntry);
  const end = Math.min(to, firstEntry + inTable);
  const out: Range[] = [];
  let open: Range | undefined;
  for (let cluster = start; cluster < end; cluster++) {
    if (entryAt(table, bits, cluster - firstEntry) === 0) {
      open = undefined;
      continue;
    }
    if (open) open.last = cluster;
    else {
      open = { first: cluster, last: cluster };
      out.push(open);
    }
  }
  return out;
}
