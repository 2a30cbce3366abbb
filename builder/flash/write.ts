/**
 * Writing an image to a device: which byte ranges (the bmap's mapped blocks, or the whole image),
 * each with the checksum its bytes must have, then the writes themselves — page-aligned buffers,
 * several writes in flight, every range's checksum computed from the source as it passes and
 * compared with the bmap's (or the manifest's sha256) so a wrong image is caught, not written.
 *
 * A bmap only lists blocks that hold data in the image file. When an image's zero blocks were made
 * into holes (a sparse copy, or swarmcard's own sparse decompression of a base image), the unused
 * part of a FAT (all zeros, and it matters) is left out; written to a used card, the old bytes
 * there become a corrupt FAT. So in bmap mode the system area of every FAT partition (boot
 * sector, reserved sectors, the FATs, the FAT16 root directory) is written as well.
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { fatSystemAreaBytes } from '../formats/fat-boot-sector.js';
import { FAT_TYPES, parseMbr, SECTOR } from '../formats/mbr.js';
import type { Progress } from '../log.js';
import { checkInterrupted } from '../util/scope.js';
import type { Bmap } from './bmap.js';
import type { FlashImage } from './image.js';
import { type Chunk, chunksOf, fillChunks, imageHead, type Slots, type Span } from './source.js';

export interface WriteRange extends Span {
  /** Hash algorithm of `expected` (and of the read-back check). */
  hash: string;
  /** The checksum the bytes must have: from the bmap or the manifest; absent → the source's own. */
  expected?: string;
  /** Where `expected` comes from, for messages. */
  from: 'bmap' | 'manifest' | 'source';
  /** Bmap block numbers, for messages. */
  blocks?: [number, number];
}

/** Writes in flight at once. */
export const DEPTH = 4;

/** Subtract the bmap's ranges from [start, end) (block-aligned), leaving what the bmap does not cover. */
function uncovered(start: number, end: number, bmap: Bmap): Span[] {
  const out: Span[] = [];
  let at = start;
  for (const r of bmap.ranges) {
    if (r.end <= at) continue;
    if (r.start >= end) break;
    if (r.start > at) out.push({ start: at, end: r.start });
    at = Math.max(at, r.end);
    if (at >= end) break;
  }
  if (at < end) out.push({ start: at, end });
  return out;
}

/** The FAT system areas the bmap leaves out, block-aligned (see the header). */
export async function fatAreasMissing(image: FlashImage, bmap: Bmap): Promise<Span[]> {
  let mbr: ReturnType<typeof parseMbr>;
  try {
    mbr = parseMbr(await imageHead(image, SECTOR), image.path);
  } catch {
    return []; // not an MBR image: nothing known to protect
  }
  const fats = mbr.partitions.filter((p) => FAT_TYPES.has(p.type) && p.offset + SECTOR <= image.size);
  if (fats.length === 0) return [];
  const head = await imageHead(image, Math.max(...fats.map((p) => p.offset)) + SECTOR);
  const missing: Span[] = [];
  for (const p of fats) {
    const area = fatSystemAreaBytes(head.subarray(p.offset, p.offset + SECTOR));
    if (area === undefined) continue;
    const start = Math.floor(p.offset / bmap.blockSize) * bmap.blockSize;
    const end = Math.min(Math.ceil((p.offset + Math.min(area, p.size)) / bmap.blockSize) * bmap.blockSize, image.size);
    missing.push(...uncovered(start, end, bmap));
  }
  return missing;
}

/** What to write: the bmap's ranges (plus missing FAT areas), or the whole image. */
export async function planRanges(image: FlashImage): Promise<WriteRange[]> {
  const bmap = image.bmap?.map;
  if (!bmap)
    return [
      {
        start: 0,
        end: image.size,
        hash: 'sha256',
        ...(image.sha256 ? { expected: image.sha256, from: 'manifest' as const } : { from: 'source' as const }),
      },
    ];
  const hash = bmap.checksumType ?? 'sha256';
  const ranges: WriteRange[] = bmap.ranges.map((r) => ({
    start: r.start,
    end: r.end,
    hash,
    blocks: [r.first, r.last],
    ...(r.checksum ? { expected: r.checksum, from: 'bmap' as const } : { from: 'source' as const }),
  }));
  for (const area of await fatAreasMissing(image, bmap)) ranges.push({ ...area, hash, from: 'source' });
  return ranges.sort((a, b) => a.start - b.start);
}

