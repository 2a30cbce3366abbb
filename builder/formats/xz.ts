/**
 * The .xz container (the XZ file format, version 1.2.1), as much as compress.ts needs: cutting the
 * blocks out of a stream that `xz` wrote in its multithreaded mode (which records each block's
 * compressed size in the block header), and wrapping one block as a complete stream of its own.
 * A block is compressed independently of the blocks around it, so its bytes can be reused in
 * another stream; only the stream header, index and footer around it are written here.
 */
import { crc32 } from 'node:zlib';

const HEADER_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const FOOTER_MAGIC = Buffer.from('YZ');
const STREAM_HEADER_BYTES = 12;
/** Bytes of the integrity check per check type (0 none, 1 CRC32, 4 CRC64, 10 SHA-256). */
const CHECK_BYTES: Record<number, number> = { 0: 0, 1: 4, 4: 8, 10: 32 };

export interface XzBlock {
  /** The whole block: header, compressed data, padding and check (a view of `buffer`). */
  bytes: Buffer;
  /** The buffer the splitter's `alloc` gave for it, to be given back once the block is used. */
  buffer: Buffer;
  headerBytes: number;
  compressedSize: number;
  uncompressedSize: number;
  /** The stream's check type, which a stream around this block must declare. */
  check: number;
}

/** A multibyte integer as .xz writes them: 7 bits per byte, least significant first. */
function readVarint(bytes: Buffer, at: number): [value: number, next: number] {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    const byte = bytes[at + i];
    if (byte === undefined) break;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return [value, at + i + 1];
  }
  throw new Error('xz: a block header holds a malformed size');
}

function varint(value: number): number[] {
  const out: number[] = [];
  do {
    const low = value % 128;
    value = Math.floor(value / 128);
    out.push(value > 0 ? low | 0x80 : low);
  } while (value > 0);
  return out;
}

function crc(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(crc32(bytes));
  return out;
}

/**
 * Cuts an .xz stream, fed piece by piece, into its blocks. Only streams whose block headers record
 * both sizes (xz's multithreaded mode: -T2 or more) can be cut without decoding; anything else is
 * an error. The index and anything after it are ignored.
 */
export class XzBlockSplitter {
  /** Bytes not yet placed: the stream header or a block header, arriving in pieces. */
  private pending: Buffer = Buffer.alloc(0);
  private check: number | undefined;
  /** The index has been reached: no more blocks will come. */
  ended = false;
  private block: { info: Omit<XzBlock, 'bytes'>; bytes: Buffer; filled: number } | undefined;

  /**
   * `alloc(size)` gives a buffer of at least `size` bytes for each block. A block is copied into it
   * as it arrives, so the pieces it came in are short-lived: kept until the block is whole, they
   * outlived the young generation and piled up until a full garbage collection (+35 MiB measured).
   */
  constructor(private readonly alloc: (size: number) => Buffer = (size) => Buffer.allocUnsafe(size)) {}

  /** The blocks completed by `piece`, in stream order; `piece` may be reused once this returns. */
  push(piece: Buffer): XzBlock[] {
    const blocks: XzBlock[] = [];
    let rest = piece;
    while (rest.length > 0 && !this.ended) {
      if (!this.block) {
        this.pending = this.pending.length > 0 ? Buffer.concat([this.pending, rest]) : rest;
        rest = this.startNext();
        continue;
      }
      const { bytes } = this.block;
      const count = Math.min(rest.length, bytes.length - this.block.filled);
      rest.copy(bytes, this.block.filled, 0, count);
      this.block.filled += count;
      rest = rest.subarray(count);
      if (this.block.filled === bytes.length) {
        blocks.push({ ...this.block.info, bytes });
        this.block = undefined;
      }
    }
    // A header not yet whole is kept as a copy (a few bytes): `piece` may be reused.
    if (this.pending.length > 0) this.pending = Buffer.from(this.pending);
    return blocks;
  }

  /** Read a header from `pending` if it is all there; the bytes that follow it are returned. */
  private startNext(): Buffer {
    const waiting = Buffer.alloc(0);
    const head = this.pending;
    if (this.check === undefined) {
      if (head.length < STREAM_HEADER_BYTES) return waiting;
      if (!head.subarray(0, 6).equals(HEADER_MAGIC)) throw new Error('xz: not an .xz stream');
      this.check = head[7]! & 0x0f;
      if (CHECK_BYTES[this.check] === undefined) throw new Error(`xz: unknown check type ${this.check}`);
      this.pending = waiting;
      return head.subarray(STREAM_HEADER_BYTES);
    }
    if (head[0] === 0) {
      this.ended = true; // the index: every block has been seen; the rest is ignored
      this.pending = waiting;
      return waiting;
    }
    const headerBytes = (head[0]! + 1) * 4;
    if (head.length < headerBytes) return waiting;
    if ((head[1]! & 0xc0) !== 0xc0)
      throw new Error('xz: a block header does not record its sizes (xz -T2 or more records them)');
    const [compressedSize, next] = readVarint(head, 2);
    const [uncompressedSize] = readVarint(head, next);
    const total = headerBytes + Math.ceil(compressedSize / 4) * 4 + CHECK_BYTES[this.check]!;
    const buffer = this.alloc(total);
    const info = { buffer, headerBytes, compressedSize, uncompressedSize, check: this.check };
    this.block = { info, bytes: buffer.subarray(0, total), filled: 0 };
    this.pending = waiting;
    return head; // the block's own bytes, header included
  }
}

/** One block as a complete .xz stream (as pieces): stream header, the block, an index of one record, footer. */
export function xzStreamOf(block: XzBlock): Buffer[] {
  const flags = Buffer.from([0x00, block.check]);
  // The index records the block's size without its padding.
  const unpadded = block.headerBytes + block.compressedSize + CHECK_BYTES[block.check]!;
  const records = [0x00, ...varint(1), ...varint(unpadded), ...varint(block.uncompressedSize)];
  while (records.length % 4 !== 0) records.push(0);
  const index = Buffer.from(records);
  const backward = Buffer.alloc(4);
  backward.writeUInt32LE((index.length + 4) / 4 - 1);
  const head = Buffer.concat([HEADER_MAGIC, flags, crc(flags)]);
  const tail = Buffer.concat([index, crc(index), crc(Buffer.concat([backward, flags])), backward, flags, FOOTER_MAGIC]);
  return [head, block.bytes, tail];
}
