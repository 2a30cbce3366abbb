/**
 * Where the boot (FAT) and root (ext4) partitions of a Raspberry Pi OS image are, checked against
 * the file itself: a truncated download or a partition-only file fails here with one sentence.
 */
import { stat } from 'node:fs/promises';
import { UserError } from '../errors.js';
import {
  type Ext4Superblock,
  parseExt4Superblock,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
} from '../formats/ext4-superblock.js';
import { parseFatBootSector } from '../formats/fat-boot-sector.js';
import { FAT_TYPES, LINUX_TYPE, type Mbr, type MbrPartition, parseMbr, SECTOR } from '../formats/mbr.js';
import { readBytes } from '../util/read-bytes.js';

export interface ImageLayout {
  path: string;
  size: number;
  mbr: Mbr;
  boot: MbrPartition;
  root: MbrPartition;
  rootSuperblock: Ext4Superblock;
  /** FAT volume label from the boot sector ("bootfs" on bookworm+, "boot" before). */
  bootLabel: string;
  bootFatBits: 12 | 16 | 32;
}

export async function readLayout(path: string): Promise<ImageLayout> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT')
      throw new UserError(
        `${path} does not exist; ` +
          'give the path of a Raspberry Pi OS image (.img, .img.xz, .zip, .img.gz or .img.zst).',
      );
    throw new UserError(`${path} cannot be read: ${error.message}.`);
  });
  if (!info.isFile()) throw new UserError(`${path} is not a regular file; give the path of a Raspberry Pi OS image.`);
  const mbr = parseMbr(await readBytes(path, 0, SECTOR), path);
  const end = Math.max(...mbr.partitions.map((p) => p.offset + p.size));
  if (end > info.size) {
    throw new UserError(
      `${path} is truncated: its partition table needs ${end} bytes but the file has ${info.size}; ` +
        'download or decompress it again.',
    );
  }
  const boot = mbr.partitions.find((p) => FAT_TYPES.has(p.type));
  const root = mbr.partitions.find((p) => p.type === LINUX_TYPE);
  if (!boot || !root) {
    const types = mbr.partitions.map((p) => `type 0x${p.type.toString(16)}`).join(', ');
    throw new UserError(
      `${path} is not a Raspberry Pi OS image: it needs a FAT boot partition and a Linux root partition, ` +
        `and has ${types}.`,
    );
  }
  const fat = parseFatBootSector(await readBytes(path, boot.offset, SECTOR));
  if (!fat)
    throw new UserError(
      `${path} is not a Raspberry Pi OS image: partition ${boot.number} is marked FAT but holds no FAT filesystem.`,
    );
  const rootSuperblock = parseExt4Superblock(await readBytes(path, root.offset + SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
  if (!rootSuperblock)
    throw new UserError(`${path} is not a Raspberry Pi OS image: partition ${root.number} holds no ext4 filesystem.`);
  return { path, size: info.size, mbr, boot, root, rootSuperblock, bootLabel: fat.label, bootFatBits: fat.bits };
}
