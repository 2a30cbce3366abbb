/**
 * An image's `.bmap` (format 2.0, docs/release.md "bmap"): `bmaptool copy --bmap` then writes only
 * the blocks the partition table and the filesystems use (mapped-blocks.ts) and checks each range's
 * sha256 while it writes. The map lists every used block, zero or not, so flashing over a used card
 * gives the same filesystems as writing the whole image. The file is `<out>.partial` until it is
 * complete and synced, then renamed; any failure or Ctrl-C removes the `.partial`.
 */
import { createHash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { BMAP_BLOCK_SIZE, type BmapRange, bmapBlocksCount, bmapXml } from '../formats/bmap-xml.js';
import type { Range } from '../util/ranges.js';
import { checkInterrupted, withScope } from '../util/scope.js';
import { mappedRanges } from './mapped-blocks.js';

export const BMAP_BLOCK = BMAP_BLOCK_SIZE;

/** The bmap file written: its sha256 and size in bytes, and the image's mapped and total blocks. */
export interface BmapFile {
  sha256: string;
  size: number;
  mappedBlocks: number;
  blocks: number;
}

/** Read buffer for hashing: memory stays at this, whatever the image. */
const HASH_CHUNK = 4 * 1024 * 1024;

/** Each range's sha256 over the image bytes it covers (the last block may end at the image end). */
async function hashRanges(image: string, ranges: readonly Range[]): Promise<{ size: number; hashed: BmapRange[] }> {
  const handle = await open(image, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(HASH_CHUNK);
    const hashed: BmapRange[] = [];
    for (const { first, last } of ranges) {
      const hash = createHash('sha256');
      const end = Math.min((last + 1) * BMAP_BLOCK, size);
      for (let at = first * BMAP_BLOCK; at < end; ) {
        checkInterrupted();
        const { bytesRead } = await handle.read(buffer, 0, Math.min(HASH_CHUNK, end - at), at);
        if (bytesRead === 0) throw new Error(`${image} ended at byte ${at} while it was being read`);
        hash.update(buffer.subarray(0, bytesRead));
        at += bytesRead;
      }
      hashed.push({ first, last, sha256: hash.digest('hex') });
    }
    return { size, hashed };
  } finally {
    await handle.close();
  }
}

/**
 * Write IMAGE's bmap to OUT atomically (OUT.partial then rename; removed on every failure path,
 * incl. Ctrl-C via the scope).
 */
export async function writeBmap(image: string, out: string): Promise<BmapFile> {
  return withScope(async (scope) => {
    const partial = `${out}.partial`;
    let renamed = false;
    scope.defer(`remove ${partial}`, () => (renamed ? undefined : rm(partial, { force: true })));
    const handle = await open(partial, 'w');
    let xml: string;
    let mappedBlocks: number;
    let blocks: number;
    try {
      const ranges = await mappedRanges(image);
      const { size, hashed } = await hashRanges(image, ranges);
      xml = bmapXml({ imageSize: size, ranges: hashed });
      mappedBlocks = hashed.reduce((sum, r) => sum + r.last - r.first + 1, 0);
      blocks = bmapBlocksCount(size);
      checkInterrupted();
      await handle.writeFile(xml);
      // Durable before it gets its final name.
      await handle.sync();
    } finally {
      await handle.close();
    }
    checkInterrupted();
    await rename(partial, out);
    renamed = true;
    return {
      sha256: createHash('sha256').update(xml).digest('hex'),
      size: Buffer.byteLength(xml),
      mappedBlocks,
      blocks,
    };
  });
}
