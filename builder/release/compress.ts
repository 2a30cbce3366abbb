/**
 * Compressed node images where N nodes cost about one compression (docs/release.md, "Compression").
 *
 * An image is cut into fixed-size chunks (CHUNK_BYTES), and each chunk is compressed on its own
 * into one complete stream (xz: a block of one multithreaded xz per image, xz-blocks.ts) or frame
 * (zstd: single-threaded zstd processes, a batch of chunk files each, zstd-batches.ts). Their
 * concatenation is one ordinary .xz/.zst file: every decoder reads concatenated streams/frames in
 * full (xz, zstd, bsdcat/libarchive as used by Raspberry Pi Imager, Python's lzma; the tests check
 * each). Because a chunk's compressed bytes depend only on its raw bytes and the compressor, they are
 * cached by the chunk's sha256 (chunk-cache.ts): the zero chunks, the chunks a node shares with
 * the other nodes and with earlier builds are compressed once; node 2…N pay for their changed
 * chunks only. Output is the same bytes whatever the core count or cache state.
 *
 * One read pass over the image: each chunk is read into a shared buffer, added to the image's
 * running sha256 on one worker thread, given a key (the base's, when it equals the base's chunk:
 * reference-keys.ts; else its own sha256, on the other worker), then either found in the cache or
 * fed to a compressor. Memory is a few chunks, never the image: RAW_BUDGET bounds the buffers.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { UserError } from '../errors.js';
import { run } from '../exec/run.js';
import { toolPath } from '../exec/tools.js';
import { cachePaths } from '../source/cache.js';
import { deferred } from '../util/deferred.js';
import { Gate } from '../util/gate.js';
import { checkInterrupted, withScope } from '../util/scope.js';
import { giveBuffer, takeBuffer } from './buffers.js';
import { ChunkCache, HEADER_BYTES, readFully } from './chunk-cache.js';
import { Hasher } from './hasher.js';
import { ReferenceKeys } from './reference-keys.js';
import { XzBlockCompressor, xzBlockArgs } from './xz-blocks.js';
import { ZstdBatches, zstdBatchArgs } from './zstd-batches.js';

export type CompressFormat = 'xz' | 'zst';
export interface Compression {
  format: CompressFormat;
  level: number;
}

/**
 * xz 6 and zstd 3, the tools' own defaults (docs/release.md). xz 7–9 differ from 6 only in a larger
 * dictionary (16–64 MiB) that an 8 MiB chunk cannot use: the same bytes, measured, for up to 7× the
 * memory per compressor. zstd 9 saves 14% for 4× the time; below xz's size at any speed it never gets.
 */
export const DEFAULT_LEVEL: Record<CompressFormat, number> = { xz: 6, zst: 3 };

const MiB = 1024 * 1024;
/**
 * The chunk size, chosen by measurement (docs/release.md): the same as xz -6's dictionary. Against
 * plain `xz -T0` (24 MiB blocks) it costs 1.4% on dense data; a node recompresses 4× less than
 * with 16 MiB chunks, and 2× fewer compressor starts than 4 MiB chunks.
 */
export const CHUNK_BYTES = 8 * MiB;
/**
 * The most raw chunk bytes held at once: P+1 chunks (P compressors and the one being read), capped
 * here, so the Node process stays well under 200 MB (16 chunks of 8 MiB at most: 15 compressors).
 */
const RAW_BUDGET = 128 * MiB;
const FLUSH_BYTES = 64 * MiB;

export interface CompressedFile {
  /** Of the compressed file. */
  sha256: string;
  size: number;
  /** Of the raw image, computed in the same read pass. */
  rawSha256: string;
  rawSize: number;
  chunks: number;
  /** How many chunks were taken from the cache (or from an identical chunk earlier in the image). */
  reused: number;
}

export interface CompressOptions {
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** The chunk size; the default is CHUNK_BYTES (other sizes are for measurements and tests). */
  chunkBytes?: number;
  /** The image RAW was cloned from: chunks equal to its own take its keys (reference-keys.ts). */
  reference?: string;
  /** Stops the compression (its reason is thrown) when a sibling artifact of the same image failed. */
  signal?: AbortSignal;
}

const tools = { xz: 'xz', zst: 'zstd' } as const;
const levels: Record<CompressFormat, [number, number]> = { xz: [0, 9], zst: [1, 19] };

/** One chunk in, one stream/frame out: the bytes depend on nothing else. */
function compressorArgs(how: Compression, chunkBytes: number): string[] {
  return how.format === 'xz' ? xzBlockArgs(how.level, chunkBytes) : zstdBatchArgs(how.level);
}
// xz also takes options from XZ_DEFAULTS and XZ_OPT: emptied, so only the arguments above count.
// (zstd's ZSTD_CLEVEL and ZSTD_NBTHREADS are overridden by -LEVEL and -T1.)
const compressorEnv = { XZ_DEFAULTS: '', XZ_OPT: '' };

