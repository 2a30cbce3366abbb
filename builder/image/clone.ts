/**
 * Cloning: coreutils `cp --reflink=auto` keeps holes and shares extents where the
 * filesystem can (Node's copyFile allocates every zero block). The copy is `<out>.partial` until the
 * body has edited and verified it; only then is it renamed, so `dist/` never holds half an image.
 * With `keep: false` the body makes what it needs of the copy (compressed images, a bmap) and the
 * copy is removed: a CI runner's disk then holds one raw image at a time.
 */
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { run } from '../exec/run.js';
import { DISK_ID_OFFSET } from '../formats/mbr.js';
import { log } from '../log.js';
import { InterruptedError, withScope } from '../util/scope.js';

export async function cloneImage<T>(
  base: string,
  out: string,
  body: (partial: string) => Promise<T>,
  options: { keep?: boolean } = {},
): Promise<T> {
  return withScope(async (scope) => {
    await mkdir(dirname(out), { recursive: true });
    const partial = `${out}.partial`;
    let done = false;
    scope.defer(`remove ${partial}`, () => (done ? undefined : rm(partial, { force: true })));
    await rm(partial, { force: true });
    // coreutils ≥ 9 keeps holes by default (SEEK_DATA + copy_file_range); --sparse=always would
    // also scan every data byte for zeros, which costs ~25% on a 2.7 GiB image for nothing.
    await run('cp', ['--reflink=auto', base, partial]);
    const result = await body(partial);
    if (options.keep === false) return result; // the scope removes the copy
    // Durable before it gets its final name: after a crash dist/ holds a whole image or none.
    const handle = await open(partial, 'r+');
    await handle.sync().finally(() => handle.close());
    await rename(partial, out);
    done = true;
    return result;
  });
}

/** Write the 32-bit disk identifier into the MBR (offset 440, little endian). */
export async function writeDiskId(image: string, diskId: number): Promise<void> {
  const handle = await open(image, 'r+');
  try {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32LE(diskId >>> 0);
    await handle.write(bytes, 0, 4, DISK_ID_OFFSET);
  } finally {
    await handle.close();
  }
}

/**
 * Let the kernel drop a finished image's pages from the page cache (coreutils' documented
 * `dd iflag=nocache count=0`, posix_fadvise DONTNEED over the whole file). A build writes gigabytes
 * that it does not read again: left cached they push out everything else, and once memory is full
 * every later copy waits for reclaim (8 copies of a 2.7 GiB image: 38 s, against 18 s dropping each;
 * docs/tools.md). Only clean pages go, so call it once the image is synced.
 */
export async function dropCached(image: string): Promise<void> {
  // Only a hint: a dd without iflag=nocache (busybox) costs speed, never the build.
  await run('dd', [`if=${image}`, 'iflag=nocache', 'count=0', 'status=none']).catch((error: Error) => {
    if (error instanceof InterruptedError) throw error;
    log.debug(`the page cache keeps ${image}: ${error.message}`);
  });
}
