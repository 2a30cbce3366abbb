/**
 * A file's sha256, and the sha256 of byte ranges of it, in one read on a worker thread: the main
 * thread goes on (its child processes, its event loop) while a 2.7 GiB image is hashed (~2 s of
 * CPU). A node image's bmap needs its ranges' hashes and the build its whole hash: one read gives
 * both (a second read cost as much again in system time). One buffer, read into again and again: a
 * read stream's fresh 4 MiB buffer per chunk made the kernel map and zero new pages each time, which
 * took 2.7 times as long (bench/build-cluster).
 */
import { Worker } from 'node:worker_threads';
import type { Range } from './ranges.js';
import { checkInterrupted, InterruptedError, interrupted, interruptSignal } from './scope.js';

const hashWorker = `
const { parentPort, workerData: { path, ranges, block, whole } } = require('node:worker_threads');
const { closeSync, fstatSync, openSync, readSync } = require('node:fs');
const { createHash } = require('node:crypto');
const fd = openSync(path, 'r');
try {
  const size = fstatSync(fd).size;
  const all = whole ? createHash('sha256') : undefined;
  const hashes = [];
  const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
  let range = 0;
  let current;
  // Without the whole hash, only the bytes of the ranges are read.
  let at = whole ? 0 : (ranges[0]?.first ?? 0) * block;
  const stop = whole ? size : Math.min(size, ((ranges.at(-1)?.last ?? -1) + 1) * block);
  while (at < stop) {
    const n = readSync(fd, buffer, 0, Math.min(buffer.length, stop - at), at);
    if (n === 0) throw new Error(path + ' ended at byte ' + at + ' while it was being read');
    all?.update(buffer.subarray(0, n));
    for (let from = at; range < ranges.length; ) {
      const start = Math.max(ranges[range].first * block, from);
      const end = Math.min((ranges[range].last + 1) * block, size);
      if (start >= at + n) break;
      const to = Math.min(end, at + n);
      (current ??= createHash('sha256')).update(buffer.subarray(start - at, to - at));
      if (to < end) break;
      hashes.push(current.digest('hex'));
      current = undefined;
      range++;
      from = to;
    }
    at += n;
    if (!whole && range < ranges.length && !current) at = Math.max(at, ranges[range].first * block);
  }
  if (range < ranges.length) throw new Error(path + ' is shorter than its ranges');
  parentPort.postMessage({ size, hashes, sha256: all?.digest('hex') });
} finally {
  closeSync(fd);
}
`;

export interface FileHashes {
  size: number;
  /** Of each range, in order: its blocks of `block` bytes, the last one cut at the file's end. */
  ranges: string[];
  /** Of the whole file, when asked. */
  sha256?: string;
}

export function hashFile(
  path: string,
  options: { ranges?: readonly Range[]; block?: number; whole: boolean },
): Promise<FileHashes> {
  checkInterrupted(); // the abort below is only heard by a worker already running
  const workerData = { path, ranges: options.ranges ?? [], block: options.block ?? 1, whole: options.whole };
  return new Promise((resolve, reject) => {
    const worker = new Worker(hashWorker, { eval: true, workerData });
    const stop = () => void worker.terminate();
    interruptSignal.addEventListener('abort', stop, { once: true });
    worker.once('message', ({ size, hashes, sha256 }: { size: number; hashes: string[]; sha256?: string }) =>
      resolve({ size, ranges: hashes, sha256 }),
    );
    worker.once('error', reject);
    worker.once('exit', (code) => {
      interruptSignal.removeEventListener('abort', stop);
      if (interrupted()) reject(new InterruptedError());
      else if (code !== 0) reject(new Error(`hashing ${path} stopped with code ${code}`));
    });
  });
}

/** The sha256 of a whole file (hex). */
export async function sha256Of(path: string): Promise<string> {
  return (await hashFile(path, { whole: true })).sha256!;
}
