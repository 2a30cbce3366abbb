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
  /** The whole block: header, compressed data, padding and check. */
  bytes: Buffer;
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
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private check: number | undefined;
  private ended = false;

  /** The blocks completed by `piece`, in stream order. */
  push(piece: Buffer): XzBlock[] {
    if (this.ended) return []; // the index and footer
    this.pending.push(piece);
    this.pendingBytes += piece.length;
    const blocks: XzBlock[] = [];
    for (;;) {
      if (this.check === undefined) {
        if (this.pendingBytes < STREAM_HEADER_BYTES) return blocks;
        const header = this.take(STREAM_HEADER_BYTES);
        if (!header.subarray(0, 6).equals(HEADER_MAGIC)) throw new Error('xz: not an .xz stream');
        this.check = header[7]! & 0x0f;
        if (CHECK_BYTES[this.check] === undefined) throw new Error(`xz: unknown check type ${this.check}`);
        continue;
      }
      if (this.pendingBytes < 1) return blocks;
      const first = this.peek(1)[0]!;
      if (first === 0) {
        this.ended = true; // the index: every block has been seen
        return blocks;
      }
      const headerBytes = (first + 1) * 4;
      if (this.pendingBytes < headerBytes) return blocks;
      const header = this.peek(headerBytes);
      const flags = header[1]!;
      if ((flags & 0xc0) !== 0xc0)
        throw new Error('xz: a block header does not record its sizes (xz -T2 or more records them)');
      const [compressed, next] = readVarint(header, 2);
      const [uncompressedSize] = readVarint(header, next);
      const total = headerBytes + Math.ceil(compressed / 4) * 4 + CHECK_BYTES[this.check]!;
      if (this.pendingBytes < total) return blocks;
      blocks.push({ bytes: this.take(total), uncompressedSize, check: this.check });
    }
  }

  private peek(count: number): Buffer {
    if (this.pending[0]!.length < count) this.pending = [Buffer.concat(this.pending)];
    return this.pending[0]!.subarray(0, count);
  }

  private take(count: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const taken = Buffer.from(all.subarray(0, count)); // a copy: the rest may be kept a while
    const rest = all.subarray(count);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    return taken;
  }
}

/** One block as a complete .xz stream: stream header, the block, an index of one record, footer. */
export function xzStreamOf(block: XzBlock): Buffer {
  const flags = Buffer.from([0x00, block.check]);
  const headerBytes = (block.bytes[0]! + 1) * 4;
  const compressed = readVarint(block.bytes, 2)[0];
  // The index records the block's size without its padding.
  const unpadded = headerBytes + compressed + CHECK_BYTES[block.check]!;
  const records = [0x00, ...varint(1), ...varint(unpadded), ...varint(block.uncompressedSize)];
  while (records.length % 4 !== 0) records.push(0);
  const index = Buffer.from(records);
  const backward = Buffer.alloc(4);
  backward.writeUInt32LE((index.length + 4) / 4 - 1);
  return Buffer.concat([
    HEADER_MAGIC,
    flags,
    crc(flags),
    block.bytes,
    index,
    crc(index),
    crc(Buffer.concat([backward, flags])),
    backward,
    flags,
    FOOTER_MAGIC,
  ]);
}
