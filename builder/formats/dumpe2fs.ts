/**
 * The blocks an ext2/3/4 filesystem uses, from `dumpe2fs` (e2fsprogs) output: the header's block
 * size, first data block and block count, and each group's `Free blocks:` list, which dumpe2fs
 * prints from the block bitmap as libext2fs reads it. libext2fs also fills in the bitmap of a
 * BLOCK_UNINIT group (its superblock backup, descriptors and its own bitmaps and inode table, where
 * flex_bg put them), so "not free" is every block in use, metadata included (docs/release.md
 * "bmap"). Pure; the output is checked to cover every block exactly once, else this throws.
 */
import { mergeRanges, type Range, subtractRanges } from '../util/ranges.js';

export interface Ext4Usage {
  blockSize: number;
  /** 1 on 1 KiB-block filesystems (block 0 holds the boot block), else 0. */
  firstBlock: number;
  blocksCount: number;
  /** Free blocks, sorted and merged, in filesystem blocks. */
  free: Range[];
}

const header = (text: string, name: string): number => {
  const match = new RegExp(`^${name}:\\s+(\\d+)\\s*$`, 'm').exec(text);
  if (!match) throw new Error(`unexpected dumpe2fs output: no "${name}:" line`);
  return Number(match[1]);
};

/** "8076-8192, 9000, 9100-9200" → ranges; "" → none. */
function parseList(list: string, where: string): Range[] {
  const trimmed = list.trim();
  if (trimmed === '') return [];
  return trimmed.split(/,\s*/).map((item) => {
    const match = /^(\d+)(?:-(\d+))?$/.exec(item);
    if (!match) throw new Error(`unexpected dumpe2fs output: "${item}" in the free blocks of ${where}`);
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    if (last < first) throw new Error(`unexpected dumpe2fs output: "${item}" in the free blocks of ${where}`);
    return { first, last };
  });
}

export function parseDumpe2fs(text: string): Ext4Usage {
  const blockSize = header(text, 'Block size');
  const firstBlock = header(text, 'First block');
  const blocksCount = header(text, 'Block count');
  if (![1024, 2048, 4096, 8192, 16384, 32768, 65536].includes(blockSize))
    throw new Error(`unexpected dumpe2fs output: block size ${blockSize}`);
  const free: Range[] = [];
  let expected = firstBlock;
  let group: { number: number; first: number; last: number; freeLines: number } | undefined;
  const closeGroup = () => {
    if (group && group.freeLines !== 1)
      throw new Error(`unexpected dumpe2fs output: group ${group.number} has ${group.freeLines} "Free blocks:" lines`);
  };
  let groups = 0;
  for (const line of text.split('\n')) {
    const start = /^Group (\d+): \(Blocks (\d+)-(\d+)\)/.exec(line);
    if (start) {
      closeGroup();
      const [number, first, last] = [Number(start[1]), Number(start[2]), Number(start[3])];
      if (number !== groups || first !== expected || last < first)
        throw new Error(`unexpected dumpe2fs output: group ${number} covers blocks ${first}-${last}`);
      group = { number, first, last, freeLines: 0 };
      expected = last + 1;
      groups++;
      continue;
    }
    const list = /^\s+Free blocks:(.*)$/.exec(line);
    if (list && group) {
      group.freeLines++;
      for (const range of parseList(list[1]!, `group ${group.number}`)) {
        if (range.first < group.first || range.last > group.last)
          throw new Error(
            `unexpected dumpe2fs output: free blocks ${range.first}-${range.last} outside group ${group.number}`,
          );
        free.push(range);
      }
    }
  }
  closeGroup();
  if (groups === 0 || expected !== blocksCount)
    throw new Error(`unexpected dumpe2fs output: the groups end at block ${expected - 1} of ${blocksCount}`);
  return { blockSize, firstBlock, blocksCount, free: mergeRanges(free) };
}

/** Blocks in use: everything of 0 … blocksCount - 1 (the boot block before the first group too) but the free ones. */
export function usedBlocks(usage: Ext4Usage): Range[] {
  return subtractRanges({ first: 0, last: usage.blocksCount - 1 }, usage.free);
}

/**
 * The same usage from `debugfs -R "testb FIRST COUNT"` (one "Block N marked in use" or "Block N not
 * in use" line per block, from the bitmap libext2fs reads, BLOCK_UNINIT groups filled in as for
 * dumpe2fs). For e2fsprogs ≥ 1.47.1, whose dumpe2fs resolves its argument with libblkid first and
 * so refuses "IMAGE?offset=N" (the "=" makes it a tag such as LABEL=x): debugfs still opens it.
 */
/** The first block `testb` is asked about. */
export const testbFirst = (firstBlock: number): number => Math.max(firstBlock, 1);

export function parseTestb(
  text: string,
  filesystem: { blockSize: number; firstBlock: number; blocksCount: number },
): Ext4Usage {
  const free: Range[] = [];
  // debugfs refuses block 0; on 4 KiB-block filesystems it is the first data block and holds the superblock.
  let expected = testbFirst(filesystem.firstBlock);
  for (const line of text.split('\n')) {
    const match = /^Block (\d+) (marked in use|not in use)$/.exec(line.trim());
    if (!match) continue;
    const block = Number(match[1]);
    if (block !== expected)
      throw new Error(`unexpected debugfs testb output: block ${block} where ${expected} was due`);
    expected++;
    if (match[2] !== 'not in use') continue;
    // Merged as they come: a real root filesystem has ~10⁶ free blocks.
    const previous = free.at(-1);
    if (previous && previous.last === block - 1) previous.last = block;
    else free.push({ first: block, last: block });
  }
  if (expected !== filesystem.blocksCount)
    throw new Error(`unexpected debugfs testb output: it ends at block ${expected - 1} of ${filesystem.blocksCount}`);
  return { ...filesystem, free };
}
