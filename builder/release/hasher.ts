/**
 * SHA-256 on a worker thread, so the main thread keeps reading, writing and feeding compressors while
 * a 2.7 GiB image is hashed (~2 s of CPU). One worker holds any number of running hashes (`update`,
 * then `digest`) and also hashes whole buffers at once (`digestOf`). Buffers over a SharedArrayBuffer
 * reach the worker without a copy: the caller must not reuse one before its promise resolves.
 */
import { Worker } from 'node:worker_threads';

const source = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const running = new Map();
parentPort.on('message', ({ id, op, stream, data }) => {
  if (op === 'update') {
    if (!running.has(stream)) running.set(stream, createHash('sha256'));
    running.get(stream).update(data);
    parentPort.postMessage({ id });
  } else if (op === 'digest') {
    const hash = running.get(stream) ?? createHash('sha256');
    running.delete(stream);
    parentPort.postMessage({ id, hex: hash.digest('hex') });
  } else if (op === 'zeros') {
    const hash = createHash('sha256');
    const zeros = Buffer.alloc(Math.min(data, 1 << 20));
    for (let left = data; left > 0; left -= zeros.length) hash.update(zeros.subarray(0, Math.min(left, zeros.length)));
    parentPort.postMessage({ id, hex: hash.digest('hex') });
  } else {
    parentPort.postMessage({ id, hex: createHash('sha256').update(data).digest('hex') });
  }
});
`;

export class Hasher {
  private readonly worker = new Worker(source, { eval: true });
  private readonly waiting = new Map<number, { resolve: (hex: string) => void; reject: (e: unknown) => void }>();
  private next = 0;
  private failure?: unknown;

  constructor() {
    this.worker.on('message', ({ id, hex }: { id: number; hex?: string }) => {
      this.waiting.get(id)?.resolve(hex ?? '');
      this.waiting.delete(id);
    });
    const fail = (error: unknown) => {
      this.failure ??= error;
      for (const { reject } of this.waiting.values()) reject(error);
      this.waiting.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the hashing thread stopped (exit code ${code})`)));
  }

  private call(message: { op: string; stream?: string; data?: Uint8Array | number }): Promise<string> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...message });
    });
  }

  /** Add bytes to the running hash `stream`; resolves once they are hashed. Calls are taken in order. */
  async update(stream: string, data: Uint8Array): Promise<void> {
    await this.call({ op: 'update', stream, data });
  }

  /** The hex digest of everything given to `stream`; the stream starts over afterwards. */
  digest(stream: string): Promise<string> {
    return this.call({ op: 'digest', stream });
  }

  /** The hex digest of one buffer. */
  digestOf(data: Uint8Array): Promise<string> {
    return this.call({ op: 'once', data });
  }

  /** The hex digest of `length` zero bytes. */
  digestOfZeros(length: number): Promise<string> {
    return this.call({ op: 'zeros', data: length });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
