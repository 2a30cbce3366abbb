/**
 * The chunk keys of a reference image: the base that node images are cloned from. A node differs
 * from its base in a few chunks, so most of its chunks are byte-for-byte the base's chunk at the
 * same place. Comparing two chunks (the base's comes from the page cache) costs a fraction of
 * hashing one, so a chunk found equal to the base's takes the base's key, hashed once per build
 * (by the first node that has the chunk unchanged) instead of once per node (docs/release.md).
 *
 * Keys are kept for this process only, per reference file and chunk size; a reference changed
 * before a node is compressed (size, times or inode) starts over. A build never changes its base.
 */
import type { FileHandle } from 'node:fs/promises';
import { identityOf } from '../util/hash-file.js';
import { readFully } from './chunk-cache.js';

/** The reference is compared in pieces, so its bytes never need a chunk-sized buffer. */
const PIECE_BYTES = 1024 * 1024;
const known = new Map<string, (string | undefined)[]>();

export class ReferenceKeys {
  private readonly piece = Buffer.allocUnsafe(PIECE_BYTES);
  private readonly keys: (string | undefined)[];
  /** Comparisons share `piece`: each waits for the one before. */
  private comparing: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly handle: FileHandle,
    private readonly size: number,
    private readonly chunkBytes: number,
    id: string,
  ) {
    let keys = known.get(id);
    if (!keys) {
      keys = [];
      known.set(id, keys);
    }
    this.keys = keys;
  }

  /** The reference `handle` (its caller closes it) for chunks of `chunkBytes`. */
  static async of(handle: FileHandle, chunkBytes: number): Promise<ReferenceKeys> {
    // The change time too: a modification time can be set back (cp -p, touch -r), it cannot.
    const st = await handle.stat({ bigint: true });
    return new ReferenceKeys(handle, Number(st.size), chunkBytes, `${identityOf(st)}:${chunkBytes}`);
  }

  /**
   * The key of chunk `index` (whose bytes are `bytes`): the reference's when the chunks are equal,
   * else `hash(bytes)`; a key hashed from a chunk equal to the reference's is kept for later nodes.
   * `bytes` must stay unchanged until the promise settles.
   */
  async keyOf(index: number, bytes: Buffer, hash: (bytes: Buffer) => Promise<string>): Promise<string> {
    const compared = this.comparing.then(() => this.sameAs(index * this.chunkBytes, bytes));
    this.comparing = compared.catch(() => undefined);
    const same = await compared;
    const kept = same ? this.keys[index] : undefined;
    if (kept) return kept;
    const key = await hash(bytes);
    if (same) this.keys[index] = key;
    return key;
  }

  private async sameAs(position: number, bytes: Buffer): Promise<boolean> {
    // The same length too: a node's short last chunk is not the reference's longer one.
    if (bytes.length !== Math.min(this.chunkBytes, this.size - position)) return false;
    for (let at = 0; at < bytes.length; at += PIECE_BYTES) {
      const length = Math.min(PIECE_BYTES, bytes.length - at);
      const theirs = this.piece.subarray(0, length);
      if (!(await readFully(this.handle, theirs, position + at))) return false;
      if (!theirs.equals(bytes.subarray(at, at + length))) return false;
    }
    return true;
  }
}
