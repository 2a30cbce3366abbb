/**
 * A file's sha256, and the sha256 of byte ranges of it, in one read on a worker thread: the main
 * thread goes on (its child processes, its event loop) while a 2.7 GiB image is hashed (~2 s of
 * CPU). A node image's bmap needs its ranges' hashes and the build its whole hash: one read gives
 * both (a second read cost as much again in system time). One buffer, read into again and again: a
 * read stream's fresh 4 MiB buffer per chunk made the kernel map and zero new pages each time, which
 * took 2.7 times as long (bench/build-cluster).
 *
 * With a reference (the base a node was cloned from), a range that lies inside one window of the
 * read and whose bytes equal the reference's at the same place takes the hash the caller knows for
 * it, instead of being hashed: comparing bytes from the page cache costs a fraction of hashing them.
 */
import type { BigIntStats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import type { Range } from './ranges.js';
import { checkInterrupted, InterruptedError, interrupted, interruptSignal } from './scope.js';

/** Bytes read at a time; reads start on multiples of it. */
export const HASH_WINDOW = 4 * 1024 * 1024;

const hashWorker = `
const { parentPort, workerData } = require('node:worker_threads');
// The files come open from the main thread, which closes them once this thread has exited.
const { fd, path, ranges, block, whole, window, reference } = workerData;
const { fstatSync, readSync } = require('node:fs');
const { createHash } = require('node:crypto');
function readWhole(fd, buffer, position) {
  for (let done = 0; done < buffer.length; ) {
    const n = readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}
const ref = reference && { ...reference, piece: Buffer.allocUnsafe(1024 * 1024) };
const size = fstatSync(fd).size;
// A piece is named by its blocks: equal means the same bytes and the same length, so a node's
// last block cut short by its end never passes for the reference's longer one, or the reverse.
const sameAsReference = (position, bytes, nominalEnd) => {
  if (Math.min(nominalEnd, ref.size) !== position + bytes.length) return false;
  for (let at = 0; at < bytes.length; at += ref.piece.length) {
    const theirs = ref.piece.subarray(0, Math.min(ref.piece.length, bytes.length - at));
    if (!readWhole(ref.fd, theirs, position + at)) return false;
    if (!theirs.equals(bytes.subarray(at, at + theirs.length))) return false;
  }
  return true;
};
const all = whole ? createHash('sha256') : undefined;
const hashes = [];
const same = [];
let reused = 0;
const buffer = Buffer.allocUnsafe(window);
const startOf = (i) => ranges[i].first * block;
// A range's blocks end here; its bytes end there or at the file's end.
const blocksEndOf = (i) => (ranges[i].last + 1) * block;
const endOf = (i) => Math.min(blocksEndOf(i), size);
const windowOf = (position) => position - (position % window);
let range = 0;
let current;
// Without the whole hash, only the windows that hold ranges are read.
let at = whole || ranges.length === 0 ? 0 : windowOf(startOf(0));
const stop = whole ? size : ranges.length === 0 ? 0 : endOf(ranges.length - 1);
while (at < stop) {
  const view = buffer.subarray(0, Math.min(window, stop - at));
  if (!readWhole(fd, view, at)) throw new Error(path + ' ended before byte ' + (at + view.length));
  all?.update(view);
  for (let from = at; range < ranges.length; ) {
    const start = Math.max(startOf(range), from);
    const end = endOf(range);
    if (start >= at + view.length) break;
    const to = Math.min(end, at + view.length);
    const bytes = view.subarray(start - at, to - at);
    if (ref && !current && start === startOf(range) && to === end) {
      const equal = sameAsReference(start, bytes, blocksEndOf(range));
      const known = equal ? ref.known[range] : undefined;
      hashes.push(known ?? createHash('sha256').update(bytes).digest('hex'));
      same.push(equal);
      if (known) reused++;
    } else {
      (current ??= createHash('sha256')).update(bytes);
      if (to < end) break;
      hashes.push(current.digest('hex'));
      same.push(false);
      current = undefined;
    }
    range++;
    from = to;
  }
  at += view.length;
  if (!whole && range < ranges.length && !current) at = Math.max(at, windowOf(startOf(range)));
}
if (range < ranges.length) throw new Error(path + ' is shorter than its ranges');
parentPort.postMessage({ size, hashes, sha256: all?.digest('hex'), same, reused });
`;

/**
 * What a file is, for remembering facts about its bytes within a process: device, inode, size and
 * the modification and change times (a modification time can be set back, a change time cannot).
 */
export const identityOf = (st: BigIntStats): string => [st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].join(':');

/** A file the hashed one was cloned from, and the hashes of ranges known to hold its bytes. */
export interface HashReference {
  path: string;
  /**
   * Per range of the call, its hash if known for the reference's bytes, given the reference's
   * dev:ino:size:mtimeNs:ctimeNs (`identityOf`) as found on the file the read opens.
   */
  known: (id: string) => (string | undefined)[];
}

export interface FileHashes {
  size: number;
  /** Of each range, in order: its blocks of `block` bytes, the last one cut at the file's end. */
  ranges: string[];
  /** Of the whole file, when asked. */
  sha256?: string;
  /**
   * Per range: true when it was compared whole with the reference and found equal (so its hash is
   * also the reference's); false when it differs or was not compared (it spans two windows).
   */
  same: boolean[];
  /** How many ranges took a known hash instead of being hashed. */
  reused: number;
  /** The identity of the reference that was read. */
  referenceId?: string;
}

type WorkerResult = Omit<FileHashes, 'ranges' | 'referenceId'> & { hashes: string[] };

/**
 * The files are opened here and closed once the worker has exited, also when it was stopped: the
 * identity of the reference is that of the very file the worker compares with, taken once.
 */
export async function hashFile(
  path: string,
  options: {
    ranges?: readonly Range[];
    block?: number;
    whole: boolean;
    reference?: HashReference | undefined;
    /** Stops the hash (its reason is thrown), besides Ctrl-C. */
    signal?: AbortSignal | undefined;
  },
): Promise<FileHashes> {
  checkInterrupted(); // the abort below is only heard by a worker already running
  const file = await open(path, 'r');
  const base = options.reference ? await open(options.reference.path, 'r').catch(closing(file)) : undefined;
  try {
    const st = base && (await base.stat({ bigint: true }));
    const referenceId = st && identityOf(st);
    const reference = st && { fd: base.fd, size: Number(st.size), known: options.reference!.known(referenceId!) };
    const workerData = {
      fd: file.fd,
      path,
      ranges: options.ranges ?? [],
      block: options.block ?? 1,
      whole: options.whole,
      window: HASH_WINDOW,
      reference,
    };
    const { hashes, ...rest } = await runWorker(workerData, path, options.signal);
    return { ranges: hashes, ...rest, ...(referenceId ? { referenceId } : {}) };
  } finally {
    await base?.close();
    await file.close();
  }
}

const closing = (file: FileHandle) => async (error: unknown) => {
  await file.close();
  throw error;
};

/** Settles when the worker has exited, so that the files it reads may then be closed. */
function runWorker(workerData: object, path: string, signal?: AbortSignal): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(hashWorker, { eval: true, workerData });
    const stop = () => void worker.terminate();
    const signals = [interruptSignal, ...(signal ? [signal] : [])];
    for (const s of signals) s.addEventListener('abort', stop, { once: true });
    // An abort raised while the files were being opened fires no listener added after it.
    if (signals.some((s) => s.aborted)) stop();
    let result: WorkerResult | undefined;
    let failure: unknown;
    worker.once('message', (message: WorkerResult) => {
      result = message;
    });
    worker.once('error', (error) => {
      failure = error;
    });
    worker.once('exit', (code) => {
      for (const s of signals) s.removeEventListener('abort', stop);
      if (interrupted()) reject(new InterruptedError());
      else if (signal?.aborted) reject(signal.reason);
      // What a worker throws arrives as a copy, not an Error of this thread.
      else if (failure !== undefined) reject(new Error((failure as { message?: string }).message ?? String(failure)));
      else if (code !== 0 || !result) reject(new Error(`hashing ${path} stopped with code ${code}`));
      else resolve(result);
    });
  });
}

/** The sha256 of a whole file (hex). */
export async function sha256Of(path: string): Promise<string> {
  return (await hashFile(path, { whole: true })).sha256!;
}
