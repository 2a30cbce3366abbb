/**
 * An image's `.bmap` (format 2.0, docs/release.md "bmap"): `bmaptool copy --bmap` then writes only
 * the blocks the partition table and the filesystems use (mapped-blocks.ts) and checks each range's
 * sha256 while it writes. The map lists every used block, zero or not, so flashing over a used card
 * gives the same filesystems as writing the whole image. The file is `<out>.partial` until it is
 * complete and synced, then renamed; any failure or Ctrl-C removes the `.partial`.
 */
import { createHash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { BMAP_BLOCK_SIZE, type BmapRange, bmapBlocksCount, bmapXml } from '../formats/bmap-xml.js';
import type { Range } from '../util/ranges.js';
import { checkInterrupted, InterruptedError, interrupted, interruptSignal, withScope } from '../util/scope.js';
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
}

/**
 * One read of the image on a worker thread: each range's sha256 over the bytes it covers (the last
 * block may end at the image end) and, when asked, the sha256 of the whole image. A node image is
 * 2.7 GiB: a second read for the whole hash cost as much again in system time, and hashing on the
 * main thread held up the next node's work. One buffer, read into again and again (fresh buffers
 * make the kernel map and zero new pages each time).
 */
const hashWorker = `
const { parentPort, workerData: { image, ranges, block, whole } } = require('node:worker_threads');
const { closeSync, fstatSync, openSync, readSync } = require('node:fs');
const { createHash } = require('node:crypto');
const fd = openSync(image, 'r');
try {
  const size = fstatSync(fd).size;
  const all = whole ? createHash('sha256') : undefined;
  const hashes = [];
  const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
  let range = 0;
  let current;
  // Without the whole hash, only the mapped bytes are read.
  let at = whole ? 0 : (ranges[0]?.first ?? 0) * block;
  const stop = whole ? size : Math.min(size, ((ranges.at(-1)?.last ?? -1) + 1) * block);
  while (at < stop) {
    const n = readSync(fd, buffer, 0, Math.min(buffer.length, stop - at), at);
    if (n === 0) throw new Error(image + ' ended at byte ' + at + ' while it was being read');
    all?.update(buffer.subarray(0, n));
    for (let from = at; range < ranges.length; ) {
      const start = Math.max(ranges[range].first * block, from);
      const end = Math.min((ranges[range].last + 1) * block, size);
      if (start >= at + n) break;
      const to = Math.min(end, at + n);
      (current ??= createHash('sha256')).update(buffer.subarray(start - at, to - at));
      if (to < end) break;
      hashes.push(current.digest('hex'));
      current = undefined;
      range++;
      from = to;
    }
    at += n;
    if (!whole && range < ranges.length && !current) at = Math.max(at, ranges[range].first * block);
  }
  if (range < ranges.length) throw new Error(image + ' is shorter than its mapped blocks');
  parentPort.postMessage({ size, hashes, sha256: all?.digest('hex') });
} finally {
  closeSync(fd);
}
`;

interface Hashed {
  size: number;
  hashed: BmapRange[];
  /** Of the whole image, when asked. */
  sha256?: string;
}

function hashImage(image: string, ranges: readonly Range[], whole: boolean): Promise<Hashed> {
  checkInterrupted(); // the abort below is only heard by a worker already running
  return new Promise((resolve, reject) => {
    const workerData = { image, ranges, block: BMAP_BLOCK, whole };
    const worker = new Worker(hashWorker, { eval: true, workerData });
    const stop = () => void worker.terminate();
    interruptSignal.addEventListener('abort', stop, { once: true });
    worker.once('message', ({ size, hashes, sha256 }: { size: number; hashes: string[]; sha256?: string }) =>
      resolve({ size, hashed: ranges.map((r, i) => ({ ...r, sha256: hashes[i]! })), sha256 }),
    );
    worker.once('error', reject);
    worker.once('exit', (code) => {
      interruptSignal.removeEventListener('abort', stop);
      if (interrupted()) reject(new InterruptedError());
      else if (code !== 0) reject(new Error(`hashing ${image} stopped with code ${code}`));
    });
  });
}

/**
 * Write IMAGE's bmap to OUT atomically (OUT.partial then rename; removed on every failure path,
 * incl. Ctrl-C via the scope).
 */
export async function writeBmap(
  image: string,
  out: string,
  options: { imageSha256?: boolean } = {},
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
    try {
      const ranges = await mappedRanges(image);
      const { size, hashed, sha256 } = await hashImage(image, ranges, options.imageSha256 === true);
      imageSha256 = sha256;
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
      ...(imageSha256 ? { imageSha256 } : {}),
    };
  });
}
