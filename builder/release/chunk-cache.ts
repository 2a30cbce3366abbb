/**
 * The cache of compressed chunks: one file per distinct raw chunk, `<ab>/<sha256 of the raw chunk>.chunk`
 * in a folder per compressor setting (cachePaths.chunks). A file is a 64-byte header (magic, sha256
 * and size of the compressed bytes) followed by the compressed bytes. Entries are written to a
 * private `.partial` and renamed, so a reader sees a whole entry or none; a reader still checks the
 * header's size and sha256 before it uses one (a crash after the rename but before the data reached
 * the disk, a truncated or flipped file): such an entry is reported missing and written again.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Scope } from '../util/scope.js';
import type { Hasher } from './hasher.js';

const MAGIC = Buffer.from('swarmcard-chunk\n'); // 16 bytes
export const HEADER_BYTES = 64;
/**
 * The entries this process has checked or written (path → inode, size and modification time): node
 * 2…N of a build read the same entries as node 1, and checking each again cost a hash of the whole
 * compressed image per node. A file changed since (rewritten, repaired) is checked again.
 */
const checked = new Map<string, string>();
const versionOf = ({ ino, size, mtimeNs }: BigIntStats) => `${ino}:${size}:${mtimeNs}`;

/** Fill `into` from `handle` at `position`; false when the file ends first. */
export async function readFully(handle: FileHandle, into: Uint8Array, position: number): Promise<boolean> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) return false;
    done += bytesRead;
  }
  return true;
}

/** Write all of `bytes` at `position`: the header's hash is of what was meant to be written. */
async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    if (bytesWritten === 0) throw new Error('a write to the chunk cache wrote nothing');
    done += bytesWritten;
  }
}

function header(sha256: Buffer, size: number): Buffer {
  const bytes = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(bytes, 0);
  sha256.copy(bytes, 16);
  bytes.writeBigUInt64BE(BigInt(size), 48);
  return bytes;
}

export class ChunkCache {
  /** Entries being written by this process: removed if the scope closes before their rename. */
  private readonly partials = new Set<string>();

  constructor(
    readonly dir: string,
    scope: Scope,
    private readonly hasher: Hasher,
  ) {
    scope.defer(`remove unfinished chunks in ${dir}`, () =>
      Promise.all([...this.partials].map((partial) => rm(partial, { force: true }))),
    );
  }

  path(hash: string): string {
    return join(this.dir, hash.slice(0, 2), `${hash}.chunk`);
  }

  /** Whether an entry exists (its content is checked when it is read). */
  async has(hash: string): Promise<boolean> {
    const handle = await open(this.path(hash), 'r').catch(() => undefined);
    await handle?.close();
    return handle !== undefined;
  }

  /**
   * The compressed bytes of the entry, read into `into` when they fit, after checking them against
   * the header (size and sha256); undefined when the entry is missing, truncated or corrupt.
   */
  async read(hash: string, into: Buffer): Promise<Buffer | undefined> {
    const path = this.path(hash);
    const handle = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (!handle) return undefined;
    try {
      const stats = await handle.stat({ bigint: true });
      const { size } = stats;
      if (size < HEADER_BYTES) return undefined;
      // An entry larger than a raw chunk (incompressible data) gets a buffer of its own.
      const length = Number(size);
      const bytes = length <= into.length ? into.subarray(0, length) : Buffer.from(new SharedArrayBuffer(length));
      if (!(await readFully(handle, bytes, 0))) return undefined;
      const payload = bytes.subarray(HEADER_BYTES);
      if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
      if (bytes.readBigUInt64BE(48) !== BigInt(payload.length)) return undefined;
      const version = versionOf(stats);
      if (checked.get(path) === version) return payload;
      const expected = bytes.subarray(16, 48).toString('hex');
      if ((await this.hasher.digestOf(payload)) !== expected) return undefined;
      checked.set(path, version);
      return payload;
    } finally {
      await handle.close();
    }
  }

  /**
   * Write the entry for `hash` from `pieces` (a compressor's stdout, or bytes at hand). It gets its
   * final name only once `succeeded` (the compressor's exit) resolves; on any failure nothing is left.
   */
  async write(
    hash: string,
    pieces: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    succeeded: Promise<unknown>,
  ): Promise<void> {
    const final = this.path(hash);
    await mkdir(dirname(final), { recursive: true });
    const partial = `${final}.${process.pid}-${randomBytes(6).toString('hex')}.partial`;
    this.partials.add(partial);
    try {
      let written = '';
      const handle = await open(partial, 'w');
      try {
        const digest = createHash('sha256');
        let position = HEADER_BYTES;
        for await (const piece of pieces) {
          digest.update(piece);
          await writeFully(handle, piece, position);
          position += piece.length;
        }
        await succeeded;
        await writeFully(handle, header(digest.digest(), position - HEADER_BYTES), 0);
        written = versionOf(await handle.stat({ bigint: true }));
      } finally {
        await handle.close();
      }
      await rename(partial, final);
      // Its bytes were hashed as they were written: a read by this process need not check them.
      checked.set(final, written);
      this.partials.delete(partial);
    } catch (error) {
      await rm(partial, { force: true });
      this.partials.delete(partial);
      throw error;
    }
  }
}
