/**
 * zstd for the chunks of an image that the chunk cache lacks, many chunks per process. Started per
 * 8 MiB chunk, zstd spent more on starting (its memory, fresh each time) than on compressing at
 * level 3: 20 chunks took 2.65 s one process each, 0.27 s in one process (docs/release.md). Given
 * several files, one zstd compresses each into a complete frame of its own, written beside the
 * others (`--output-dir-flat`), so every chunk stays an independent frame that the cache can keep.
 * Chunks are staged as files named by their hash; a batch starts once it holds BATCH chunks, or
 * when the image has been read to its end (`end`).
 */
import { createReadStream } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { run } from '../exec/run.js';
import { Gate } from '../util/gate.js';

/** Chunks per process: 128 MiB at 8 MiB chunks, so both cores get work on a node's few changes too. */
const BATCH = 16;
/**
 * The most chunks staged at once: two batches compressing and one filling. A staged chunk frees
 * its reading buffer, so without this bound reading would run ahead and stage most of the image.
 */
const STAGED = 3 * BATCH;

/** What the frames depend on (the cache's key) besides the chunk: one frame per input file. */
export function zstdBatchArgs(level: number): string[] {
  return ['-q', '-T1', `-${level}`, '--no-progress', '-f'];
}

interface Batch {
  files: string[];
  /** The staged files being written: the batch starts when they all are. */
  writes: Promise<void>[];
  /** Settled when the batch's zstd has exited. */
  done: Promise<void>;
  finish: (outcome: Promise<void>) => void;
}

function newBatch(): Batch {
  let finish!: (outcome: Promise<void>) => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  done.catch(() => undefined); // every member awaits it
  return { files: [], writes: [], done, finish };
}

export class ZstdBatches {
  private open: Batch | undefined;
  private ended = false;
  private readonly staging = new Gate(STAGED);

  /** `dir`: a private folder for staged chunks and frames; `processes`: how many zstd run at once. */
  constructor(
    private readonly dir: string,
    private readonly args: string[],
    private readonly env: Record<string, string>,
    private readonly processes: Gate,
  ) {}

  /**
   * Compress `bytes` (named `name`, e.g. its hash) into one zstd frame and give it to `keep` as a
   * stream (a finished batch holds up to BATCH frames: read whole, they would all be in memory at
   * once). `consumed` runs once the bytes are staged: the caller's buffer may be reused then.
   */
  async compress(
    bytes: Buffer,
    name: string,
    consumed: () => void,
    keep: (frame: AsyncIterable<Uint8Array>) => Promise<void>,
  ): Promise<void> {
    await this.staging.enter();
    try {
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
    if (this.ended || batch.files.length >= BATCH) this.start(batch);
    await staged;
    await batch.done;
    const output = join(this.dir, `${basename(input)}.zst`);
    try {
      await keep(createReadStream(output));
    } finally {
      await Promise.all([rm(input, { force: true }), rm(output, { force: true })]);
    }
  }

  /** No more chunks will come in order: a batch not yet full starts now, and later ones at once. */
  end(): void {
    this.ended = true;
    if (this.open) this.start(this.open);
  }

  private start(batch: Batch): void {
    if (this.open === batch) this.open = undefined;
    batch.finish(
      (async () => {
        await Promise.all(batch.writes);
        await this.processes.enter();
        try {
          await run('zstd', [...this.args, '--output-dir-flat', this.dir, ...batch.files], { env: this.env });
        } finally {
          this.processes.leave();
        }
      })(),
    );
  }
}
