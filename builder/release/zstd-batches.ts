/**
 * zstd for the chunks of an image that the chunk cache lacks, many chunks per process. Started per
 * 8 MiB chunk, zstd spent more on starting (its memory, fresh each time) than on compressing at
 * level 3: 20 chunks took 2.65 s one process each, 0.27 s in one process (docs/release.md). Given
 * several files, one zstd compresses each into a complete frame of its own, written beside the
 * others (`--output-dir-flat`), so every chunk stays an independent frame that the cache can keep.
 * Chunks are staged as files named by their hash; a batch starts once it holds BATCH chunks, when
 * the image has been read to its end (`end`), when no zstd is at work, or when it holds the chunk
 * the file being written waits for (`need`): a node's first changed chunk used to wait for the
 * whole image to be read, and the writing of the file with it.
 */
import { open, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { stream } from '../exec/run.js';
import { type Deferred, deferred } from '../util/deferred.js';
import { Gate } from '../util/gate.js';
import { giveBuffer, takeBuffer } from './buffers.js';

/** Chunks per process: 128 MiB at 8 MiB chunks, so both cores get work on a node's few changes too. */
const BATCH = 16;
/**
 * At most this many zstd processes: reading and hashing the image (two worker threads) cannot feed
 * more, and each one in flight means a batch of staged files on disk.
 */
const MAX_PROCESSES = 4;

/** What the frames depend on (the cache's key) besides the chunk: one frame per input file. */
export function zstdBatchArgs(level: number): string[] {
  return ['-q', '-T1', `-${level}`, '--no-progress', '-f'];
}

interface Batch {
  files: string[];
  /** The staged files being written: the batch starts when they all are. */
  writes: Promise<void>[];
  /** Settled when the batch's zstd has exited; every member awaits it. */
  done: Deferred<void>;
}

const newBatch = (): Batch => ({ files: [], writes: [], done: deferred() });

/** Frames are read in pieces of this size, into one buffer per frame. */
const PIECE_BYTES = 256 * 1024;

/**
 * A file's bytes, read once they are asked for, into one reused buffer: each piece must be done
 * with before the next is asked for (as a `for await` body is). A new buffer per piece left tens of
 * MiB of garbage per batch, which raised the peak RSS.
 */
async function* fileBytes(path: string): AsyncGenerator<Uint8Array> {
  const handle = await open(path, 'r');
  const piece = takeBuffer(PIECE_BYTES);
  try {
    for (let position = 0; ; ) {
      const { bytesRead } = await handle.read(piece, 0, piece.length, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      yield piece.subarray(0, bytesRead);
    }
  } finally {
    giveBuffer(piece);
    await handle.close();
  }
}

export class ZstdBatches {
  private open: Batch | undefined;
  private ended = false;
  /** Calls waiting for a place to stage: the last of them starts the final batch. */
  private waiting = 0;
  private failure: { error: unknown } | undefined;
  private readonly running = new Set<{ kill: () => unknown }>();
  private readonly processes: Gate;
  /** Batches started and not finished (running, or waiting for a process). */
  private started = 0;
  /** The chunk the file being written waits for (`need`). */
  private needed: string | undefined;
  /**
   * Chunks staged at once: a batch per process and one filling. A staged chunk frees its read
   * buffer, so without this bound reading would run ahead of zstd and stage most of the image.
   */
  private readonly staging: Gate;

  /** `dir`: a private folder for staged chunks and frames; `processes`: how many zstd may run at once. */
  constructor(
    private readonly dir: string,
    private readonly args: string[],
    private readonly env: Record<string, string>,
    processes: number,
  ) {
    const count = Math.max(1, Math.min(processes, MAX_PROCESSES));
    this.processes = new Gate(count);
    this.staging = new Gate((count + 1) * BATCH);
  }

  /**
   * Compress `bytes` (named `name`, e.g. its hash) into one zstd frame and give it to `keep` as a
   * stream (a finished batch holds up to BATCH frames: read whole, they would all be in memory at
   * once). `consumed` runs once the bytes are staged, or the call failed: the caller's buffer may
   * be reused then.
   */
  async compress(
    bytes: Buffer,
    name: string,
    consumed: () => void,
    keep: (frame: AsyncIterable<Uint8Array>) => Promise<void>,
  ): Promise<void> {
    this.waiting++;
    await this.staging.enter();
    this.waiting--;
    try {
      if (this.failure) {
        consumed();
        throw this.failure.error;
      }
      await this.stageAndCompress(bytes, name, consumed, keep);
    } finally {
      this.staging.leave();
    }
  }

  private async stageAndCompress(
    bytes: Buffer,
    name: string,
    consumed: () => void,
    keep: (frame: AsyncIterable<Uint8Array>) => Promise<void>,
  ): Promise<void> {
    const batch = this.open ?? newBatch();
    const input = join(this.dir, name);
    batch.files.push(input);
    const staged = writeFile(input, bytes).finally(consumed);
    batch.writes.push(staged);
    this.open = batch;
    // With no zstd at work, a chunk starts at once: a node's few changed chunks are compressed
    // while the rest of the image is read (a busy zstd lets the next batch fill up).
    const idle = this.started === 0;
    const full = batch.files.length >= BATCH || (this.ended && this.waiting === 0);
    if (full || idle || name === this.needed) this.start(batch);
    const output = join(this.dir, `${basename(input)}.zst`);
    try {
      await staged;
      await batch.done.promise;
      await keep(fileBytes(output));
    } finally {
      await Promise.all([rm(input, { force: true }), rm(output, { force: true })]);
    }
  }

  /**
   * No more chunks will come from reading: the batch being filled starts once the calls still
   * waiting for a place have joined it (a chunk compressed again later gets a batch of its own).
   */
  end(): void {
    this.ended = true;
    if (this.open && this.waiting === 0) this.start(this.open);
  }

  /** The file being written waits for chunk `name` (if known): its batch starts once it holds it. */
  need(name: string | undefined): void {
    this.needed = name;
    if (name !== undefined && this.open?.files.includes(join(this.dir, name))) this.start(this.open);
  }

  /** Something else failed: fail every call, start no more zstd, stop the running ones. */
  abort(error: unknown): void {
    this.failure ??= { error };
    const open = this.open;
    this.open = undefined;
    open?.done.reject(error);
    for (const child of this.running) child.kill();
  }

  private start(batch: Batch): void {
    if (this.open === batch) this.open = undefined;
    this.started++;
    const finished = () => {
      this.started--;
    };
    batch.done.promise.then(finished, finished);
    batch.done.resolve(
      (async () => {
        await Promise.all(batch.writes);
        await this.processes.enter();
        try {
          if (this.failure) throw this.failure.error;
          const args = [...this.args, '--output-dir-flat', this.dir, ...batch.files];
          const child = stream('zstd', args, { env: this.env });
          this.running.add(child.subprocess);
          try {
            child.stdin.end();
            child.stdout.resume(); // -q with an output folder: nothing comes, but never let it block
            await child.done;
          } finally {
            this.running.delete(child.subprocess);
          }
        } finally {
          this.processes.leave();
        }
      })(),
    );
  }
}
