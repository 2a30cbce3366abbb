/**
 * Read back what was written, from the device itself: the file handle is open with O_DIRECT, so
 * every read goes to the device and never to the page cache (which would still hold what was
 * meant to be written, not what the card kept). Each range's checksum is compared with its
 * reference (the bmap's, the manifest's sha256, or the source's own); at the first range that
 * differs, the bytes are compared with the image's to name the first bad offset.
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { Progress } from '../log.js';
import { checkInterrupted } from '../util/scope.js';
import type { FlashImage } from './image.js';
import { type Chunk, chunksOf, fillChunks, readFully, type Slots } from './source.js';
import { onDevice, roundUp, type WriteRange } from './write.js';

/** Reads in flight ahead of the hashing. */
const AHEAD = 4;

/** The chunks' bytes as the device holds them, in order; each slot belongs to the consumer. */
async function* readDevice(
  fh: FileHandle,
  chunks: Chunk[],
  slots: Slots,
  sectorSize: number,
): AsyncGenerator<{ chunk: Chunk; data: Buffer }> {
  const pending: Promise<{ chunk: Chunk; data: Buffer }>[] = [];
  let next = 0;
  const start = () => {
    const chunk = chunks[next++]!;
    return slots.acquire().then(async (data) => {
      const io = roundUp(chunk.end - chunk.start, sectorSize);
      const read = await readFully(fh, data, io, chunk.start).catch((error: unknown) => {
        slots.release(data);
        return onDevice('read', chunk.start)(error);
      });
      if (read < chunk.end - chunk.start) {
        slots.release(data);
        onDevice('read', chunk.start + read)(Object.assign(new Error('short read'), { code: 'ENXIO' }));
      }
      return { chunk, data };
    });
  };
  try {
    while (next < chunks.length && pending.length < AHEAD) pending.push(start());
    while (pending.length > 0) {
      const item = await pending.shift()!;
      if (next < chunks.length) pending.push(start());
      yield item;
    }
  } finally {
    for (const result of await Promise.allSettled(pending))
      if (result.status === 'fulfilled') slots.release(result.value.data);
  }
}

/** Index of the first range whose read-back checksum differs from its reference; undefined when all match. */
export async function firstBadRange(
  fh: FileHandle,
  ranges: WriteRange[],
  references: string[],
  options: { slots: Slots; sectorSize: number; progress: Progress },
): Promise<number | undefined> {
  let hash: Hash | undefined;
  let verified = 0;
  for await (const { chunk, data } of readDevice(fh, chunksOf(ranges), options.slots, options.sectorSize)) {
    try {
      checkInterrupted();
      const range = ranges[chunk.range]!;
      hash ??= createHash(range.hash);
      hash.update(data.subarray(0, chunk.end - chunk.start));
      verified += chunk.end - chunk.start;
      options.progress.update(verified);
      if (chunk.end === range.end) {
        if (hash.digest('hex') !== references[chunk.range]) return chunk.range;
        hash = undefined;
      }
    } finally {
      options.slots.release(data);
    }
  }
  return undefined;
}

/** Offset of the first byte in `range` where the device differs from the image (undefined: none). */
export async function firstDifference(
  fh: FileHandle,
  image: FlashImage,
  range: WriteRange,
  options: { slots: Slots; sectorSize: number },
): Promise<number | undefined> {
  const chunks = chunksOf([range]);
  const device = readDevice(fh, chunks, options.slots, options.sectorSize);
  try {
    for await (const { chunk, data } of fillChunks(image, chunks, options.slots)) {
      const got = await device.next();
      if (got.done) return chunk.start;
      try {
        const length = chunk.end - chunk.start;
        const want = data.subarray(0, length);
        const have = got.value.data.subarray(0, length);
        if (!want.equals(have)) {
          // Halve until one byte is left: Buffer.equals is a memcmp, far faster than a JavaScript loop.
          let [lo, hi] = [0, length];
          while (hi - lo > 1) {
            const mid = (lo + hi) >>> 1;
            if (!want.subarray(lo, mid).equals(have.subarray(lo, mid))) hi = mid;
            else lo = mid;
          }
          return chunk.start + lo;
        }
      } finally {
        options.slots.release(data);
        options.slots.release(got.value.data);
      }
    }
  } finally {
    await device.return(undefined);
  }
  return undefined;
}
