/**
 * The ext4 superblock, read directly (1024 bytes at offset 1024), and the check that the installed
 * e2fsprogs understands every feature before anything writes to it. An offline tool that does not
 * know a feature corrupts the filesystem (e.g. metadata_csum needs ≥ 1.43, orphan_file ≥ 1.47).
 */
import { UserError } from '../errors.js';

export const EXT4_MAGIC = 0xef53;
/** Where the superblock sits in the filesystem, and its size: 1024 bytes at byte 1024. */
export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;

// Bit → [name, first e2fsprogs version that handles it]
const compat: Record<number, [string, string]> = {
  0x1: ['dir_prealloc', '1.0'],
  0x2: ['imagic_inodes', '1.0'],
  0x4: ['has_journal', '1.19'],
  0x8: ['ext_attr', '1.28'],
  0x10: ['resize_inode', '1.33'],
  0x20: ['dir_index', '1.33'],
  0x200: ['sparse_super2', '1.42'],
  0x400: ['fast_commit', '1.46'],
  0x800: ['stable_inodes', '1.46'],
  0x1000: ['orphan_file', '1.47'],
};
const incompat: Record<number, [string, string]> = {
  0x1: ['compression', '1.0'],
  0x2: ['filetype', '1.16'],
  0x4: ['needs_recovery', '1.19'],
  0x8: ['journal_dev', '1.19'],
  0x10: ['meta_bg', '1.35'],
  0x40: ['extent', '1.41'],
  0x80: ['64bit', '1.42'],
  0x100: ['mmp', '1.42'],
  0x200: ['flex_bg', '1.41'],
  0x400: ['ea_inode', '1.44'],
  0x1000: ['dirdata', '99'],
  0x2000: ['metadata_csum_seed', '1.43'],
  0x4000: ['large_dir', '1.44'],
  0x8000: ['inline_data', '1.43'],
  0x10000: ['encrypt', '1.43'],
  0x20000: ['casefold', '1.45'],
};
const roCompat: Record<number, [string, string]> = {
  0x1: ['sparse_super', '1.0'],
  0x2: ['large_file', '1.0'],
  0x8: ['huge_file', '1.41'],
  0x10: ['uninit_bg', '1.41'],
  0x20: ['dir_nlink', '1.41'],
  0x40: ['extra_isize', '1.41'],
  0x100: ['quota', '1.42'],
  0x200: ['bigalloc', '1.42'],
  0x400: ['metadata_csum', '1.43'],
  0x1000: ['read-only', '1.43'],
  0x2000: ['project', '1.43'],
  0x8000: ['verity', '1.45'],
  0x10000: ['orphan_present', '1.47'],
};

export interface Ext4Feature {
  name: string;
  minVersion: string;
}

export interface Ext4Superblock {
  uuid: string;
  label: string;
  blockSize: number;
  blocksCount: number;
  features: Ext4Feature[];
  /** Set when the filesystem was not cleanly unmounted (journal needs recovery). */
  needsRecovery: boolean;
  lastMountedOn: string;
}

function decode(mask: number, table: Record<number, [string, string]>, kind: string, out: Ext4Feature[]): void {
  for (let i = 0; i < 32; i++) {
    if (((mask >>> i) & 1) === 0) continue;
    const bit = (1 << i) >>> 0;
    const known = table[bit];
    out.push(
      known
        ? { name: known[0], minVersion: known[1] }
        : { name: `unknown_${kind}_0x${bit.toString(16)}`, minVersion: '999' },
    );
  }
}

/** Parse the 1024-byte superblock. Returns undefined when the magic is not ext2/3/4. */
export function parseExt4Superblock(sb: Buffer): Ext4Superblock | undefined {
  if (sb.length < SUPERBLOCK_SIZE || sb.readUInt16LE(56) !== EXT4_MAGIC) return undefined;
  const features: Ext4Feature[] = [];
  const incompatMask = sb.readUInt32LE(96);
  decode(sb.readUInt32LE(92), compat, 'compat', features);
  decode(incompatMask, incompat, 'incompat', features);
  decode(sb.readUInt32LE(100), roCompat, 'ro_compat', features);
  const uuid = sb.subarray(104, 120).toString('hex');
  const cString = (buf: Buffer): string =>
    buf.subarray(0, buf.indexOf(0) === -1 ? buf.length : buf.indexOf(0)).toString('latin1');
  return {
    uuid: `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`,
    label: cString(sb.subarray(120, 136)),
    blockSize: 1024 << sb.readUInt32LE(24),
    blocksCount: sb.readUInt32LE(4),
    features,
    needsRecovery: (incompatMask & 0x4) !== 0,
    lastMountedOn: cString(sb.subarray(136, 200)),
  };
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

/** Features this e2fsprogs version cannot safely write. */
export function unsupportedFeatures(sb: Ext4Superblock, e2fsprogsVersion: string): Ext4Feature[] {
  return sb.features.filter((f) => compareVersions(f.minVersion, e2fsprogsVersion) > 0);
}

/** Refuse, with one sentence, to write a filesystem the installed tools do not understand. */
export function assertWritable(sb: Ext4Superblock, e2fsprogsVersion: string, source: string): void {
  const missing = unsupportedFeatures(sb, e2fsprogsVersion);
  if (missing.length > 0) {
    const need = missing
      .map((f) => f.minVersion)
      .sort(compareVersions)
      .at(-1)!;
    const names = missing.map((f) => f.name).join(', ');
    throw new UserError(
      `the root filesystem of ${source} uses ext4 features ${names} ` +
        `that e2fsprogs ${e2fsprogsVersion} does not support; ` +
        (need === '999'
          ? 'no known e2fsprogs release handles them, so swarmcard will not write to it.'
          : `install e2fsprogs ${need} or newer (or use the Docker builder).`),
    );
  }
  if (sb.needsRecovery) {
    throw new UserError(
      `the root filesystem of ${source} was not cleanly unmounted (its journal needs recovery); ` +
        'run "e2fsck -fy" on it or use a fresh image.',
    );
  }
}
