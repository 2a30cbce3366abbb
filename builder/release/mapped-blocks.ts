/**
 * The 4096-byte blocks of an image that must be written to a card, decided by what the partition
 * table and the filesystems use, never by which blocks happen to hold zeros: a zero block inside a
 * FAT or an ext4 inode table is data, and skipping it would leave a used card's old bytes there.
 * Mapped (docs/release.md "bmap"):
 *   - the MBR, and every block outside the partitions that is not all zeros;
 *   - FAT (types 0x01 0x04 0x06 0x0b 0x0c 0x0e): the reserved area, every FAT copy, the FAT12/16
 *     root directory, and every cluster whose entry in any FAT copy is not 0;
 *   - ext2/3/4 (type 0x83): every block `dumpe2fs` does not list as free, metadata included;
 *   - anything else (another type, a FAT or Linux partition whose content is not understood,
 *     bigalloc): the whole partition.
 * A block is mapped when any byte of it is used, so a partition start off the 4096 grid is fine.
 * Reads are bounded (1 MiB at a time) and stop at Ctrl-C.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { quoteCommand, run, ToolError } from '../exec/run.js';
import { type Ext4Usage, parseDumpe2fs, parseTestb, testbFirst, usedBlocks } from '../formats/dumpe2fs.js';
import { parseExt4Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE } from '../formats/ext4-superblock.js';
import { allocatedClusters, fatTableBytes, parseFatGeometry } from '../formats/fat-table.js';
import { FAT_TYPES, LINUX_TYPE, partitionSlots, SECTOR } from '../formats/mbr.js';
import { blocksTouched, mergeRanges, type Range, subtractRanges } from '../util/ranges.js';
import { checkInterrupted } from '../util/scope.js';

/** The block size of the map (bmap's BlockSize). */
const BLOCK = 4096;
const CHUNK = 1024 * 1024;
/** FAT entries read at a time: even (FAT12 pairs), 1 MiB of FAT32. */
const FAT_CHUNK_ENTRIES = 256 * 1024;

/** Bytes [start, end) of the image that something uses. */
interface Span {
  start: number;
  end: number;
}

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  checkInterrupted();
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buffer.subarray(0, done);
}

const ZEROS = Buffer.alloc(BLOCK);

/** The 4096-byte blocks (on the image's grid) of bytes [start, end) that hold a byte other than 0. */
async function nonZeroSpans(handle: FileHandle, start: number, end: number): Promise<Span[]> {
  const spans: Span[] = [];
  for (let at = start; at < end; ) {
    // Chunks end on the grid, so every block window lies inside one chunk.
    const chunkEnd = Math.min(end, (Math.floor(at / BLOCK) + 1) * BLOCK + CHUNK - BLOCK);
    const bytes = await readAt(handle, at, chunkEnd - at);
    for (let from = at; from < chunkEnd; ) {
      const to = Math.min(chunkEnd, (Math.floor(from / BLOCK) + 1) * BLOCK);
      const window = bytes.subarray(from - at, to - at);
      if (!window.equals(ZEROS.subarray(0, window.length))) spans.push({ start: from, end: to });
      from = to;
    }
    at = chunkEnd;
  }
  return spans;
}

async function fatSpans(handle: FileHandle, offset: number, size: number): Promise<Span[] | undefined> {
  const geometry = parseFatGeometry(await readAt(handle, offset, SECTOR));
  if (!geometry || geometry.volumeBytes > size) return undefined;
  const { bits, clusterCount, clusterBytes, dataOffset } = geometry;
  // Reserved area (boot sector, FSInfo, backup boot sector), every FAT copy, the FAT12/16 root directory.
  const spans: Span[] = [{ start: offset, end: offset + dataOffset }];
  const entries = clusterCount + 2;
  const clusters: Range[] = [];
  for (let copy = 0; copy < geometry.fats; copy++) {
    const table = offset + geometry.fatOffset + copy * geometry.fatBytes;
    for (let first = 0; first < entries; first += FAT_CHUNK_ENTRIES) {
      const from = fatTableBytes(bits, first);
      const to = fatTableBytes(bits, Math.min(entries, first + FAT_CHUNK_ENTRIES));
      clusters.push(...allocatedClusters(await readAt(handle, table + from, to - from), bits, first, 2, entries));
    }
  }
  for (const { first, last } of mergeRanges(clusters))
    spans.push({
      start: offset + dataOffset + (first - 2) * clusterBytes,
      end: offset + dataOffset + (last - 1) * clusterBytes,
    });
  return spans;
}

