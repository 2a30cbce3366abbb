/**
 * The bytes of an image, chunk by chunk, in aligned memory: read from a raw `.img` (several reads
 * ahead), or decompressed on the fly from `.img.xz` / `.img.zst` through the tool door, never into
 * a temporary raw copy. Only the chunks asked for are filled; the rest of a stream is read past.
 *
 * Direct I/O (O_DIRECT) needs buffers aligned to the device's logical block size; Node's Buffers
 * are not, but a WebAssembly memory is page-aligned (it is mapped, not allocated on the heap), so
 * every slot here is a view into one.
 */
import { createReadStream } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { errorMessage, UserError } from '../errors.js';
import { stream, ToolError } from '../exec/run.js';

/** The largest piece written or read at once. */
export const CHUNK = 4 * 1024 * 1024;

/** A fixed set of page-aligned CHUNK-sized buffers, handed out and given back. */
export class Slots {
  private readonly free: Buffer[];
  private readonly waiting: ((slot: Buffer) => void)[] = [];

  constructor(count: number, size = CHUNK) {
    const memory = new WebAssembly.Memory({ initial: Math.ceil((count * size) / 65536) });
    this.free = Array.from({ length: count }, (_, i) => Buffer.from(memory.buffer, i * size, size));
  }

  acquire(): Promise<Buffer> {
    const slot = this.free.pop();
    return slot ? Promise.resolve(slot) : new Promise((resolve) => this.waiting.push(resolve));
  }

  release(slot: Buffer): void {
    const next = this.waiting.shift();
    if (next) next(slot);
    else this.free.push(slot);
  }
}

/** A byte range of the image, [start, end). */
export interface Span {
  start: number;
  end: number;
}

/** A piece of range number `range`, at most CHUNK long. */
export interface Chunk extends Span {
  range: number;
}

export function chunksOf(ranges: readonly Span[]): Chunk[] {
  const chunks: Chunk[] = [];
  ranges.forEach((r, range) => {
    for (let start = r.start; start < r.end; start += CHUNK)
      chunks.push({ range, start, end: Math.min(start + CHUNK, r.end) });
  });
  return chunks;
}

export interface Filled {
  chunk: Chunk;
  /** A slot holding the chunk's bytes from offset 0; the consumer releases it. */
  data: Buffer;
}

export type Compression = 'none' | 'xz' | 'zstd';

export interface ImageFile {
  path: string;
  compression: Compression;
  /** The raw image's size in bytes. */
  size: number;
}

/** Read exactly `length` bytes at `position` (fewer only at the end of the file). */
export async function readFully(fh: FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** Reads in flight ahead of the consumer. */
const AHEAD = 3;

async function* fillRaw(image: ImageFile, chunks: Chunk[], slots: Slots): AsyncGenerator<Filled> {
  const fh = await open(image.path, 'r');
  const pending: Promise<Filled>[] = [];
  let next = 0;
  const start = () => {
    const chunk = chunks[next++]!;
    return slots.acquire().then(async (data) => {
      const length = chunk.end - chunk.start;
      const read = await readFully(fh, data, length, chunk.start).catch((error: unknown) => {
        slots.release(data);
        throw error;
      });
      if (read < length) {
        slots.release(data);
        throw new UserError(`${image.path} ends at byte ${chunk.start + read}, before its end at ${image.size}.`);
      }
      return { chunk, data };
    });
  };
  try {
    while (next < chunks.length && pending.length < AHEAD) pending.push(start());
    while (pending.length > 0) {
      const filled = await pending.shift()!;
      if (next < chunks.length) pending.push(start());
      yield filled;
    }
  } finally {
    // Stopped early: wait for the reads still running and give their slots back.
    for (const result of await Promise.allSettled(pending))
      if (result.status === 'fulfilled') slots.release(result.value.data);
    await fh.close();
  }
}

const decompressors = {
  xz: { tool: 'xz', args: ['--decompress', '--stdout', '--threads=0'] },
  zstd: { tool: 'zstd', args: ['--decompress', '--stdout', '--long=31', '--quiet'] },
} as const;

async function* fillStream(image: ImageFile, chunks: Chunk[], slots: Slots): AsyncGenerator<Filled> {
  const { tool, args } = decompressors[image.compression as 'xz' | 'zstd'];
  // Nothing may be awaited between starting the tool and attaching its stdout.
  const child = stream(tool, args);
  const output = child.stdout![Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const feeding = pipeline(createReadStream(image.path, { highWaterMark: CHUNK }), child.stdin!);
  feeding.catch(() => undefined);
  const broken = async (error: unknown): Promise<never> => {
    await child.done.catch((toolError: unknown) => {
      const said =
        toolError instanceof ToolError ? toolError.stderr.trim().split('\n').at(-1) : errorMessage(toolError);
      throw new UserError(`${image.path} cannot be decompressed (${said}); it is truncated or corrupt.`);
    });
    throw error;
  };
  let position = 0;
  let index = 0;
  let slot: Buffer | undefined;
  let finished = false;
  try {
    for (;;) {
      const next = await output.next().catch(broken);
      if (next.done) break;
      const piece = next.value;
      let offset = 0;
      while (offset < piece.length && index < chunks.length) {
        const chunk = chunks[index]!;
        const at = position + offset;
        if (at < chunk.start) {
          offset += Math.min(chunk.start - at, piece.length - offset);
          continue;
        }
        slot ??= await slots.acquire();
        const n = Math.min(chunk.end - at, piece.length - offset);
        piece.copy(slot, at - chunk.start, offset, offset + n);
        offset += n;
        if (at + n === chunk.end) {
          const data = slot;
          slot = undefined;
          index++;
          yield { chunk, data };
        }
      }
      position += piece.length;
    }
    await Promise.all([child.done, feeding]).catch(broken);
    finished = true;
    if (position !== image.size)
      throw new UserError(
        `${image.path} holds an image of ${position} bytes, not the ${image.size} its ` +
          'bmap or manifest says; they do not belong together.',
      );
  } finally {
    if (slot) slots.release(slot);
    if (!finished) {
      // Stopped early: the tool's unread output must be discarded, or its exit is never complete.
      child.subprocess.kill();
      await output.return?.();
      await child.done.catch(() => undefined);
      await feeding.catch(() => undefined);
    }
  }
}

/** The chunks' bytes, in order. Each yielded slot belongs to the consumer until it releases it. */
export function fillChunks(image: ImageFile, chunks: Chunk[], slots: Slots): AsyncGenerator<Filled> {
  return image.compression === 'none' ? fillRaw(image, chunks, slots) : fillStream(image, chunks, slots);
}

/** The first `length` bytes of the image (fewer if it is shorter), decompressing only as far as needed. */
export async function imageHead(image: ImageFile, length: number): Promise<Buffer> {
  const slots = new Slots(Math.ceil(length / CHUNK) + 1);
  const parts: Buffer[] = [];
  const end = Math.min(length, image.size);
  const chunks = chunksOf([{ start: 0, end }]);
  const filling = fillChunks(image, chunks, slots);
  for await (const { chunk, data } of filling) {
    parts.push(Buffer.from(data.subarray(0, chunk.end - chunk.start)));
    slots.release(data);
    if (chunk.end >= end) break;
  }
  return Buffer.concat(parts);
}
