/**
 * One `xz` process for all the chunks of an image that the chunk cache lacks. Started per chunk,
 * xz spent more time setting up its 94 MiB encoder than compressing 8 MiB (+13% on a whole image,
 * docs/release.md); in its multithreaded mode with `--block-size` equal to the chunk size, one
 * process compresses every chunk it is fed as an independent block, on every core, and records the
 * block's sizes in its header, so the blocks can be cut out of its output (formats/xz.ts) and each
 * kept as a complete stream of its own. The bytes do not depend on the number of threads; at
 * least two are asked for, since with one xz uses its single-threaded mode, which does not record
 * the sizes (`-T+1` would force the other mode, but needs xz 5.4; Ubuntu 22.04 has 5.2).
 */

import { streamInto } from '../exec/run.js';
import { XzBlockSplitter, xzStreamOf } from '../formats/xz.js';

/** A chunk's .xz stream, in pieces; `release` gives its block's buffer back once it is written. */
export interface XzChunkStream {
  pieces: Buffer[];
  release: () => void;
}

/** Where blocks are copied as they come out of xz (a pool, so that memory is reused). */
export interface BlockBuffers {
  take: (size: number) => Buffer;
  give: (buffer: Buffer) => void;
}

/**
 * Blocks cut out and not yet written to the cache, at most: writing one takes milliseconds, making
 * one (xz -6, 8 MiB) about a second, so more would only hold memory.
 */
const MAX_HELD = 2;

/** xz's output is read into one buffer of this size, again and again. */
const READ_BYTES = 256 * 1024;

type Xz = Awaited<ReturnType<typeof streamInto>>;

const unpooled: BlockBuffers = { take: (size) => Buffer.allocUnsafe(size), give: () => undefined };

interface Waiting {
  resolve: (stream: XzChunkStream) => void;
  reject: (error: unknown) => void;
}

/** What the blocks depend on (the cache's key): never the thread count, which only adds `-TN`. */
export function xzBlockArgs(level: number, chunkBytes: number): string[] {
  return [`-${level}`, `--block-size=${chunkBytes}`, '-c'];
}

export class XzBlockCompressor {
  private child: Promise<Xz> | undefined;
  private readonly waiting: Waiting[] = [];
  private readonly splitter: XzBlockSplitter;
  private failure: unknown;
  /** Blocks cut out and not yet released: xz's output waits while there are too many. */
  private held = 0;
  /** No more chunks will be given (stdin is closed). */
  ended = false;

  constructor(
    private readonly args: string[],
    private readonly threads: number,
    private readonly env: Record<string, string>,
    private readonly buffers: BlockBuffers = unpooled,
  ) {
    this.splitter = new XzBlockSplitter(buffers.take);
  }

  /**
   * The chunk as a complete .xz stream, in pieces. `bytes` must be one whole block (the chunk size)
   * unless it is the last thing this compressor is given. `consumed` runs once xz has taken them.
   */
  compress(bytes: Buffer, consumed: () => void): Promise<XzChunkStream> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.reject(new Error('xz was given a chunk after its input ended'));
    const result = new Promise<XzChunkStream>((resolve, reject) => this.waiting.push({ resolve, reject }));
    // Continuations run in the order they were added: chunks reach xz in the order they came.
    this.start().then(
      (xz) => xz.stdin.write(bytes, () => consumed()),
      () => consumed(), // xz did not start: fail() has rejected every waiting chunk
    );
    return result;
  }

  /**
   * No more chunks. xz writes a finished block only between reads of its input, so the last
   * blocks come out once the input ends: call this as soon as every chunk has been given.
   */
  end(): void {
    this.ended = true;
    void this.child?.then(
      (xz) => xz.stdin.end(),
      () => undefined,
    );
  }

  /** End the input and wait for xz to finish (at once when it never started). */
  async close(): Promise<void> {
    this.end();
    await (await this.child)?.done;
  }

  kill(): void {
    void this.child?.then(
      (xz) => xz.subprocess.kill(),
      () => undefined,
    );
  }

  private start(): Promise<Xz> {
    this.child ??= this.spawn();
    return this.child;
  }

  private async spawn(): Promise<Xz> {
    const readBuffer = Buffer.allocUnsafeSlow(READ_BYTES);
    // Output that cannot be cut is reported once xz has exited: a failing xz says why itself.
    let unreadable: unknown;
    let xz: Xz | undefined;
    const onData = (piece: Buffer): boolean => {
      if (unreadable) return true;
      try {
        for (const block of this.splitter.push(piece)) {
          const next = this.waiting.shift();
          if (!next) throw new Error('xz gave a block no chunk was waiting for');
          this.held++;
          let held = true;
          const release = () => {
            if (!held) return;
            held = false;
            this.buffers.give(block.buffer);
            if (--this.held < MAX_HELD) xz?.resume();
          };
          next.resolve({ pieces: xzStreamOf(block), release });
        }
      } catch (error) {
        unreadable = error;
      }
      // Blocks are written to the cache far faster than xz makes them, unless the disk stalls:
      // then xz waits, rather than its blocks piling up in memory. After the last block, only
      // the index and the end are left to read.
      return unreadable !== undefined || this.splitter.ended || this.held < MAX_HELD;
    };
    const threads = `-T${Math.max(2, this.threads)}`;
    try {
      xz = await streamInto('xz', [threads, ...this.args], readBuffer, onData, { env: this.env });
    } catch (error) {
      this.fail(error);
      throw error;
    }
    // An xz that dies early closes its stdin (EPIPE); `done` reports why.
    xz.stdin.on('error', () => undefined);
    xz.done.then(
      () => {
        if (unreadable) this.fail(unreadable);
        else if (this.waiting.length > 0) this.fail(new Error(`xz gave ${this.waiting.length} block(s) too few`));
      },
      (error: unknown) => this.fail(error),
    );
    return xz;
  }

  private fail(error: unknown): void {
    this.failure ??= error;
    for (const waiting of this.waiting.splice(0)) waiting.reject(this.failure);
  }
}