/** dumpe2fs's view of the blocks in use; debugfs's where dumpe2fs cannot open at an offset (≥ 1.47.1). */
async function ext4Usage(device: string, superblock: { blockSize: number; blocksCount: number }): Promise<Ext4Usage> {
  const dumped = await run('dumpe2fs', [device], { allowFailure: true });
  if (dumped.exitCode === 0) return parseDumpe2fs(dumped.stdout);
  if (!/Unable to resolve/.test(dumped.stderr))
    throw new ToolError(quoteCommand(['dumpe2fs', device]), dumped.exitCode, dumped.stderr);
  // mke2fs puts the first data block at 1 on 1 KiB-block filesystems (block 0 is the boot block), else at 0.
  const firstBlock = superblock.blockSize === 1024 ? 1 : 0;
  const first = testbFirst(firstBlock);
  const { stdout } = await run('debugfs', ['-R', `testb ${first} ${superblock.blocksCount - first}`, device]);
  return parseTestb(stdout, { blockSize: superblock.blockSize, firstBlock, blocksCount: superblock.blocksCount });
}

async function ext4Spans(image: string, handle: FileHandle, offset: number, size: number): Promise<Span[] | undefined> {
  const superblock = parseExt4Superblock(await readAt(handle, offset + SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
  // bigalloc allocates clusters of blocks; it is not what Raspberry Pi OS uses: map it whole.
  if (!superblock || superblock.features.some((f) => f.name === 'bigalloc')) return undefined;
  // libext2fs takes everything after the first "?" of the name as I/O options.
  if (image.includes('?')) throw new Error(`cannot map ${image}: e2fsprogs cannot open a path containing "?"`);
  const usage = await ext4Usage(`${image}?offset=${offset}`, superblock);
  if (usage.blockSize !== superblock.blockSize)
    throw new Error(`dumpe2fs reports ${usage.blockSize}-byte blocks, the superblock ${superblock.blockSize}`);
  if (usage.blocksCount * usage.blockSize > size)
    throw new Error(
      `the ext4 filesystem at byte ${offset} of ${image} is larger (${usage.blocksCount * usage.blockSize} bytes) ` +
        `than its partition (${size})`,
    );
  return usedBlocks(usage).map(({ first, last }) => ({
    start: offset + first * usage.blockSize,
    end: offset + (last + 1) * usage.blockSize,
  }));
}

/** Mapped 4096-byte blocks of IMAGE: 0-based, inclusive, sorted, merged. */
export async function mappedRanges(image: string): Promise<Range[]> {
  const handle = await open(image, 'r');
  try {
    const { size } = await handle.stat();
    if (size === 0) return [];
    const slots = partitionSlots(await readAt(handle, 0, SECTOR));
    // No partition table: nothing tells what is unused.
    if (!slots) return [{ first: 0, last: Math.ceil(size / BLOCK) - 1 }];
    const spans: Span[] = [{ start: 0, end: Math.min(SECTOR, size) }];
    for (const { number, type, offset, size: partSize } of slots) {
      if (offset + partSize > size)
        throw new Error(
          `partition ${number} of ${image} ends at byte ${offset + partSize}, past the image end (${size})`,
        );
      const used = FAT_TYPES.has(type)
        ? await fatSpans(handle, offset, partSize)
        : type === LINUX_TYPE
          ? await ext4Spans(image, handle, offset, partSize)
          : undefined;
      spans.push(...(used ?? [{ start: offset, end: offset + partSize }]));
    }
    const partitions = slots.map((s) => ({ first: s.offset, last: s.offset + s.size - 1 }));
    for (const gap of subtractRanges({ first: 0, last: size - 1 }, partitions))
      spans.push(...(await nonZeroSpans(handle, gap.first, gap.last + 1)));
    return mergeRanges(spans.flatMap(({ start, end }) => blocksTouched(start, end, BLOCK) ?? []));
  } finally {
    await handle.close();
  }
}