export const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

/** Write `length` bytes of `data` at `position`, all of them. */
async function writeFully(fh: FileHandle, data: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await fh.write(data, done, length - done, position + done);
    if (bytesWritten === 0)
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC', position: position + done });
    done += bytesWritten;
  }
}

/** At most `depth` operations in flight; the first failure is thrown by the next add or by drain. */
export class Window {
  private readonly running = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(private readonly depth: number) {}

  async add(operation: Promise<void>): Promise<void> {
    const tracked: Promise<void> = operation
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => this.running.delete(tracked));
    this.running.add(tracked);
    while (this.running.size >= this.depth && !this.failure) await Promise.race(this.running);
    if (this.failure) throw this.failure.error;
  }

  /** Wait for everything in flight; throw the first failure. */
  async drain(): Promise<void> {
    await Promise.all(this.running);
    if (this.failure) throw this.failure.error;
  }

  /** Wait for everything in flight, ignoring failures (after an error elsewhere). */
  async settle(): Promise<void> {
    await Promise.all(this.running);
  }
}

/** Where the error happened on the device, for the one sentence. */
export class DeviceIoError extends Error {
  constructor(
    readonly code: string,
    readonly offset: number,
    readonly operation: 'write' | 'read',
    cause: unknown,
  ) {
    super(`${operation} at ${offset}: ${code}`, { cause });
    this.name = 'DeviceIoError';
  }
}

export const onDevice =
  (operation: 'write' | 'read', offset: number) =>
  (error: unknown): never => {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    throw new DeviceIoError(code, (error as { position?: number }).position ?? offset, operation, error);
  };

function rangeName(r: WriteRange): string {
  return r.blocks ? `blocks ${r.blocks[0]}–${r.blocks[1]}` : `bytes ${r.start}–${r.end - 1}`;
}

/**
 * Write every range to the open device. Returns each range's checksum as read from the source:
 * the reference the read-back is compared with where the bmap or manifest gives none.
 */
export async function writeRanges(
  fh: FileHandle,
  image: FlashImage,
  ranges: WriteRange[],
  options: { slots: Slots; sectorSize: number; progress: Progress },
): Promise<string[]> {
  const { slots, sectorSize, progress } = options;
  const chunks = chunksOf(ranges);
  for (const c of chunks)
    if (c.start % sectorSize !== 0)
      throw new UserError(
        `${image.bmap?.path ?? image.path} maps blocks that do not start on the device's ${sectorSize}-byte sectors; ` +
          'move the bmap away to write the whole image.',
      );
  const digests: string[] = [];
  const window = new Window(DEPTH);
  let hash: Hash | undefined;
  let written = 0;
  try {
    for await (const { chunk, data } of fillChunks(image, chunks, slots)) {
      let handedOver = false;
      try {
        checkInterrupted();
        const range = ranges[chunk.range]!;
        const length = chunk.end - chunk.start;
        hash ??= createHash(range.hash);
        hash.update(data.subarray(0, length));
        if (chunk.end === range.end) finishRange(image, range, hash.digest('hex'), digests, chunk);
        if (chunk.end === range.end) hash = undefined;
        // The image's last sector may be partial: direct I/O writes whole sectors (zeros after the end).
        const io = roundUp(length, sectorSize);
        data.fill(0, length, io);
        handedOver = true;
        await window.add(
          writeFully(fh, data, io, chunk.start)
            .catch(onDevice('write', chunk.start))
            .then(() => {
              written += length;
              progress.update(written);
            })
            .finally(() => slots.release(data)),
        );
      } finally {
        if (!handedOver) slots.release(data);
      }
    }
    await window.drain();
  } finally {
    await window.settle();
  }
  return digests;
}

function finishRange(image: FlashImage, range: WriteRange, digest: string, digests: string[], chunk: Chunk): void {
  digests[chunk.range] = digest;
  if (range.expected === undefined || digest === range.expected) return;
  if (range.from === 'bmap')
    throw new UserError(
      `${image.path} does not match ${image.bmap!.path}: ${rangeName(range)} have another ${range.hash}, ` +
        'so the bmap belongs to another image (the card is now incomplete; flash it again with the right pair).',
    );
  throw new UserError(
    `${image.path} does not match its manifest.json: its sha256 is ${digest}, the manifest says ${range.expected} ` +
      '(the file is damaged or from another build; the card is now incomplete).',
  );
}
