/**
 * An image's `.bmap` (format 2.0, docs/release.md "bmap"): `bmaptool copy --bmap` then writes only
 * the blocks the partition table and the filesystems use (mapped-blocks.ts) and checks each range's
 * sha256 while it writes. The map lists every used block, zero or not, so flashing over a used card
 * gives the same filesystems as writing the whole image. The file is `<out>.partial` until it is
 * complete and synced, then renamed; any failure or Ctrl-C removes the `.partial`.
 *
 * Ranges are cut at every HASH_WINDOW of the image. A node differs from the base it was cloned from
 * in a few places, so most of its pieces hold the base's bytes: given the base as `reference`, such
 * a piece takes the hash this process already took of the same piece (compared, not hashed: a
 * fraction of the cost). Merged, one range spans the whole root filesystem and changes with every
 * node.
 */
import { createHash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { BMAP_BLOCK_SIZE, type BmapRange, bmapBlocksCount, bmapXml } from '../formats/bmap-xml.js';
import { type FileHashes, HASH_WINDOW, type HashReference, hashFile } from '../util/hash-file.js';
import { type Range, splitRanges } from '../util/ranges.js';
import { checkInterrupted, withScope } from '../util/scope.js';
import { mappedRanges } from './mapped-blocks.js';

export const BMAP_BLOCK = BMAP_BLOCK_SIZE;

/** The bmap file written: its sha256 and size in bytes, and the image's mapped and total blocks. */
export interface BmapFile {
  sha256: string;
  size: number;
  mappedBlocks: number;
  blocks: number;
  /** The image's own sha256, with `imageSha256: true` (made in the same read). */
  imageSha256?: string;
  /** The ranges of the map, and how many took the hash known for the reference's identical bytes. */
  ranges: number;
  reusedRanges: number;
}

/** Per reference file (its identity), the hash of each piece `first-last` of its bytes. */
const referencePieces = new Map<string, Map<string, string>>();
const pieceName = (r: Range) => `${r.first}-${r.last}`;

function referenceOf(path: string, ranges: readonly Range[]): HashReference {
  const known = (id: string) => ranges.map((r) => referencePieces.get(id)?.get(pieceName(r)));
  return { path, known };
}

/** Keep the hashes of the pieces that hold the reference's bytes, for the next node. */
function remember(read: FileHashes, hashed: readonly BmapRange[]): void {
  if (read.referenceId === undefined) return;
  const known = referencePieces.get(read.referenceId) ?? new Map<string, string>();
  referencePieces.set(read.referenceId, known);
  for (const [i, r] of hashed.entries()) if (read.same[i]) known.set(pieceName(r), r.sha256);
}

/**
 * Write IMAGE's bmap to OUT atomically (OUT.partial then rename; removed on every failure path,
 * incl. Ctrl-C via the scope).
 */
export async function writeBmap(
  image: string,
  out: string,
  options: {
    imageSha256?: boolean;
    reference?: string;
    /** Stops the bmap (its reason is thrown) when a sibling artifact of the same image failed. */
    signal?: AbortSignal;
  } = {},
): Promise<BmapFile> {
  return withScope(async (scope) => {
    const partial = `${out}.partial`;
    let renamed = false;
    scope.defer(`remove ${partial}`, () => (renamed ? undefined : rm(partial, { force: true })));
    const handle = await open(partial, 'w');
    let xml: string;
    let mappedBlocks: number;
    let blocks: number;
    let imageSha256: string | undefined;
    let reusedRanges = 0;
    let rangeCount = 0;
    try {
      const ranges = splitRanges(await mappedRanges(image), HASH_WINDOW / BMAP_BLOCK);
      const reference = options.reference ? referenceOf(options.reference, ranges) : undefined;
      const whole = options.imageSha256 === true;
      const read = await hashFile(image, { ranges, block: BMAP_BLOCK, whole, reference, signal: options.signal });
      const { size } = read;
      const hashed = ranges.map((r, i): BmapRange => ({ ...r, sha256: read.ranges[i]! }));
      remember(read, hashed);
      reusedRanges = read.reused;
      rangeCount = ranges.length;
      imageSha256 = read.sha256;
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
    options.signal?.throwIfAborted();
    await rename(partial, out);
    renamed = true;
    return {
      sha256: createHash('sha256').update(xml).digest('hex'),
      size: Buffer.byteLength(xml),
      mappedBlocks,
      blocks,
      ranges: rangeCount,
      reusedRanges,
      ...(imageSha256 ? { imageSha256 } : {}),
    };
  });
}
