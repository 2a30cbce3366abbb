/**
 * Chunk-sized buffers over SharedArrayBuffers (the hashing threads read them without a copy), kept
 * for the next image of a build: the first touch of fresh memory costs page faults (measured up to
 * ~30 ms per MiB on a loaded VM, a second per image for a few chunk buffers), a reused buffer none.
 * Buffers left idle for IDLE_MS are dropped, so a finished build does not keep them.
 */

const IDLE_MS = 60_000;
const idle = new Map<number, Buffer[]>();
let timer: NodeJS.Timeout | undefined;

/** A buffer of exactly `size` bytes: a kept one, or a new one. */
export function takeBuffer(size: number): Buffer {
  return idle.get(size)?.pop() ?? Buffer.from(new SharedArrayBuffer(size));
}

/** Keep `buffer` (from takeBuffer) for a later takeBuffer of its size. */
export function giveBuffer(buffer: Buffer): void {
  const kept = idle.get(buffer.length) ?? [];
  kept.push(buffer);
  idle.set(buffer.length, kept);
  clearTimeout(timer);
  timer = setTimeout(() => idle.clear(), IDLE_MS);
  timer.unref();
}
