/**
 * The chunk size trade for release/compress.ts, measured on the Lite-shaped image (docs/release.md):
 * a smaller chunk is reused more (a node recompresses fewer raw bytes) but compresses worse (every
 * chunk starts with an empty dictionary).
 *
 * - Ratio: windows of 96 MiB (a multiple of 4, 8, 16, 24 and 32 MiB) of the image's densest data,
 *   evenly spread, each compressed as one-thread chunks of each size and, as the reference, by a
 *   plain `xz -T0` / `zstd -T0` (xz -T0 itself cuts 24 MiB blocks at level 6). Sampling keeps xz
 *   within minutes on two cores; bench/compress.ts checks the chosen size on the whole image.
 * - Reuse: node 2 against node 1 (bench/lite-shaped.ts makeNodeImage, the changes a build makes):
 *   which chunks differ, and the time to compress exactly those, P at a time, as compressImage does.
 *
 *   node build/bench/chunk-size.js [--dir DIR] [--sizes 4,8,16,32] [--windows 3] [--formats xz,zst]
 */

import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import type { CompressFormat } from '../builder/release/compress.js';
import { liteShapedImage, makeNodeImage } from './lite-shaped.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    sizes: { type: 'string', default: '4,8,16,32' },
    windows: { type: 'string', default: '3' },
    formats: { type: 'string', default: 'xz,zst' },
    'xz-level': { type: 'string', default: '6' },
    'zst-level': { type: 'string', default: '3' },
  },
});
const work = values.dir ?? join(tmpdir(), 'swarmcard-bench');
const sizes = values.sizes!.split(',').map(Number);
const formats = values.formats!.split(',') as CompressFormat[];
const levels: Record<CompressFormat, number> = { xz: Number(values['xz-level']), zst: Number(values['zst-level']) };
const MiB = 1024 * 1024;
const WINDOW = 96 * MiB;
const parallel = availableParallelism();

function command(format: CompressFormat, threads: 'T0' | 'T1'): string[] {
  return format === 'xz'
    ? ['xz', `-${threads}`, `-${levels.xz}`, '-c']
    : ['zstd', '-q', `-${threads}`, `-${levels.zst}`, '-c'];
}

async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Compressed size of `input` through `argv` (stdin to stdout). */
async function compressedSize(argv: string[], input: Buffer): Promise<number> {
  const { stdout } = await execa(argv[0]!, argv.slice(1), {
    input,
    encoding: 'buffer',
    env: { XZ_OPT: '', XZ_DEFAULTS: '' },
    maxBuffer: 1024 * MiB,
  });
  return stdout.length;
}

/** Run `jobs` P at a time. */
async function pool<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]!();
      }
    }),
  );
  return results;
}

async function chunkHashes(path: string, chunk: number): Promise<string[]> {
  const hashes: string[] = [];
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(chunk);
    for (let at = 0; ; at += chunk) {
      const { bytesRead } = await handle.read(buffer, 0, chunk, at);
      if (bytesRead === 0) break;
      hashes.push(createHash('sha256').update(buffer.subarray(0, bytesRead)).digest('hex'));
    }
  } finally {
    await handle.close();
  }
  return hashes;
}

const zeroBlock = Buffer.alloc(4096);

/** `count` windows evenly spread over those with under 10% zero blocks (the data, not the free space). */
async function denseWindows(path: string, count: number): Promise<number[]> {
  const dense: number[] = [];
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(WINDOW);
    for (let at = 0; ; at += WINDOW) {
      const { bytesRead } = await handle.read(buffer, 0, WINDOW, at);
      if (bytesRead < WINDOW) break;
      let zeros = 0;
      for (let i = 0; i < bytesRead; i += 4096) if (buffer.subarray(i, i + 4096).equals(zeroBlock)) zeros++;
      if (zeros / (bytesRead / 4096) < 0.1) dense.push(at);
    }
  } finally {
    await handle.close();
  }
  return Array.from(
    { length: Math.min(count, dense.length) },
    (_, i) => dense[Math.floor(((i + 0.5) * dense.length) / count)]!,
  );
}

const base = await liteShapedImage(work);
const node1 = join(work, 'chunk-node-1.img');
const node2 = join(work, 'chunk-node-2.img');
await makeNodeImage(base, node1, 1);
await makeNodeImage(base, node2, 2);
const windows = await denseWindows(node1, Number(values.windows));
console.log(
  `image: ${base}; ratio on ${windows.length} windows of 96 MiB at ${windows.map((w) => `${w / MiB} MiB`).join(', ')}`,
);

const changedBySize = new Map<number, number[]>();
for (const size of sizes) {
  const [a, b] = [await chunkHashes(node1, size * MiB), await chunkHashes(node2, size * MiB)];
  changedBySize.set(
    size,
    a.flatMap((h, i) => (h === b[i] ? [] : [i])),
  );
}

for (const format of formats) {
  const samples = await Promise.all(windows.map((w) => readAt(node1, w, WINDOW)));
  const plain = (await pool(samples.map((s) => () => compressedSize(command(format, 'T0'), s)))).reduce(
    (x, y) => x + y,
  );
  console.log(`\n${format} -${levels[format]}: plain -T0 of the windows ${(plain / MiB).toFixed(2)} MiB`);
  console.log('chunk MiB | chunked size vs plain -T0 | node 2: chunks changed, MiB raw, seconds to compress them');
  for (const size of sizes) {
    const chunk = size * MiB;
    const jobs = samples.flatMap((s) =>
      Array.from(
        { length: WINDOW / chunk },
        (_, i) => () => compressedSize(command(format, 'T1'), s.subarray(i * chunk, (i + 1) * chunk)),
      ),
    );
    const chunked = (await pool(jobs)).reduce((x, y) => x + y);
    const changed = changedBySize.get(size)!;
    const inputs = await Promise.all(changed.map((i) => readAt(node2, i * chunk, chunk)));
    const start = process.hrtime.bigint();
    await pool(inputs.map((input) => () => compressedSize(command(format, 'T1'), input)));
    const took = Number(process.hrtime.bigint() - start) / 1e9;
    const raw = inputs.reduce((sum, input) => sum + input.length, 0) / MiB;
    const vs = ((chunked / plain - 1) * 100).toFixed(2);
    console.log(
      `${String(size).padStart(9)} | ${`${Number(vs) >= 0 ? '+' : ''}${vs}%`.padStart(25)} | ` +
        `${changed.length} (${changed.join(' ')}), ${raw.toFixed(0)} MiB, ${took.toFixed(1)} s`,
    );
  }
}
await rm(node1, { force: true });
await rm(node2, { force: true });