const versions = new Map<string, Promise<string>>();
/** The compressor's whole `--version` output (xz also names its liblzma), memoized per program. */
function versionOutput(format: CompressFormat): Promise<string> {
  const tool = tools[format];
  const key = `${tool}\0${toolPath(tool)}`;
  let version = versions.get(key);
  if (!version) {
    version = run(tool, ['--version']).then(({ stdout, stderr }) => `${stdout}${stderr}`.trim());
    versions.set(key, version);
    version.catch(() => versions.delete(key));
  }
  return version;
}

/** The compressor's version string (for the manifest), e.g. "xz (XZ Utils) 5.4.1". */
export async function compressorVersion(format: CompressFormat): Promise<string> {
  const first = (await versionOutput(format)).split('\n')[0] ?? '';
  // zstd decorates its line: "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***".
  return first.replace(/^\*+\s*|\s*\*+$/g, '');
}

function checkCompression(how: Compression, chunkBytes: number): void {
  const range = levels[how.format];
  if (!range) throw new UserError(`unknown compression format "${how.format}"; use xz or zst.`);
  if (!Number.isInteger(how.level) || how.level < range[0] || how.level > range[1])
    throw new UserError(`${how.format} level ${how.level} is out of range; use ${range[0]} to ${range[1]}.`);
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 4096)
    throw new Error(`chunk size ${chunkBytes} is not a whole number of at least 4096 bytes`);
}

/** The cache folder of one setting: everything the compressed bytes depend on, besides the chunk. */
function storeName(how: Compression, chunkBytes: number, version: string, args: string[]): string {
  const id = createHash('sha256')
    .update(JSON.stringify({ format: how.format, level: how.level, chunkBytes, version, args }))
    .digest('hex')
    .slice(0, 16);
  const size = chunkBytes % MiB === 0 ? `${chunkBytes / MiB}m` : `${chunkBytes}b`;
  return `${how.format}-${how.level}-${size}-${id}`;
}

const zeroPiece = Buffer.alloc(64 * 1024);
function isZero(bytes: Buffer): boolean {
  for (let at = 0; at < bytes.length; at += zeroPiece.length) {
    const piece = bytes.subarray(at, at + zeroPiece.length);
    if (!piece.equals(piece.length === zeroPiece.length ? zeroPiece : zeroPiece.subarray(0, piece.length)))
      return false;
  }
  return true;
}

/** A chunk ready to be written: its entry is in the cache. */
interface Planned {
  hash: string;
  length: number;
  /** Compressed by this call (not reused). */
  fresh: boolean;
}

/** Write RAW compressed to OUT atomically (OUT.partial, then rename; removed on every failure path incl. Ctrl-C). */
export async function compressImage(
  raw: string,
  out: string,
  how: Compression,
  options: CompressOptions = {},
): Promise<CompressedFile> {
  const chunkBytes = options.chunkBytes ?? CHUNK_BYTES;
  checkCompression(how, chunkBytes);
  const args = compressorArgs(how, chunkBytes);
  const store = join(cachePaths.chunks(), storeName(how, chunkBytes, await versionOutput(how.format), args));

  return withScope(async (scope) => {
    const hashes = new Hasher(); // the image's running hash
    scope.defer('stop the hashing thread', () => hashes.close());
    const checks = new Hasher(); // chunk keys, cache entry checks and the output's running hash
    scope.defer('stop the hashing thread', () => checks.close());
    const cache = new ChunkCache(store, scope, checks);

    const input = await open(raw, 'r');
    scope.defer(`close ${raw}`, () => input.close());
    const rawSize = (await input.stat()).size;
    let reference: ReferenceKeys | undefined;
    if (options.reference) {
      const handle = await open(options.reference, 'r');
      scope.defer(`close ${options.reference}`, () => handle.close());
      reference = await ReferenceKeys.of(handle, chunkBytes);
    }
    const keyOf = (index: number, bytes: Buffer) =>
      reference ? reference.keyOf(index, bytes, (b) => checks.digestOf(b)) : checks.digestOf(bytes);
    await mkdir(dirname(out), { recursive: true });
    const partial = `${out}.partial`;
    let renamed = false;
    scope.defer(`remove ${partial}`, () => (renamed ? undefined : rm(partial, { force: true })));
    const output = await open(partial, 'w');
    let outputOpen = true;
    scope.defer(`close ${partial}`, () => (outputOpen ? output.close() : undefined));

    const parallel = availableParallelism();
    const slotCount = Math.max(3, Math.min(parallel + 1, Math.floor(RAW_BUDGET / chunkBytes)));
    const buffers = Array.from({ length: slotCount }, () => takeBuffer(chunkBytes));
    const slots = new Gate(slotCount);
    // xz: one process with this many threads; zstd: up to this many processes (zstd-batches.ts).
    const compressorCount = Math.max(1, Math.min(parallel, slotCount - 1));
    // A chunk's block is at most a little larger than the chunk (LZMA2's headers on incompressible data).
    const blockBytes = chunkBytes + 64 * 1024;
    // Small blocks (mostly empty chunks) get a buffer of their own size, not a pooled 8 MiB one.
    const pooled = (size: number) => size > blockBytes / 8 && size <= blockBytes;
    const blockBuffers = {
      take: (size: number) => (pooled(size) ? takeBuffer(blockBytes) : Buffer.allocUnsafe(size)),
      give: (buffer: Buffer) => (buffer.length === blockBytes ? giveBuffer(buffer) : undefined),
    };
    const xzBlocks = new XzBlockCompressor(args, compressorCount, compressorEnv, blockBuffers);
    const xzRunning = new Set([xzBlocks]);
    scope.defer('stop xz', () => {
      for (const xz of xzRunning) xz.kill();
    });
    const zstdBatches =
      how.format === 'zst'
        ? new ZstdBatches(await scope.tempDir('swarmcard-zstd-'), args, compressorEnv, compressorCount)
        : undefined;
    const zeroHashes = new Map<number, Promise<string>>();
    const keyAt: string[] = [];
    let writingAt = 0; // the chunk the output waits for

    const count = Math.max(1, Math.ceil(rawSize / chunkBytes));
    const ready = Array.from({ length: count }, () => deferred<Planned>());
    const pending = new Map<string, Promise<boolean>>();
    const tasks: Promise<void>[] = [];
    let failure: { error: unknown } | undefined;
    const stop = (error: unknown) => {
      if (failure) return;
      failure = { error };
      for (const xz of xzRunning) xz.kill();
      zstdBatches?.abort(error);
    };
    const throwIfStopped = () => {
      checkInterrupted();
      if (failure) throw failure.error;
    };
    const { signal } = options;
    const abort = () => stop(signal!.reason);
    signal?.addEventListener('abort', abort, { once: true });
    scope.defer('stop listening for a sibling failure', () => signal?.removeEventListener('abort', abort));
    if (signal?.aborted) abort();

    /**
     * Compress `bytes` into the cache entry `hash`. `given` runs once they are on their way to the
     * compressor, `consumed` once it has taken them (xz) or they are staged (zstd): the buffer may be
     * reused then.
     */
    const compress = async (bytes: Buffer, hash: string, given = () => {}, consumed = () => {}) => {
      if (how.format === 'xz') {
        throwIfStopped();
        // A short last chunk (it must not share a block with another), or one compressed again
        // after the shared xz's input ended, gets an xz of its own.
        const shared = bytes.length === chunkBytes && !xzBlocks.ended;
        const xz = shared ? xzBlocks : new XzBlockCompressor(args, 1, compressorEnv, blockBuffers);
        xzRunning.add(xz);
        try {
          const compressed = xz.compress(bytes, consumed);
          given();
          // Awaited together: a failing xz rejects both, and neither rejection goes unhandled.
          const [{ pieces, release }] = await Promise.all([compressed, shared ? undefined : xz.close()]);
          try {
            await cache.write(hash, pieces, Promise.resolve());
          } finally {
            release();
          }
        } finally {
          if (!shared) xzRunning.delete(xz);
        }
        return;
      }
      given();
      throwIfStopped();
      const keep = (frame: AsyncIterable<Uint8Array>) => cache.write(hash, frame, Promise.resolve());
      await zstdBatches!.compress(bytes, hash, consumed, keep);
    };

    /** Find chunk `index` (in `buffer`) in the cache, or compress it; then free its buffer. */
    const plan = async (
      index: number,
      slot: Buffer,
      buffer: Buffer,
      hashed: Promise<unknown>,
      key: Promise<string>,
      decided: () => void,
    ) => {
      let holding = true;
      const free = async () => {
        if (!holding) return;
        holding = false;
        await hashed.catch(() => undefined); // the image's hash still reads the buffer
        buffers.push(slot);
        slots.leave();
      };
      try {
        const hash = await key;
        keyAt[index] = hash;
        if (writingAt === index) zstdBatches?.need(hash);
        let entry = pending.get(hash);
        let first = false;
        if (!entry) {
          first = true;
          entry = cache.has(hash).then(async (present) => {
            if (present) {
              decided();
              return false;
            }
            await compress(buffer, hash, decided, () => void free());
            return true;
          });
          pending.set(hash, entry);
        } else {
          decided();
          await free();
        }
        const compressed = await entry;
        await hashed;
        ready[index]!.resolve({ hash, length: buffer.length, fresh: first && compressed });
      } catch (error) {
        stop(error);
        ready[index]!.reject(error);
      } finally {
        decided();
        await free();
      }
    };

    const decisions: Promise<void>[] = [];
    const readAll = async () => {
      for (let index = 0; index < count; index++) {
        throwIfStopped();
        await slots.enter();
        const buffer = buffers.pop()!;
        if (failure) {
          buffers.push(buffer);
          slots.leave();
          throwIfStopped();
        }
        const position = index * chunkBytes;
        const view = buffer.subarray(0, Math.min(chunkBytes, rawSize - position));
        if (!(await readFully(input, view, position))) throw new Error(`${raw} got shorter while being compressed`);
        const hashed = hashes.update('raw', view);
        hashed.catch(() => undefined);
        // Zero chunks (a third of a Lite image) are known without hashing them again.
        const zero = isZero(view);
        if (zero && !zeroHashes.has(view.length)) zeroHashes.set(view.length, checks.digestOfZeros(view.length));
        const key = zero ? zeroHashes.get(view.length)! : keyOf(index, view);
        const decision = deferred<void>();
        decisions.push(decision.promise);
        tasks.push(plan(index, buffer, view, hashed, key, () => decision.resolve()));
      }
      // Every chunk is on its way: end the shared xz's input, so its last blocks come out, and let
      // the last zstd batch start without waiting to be full.
      await Promise.all(decisions);
      xzBlocks.end();
      zstdBatches?.end();
    };

    let written = 0;
    // Written bytes are flushed to the disk as they come, not all at the end: the final sync of
    // a 700 MiB file took 1–3 s here, after everything else was done.
    let flushedAt = 0;
    let flushing: Promise<void> | undefined;
    let flushFailure: { error: unknown } | undefined;
    let reused = 0;
    const writeAll = async () => {
      // Two buffers: one is hashed into the output's sha256 while the next entry is read.
      const spare = [0, 1].map(() => takeBuffer(chunkBytes + HEADER_BYTES + 64 * 1024));
      const hashing: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
      let done = 0;
      for (let index = 0; index < count; index++) {
        // A chunk the file waits for is compressed now, not once its batch is full.
        writingAt = index;
        zstdBatches?.need(keyAt[index]);
        const planned = await ready[index]!.promise;
        const side = index % 2;
        await hashing[side];
        let payload = await cache.read(planned.hash, spare[side]!);
        let fresh = planned.fresh;
        if (!payload) {
          // Missing (removed meanwhile) or corrupt: compress this chunk again, from the image.
          const again = Buffer.from(new SharedArrayBuffer(planned.length));
          const position = index * chunkBytes;
          if (!(await readFully(input, again, position)) || (await checks.digestOf(again)) !== planned.hash)
            throw new Error(`${raw} changed while being compressed`);
          await compress(again, planned.hash);
          payload = await cache.read(planned.hash, spare[side]!);
          if (!payload) throw new Error(`the chunk cache ${store} does not keep what is written to it`);
          fresh = true;
        }
        if (!fresh) reused++;
        await output.write(payload, 0, payload.length, written);
        written += payload.length;
        if (written - flushedAt >= FLUSH_BYTES && !flushing) {
          flushedAt = written;
          flushing = output
            .datasync()
            .catch((error: unknown) => {
              flushFailure ??= { error };
            })
            .finally(() => {
              flushing = undefined;
            });
        }
        hashing[side] = checks.update('out', payload);
        hashing[side].catch(() => undefined); // awaited below, unless writing stops first
        done += planned.length;
        options.onProgress?.(done, rawSize);
      }
      await Promise.all([...hashing, flushing]);
      if (flushFailure) throw flushFailure.error;
      for (const buffer of spare) giveBuffer(buffer);
    };

    const reading = readAll().catch(stop);
    const writing = writeAll().catch(stop);
    await Promise.all([reading, writing]);
    await Promise.allSettled(tasks);
    if (failure) throw failure.error;
    await xzBlocks.close();
    for (const buffer of buffers) giveBuffer(buffer);

    if ((await input.stat()).size !== rawSize) throw new Error(`${raw} changed size while being compressed`);
    const [sha256, rawSha256] = await Promise.all([checks.digest('out'), hashes.digest('raw')]);
    // Durable before it gets its final name: after a crash OUT is a whole file or absent.
    await output.sync();
    outputOpen = false;
    await output.close();
    throwIfStopped(); // a sibling that failed meanwhile: no file of this image is named as done
    await rename(partial, out);
    renamed = true;
    return { sha256, size: written, rawSha256, rawSize, chunks: count, reused };
  });
}
