/**
 * The chunked half of bench/compress.ts, in a process of its own so its peak RSS is its own: make
 * node images 1…N from BASE one at a time (untimed, and synced) and compress each with
 * compressImage into a chunk cache that starts empty (timed), as a build would. Prints one JSON
 * line per node, then one with the peak RSS:
 *   node compress-nodes.js BASE WORK FORMAT LEVEL NODES CHUNK_MIB
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { type CompressFormat, compressImage } from '../builder/release/compress.js';
import { makeNodeImage } from './lite-shaped.js';

const [base, work, format, level, nodes, chunkMiB] = process.argv.slice(2) as [
  string,
  string,
  CompressFormat,
  string,
  string,
  string,
];
const cache = join(work, 'cache');
await rm(cache, { recursive: true, force: true });
await mkdir(cache, { recursive: true });
process.env.SWARMCARD_CACHE_DIR = cache;

for (let index = 1; index <= Number(nodes); index++) {
  const node = join(work, `node-${index}.img`);
  await makeNodeImage(base, node, index);
  // The copy's writeback is the clone's cost (bench/build-cluster.ts measures it), not compression's.
  await execa('sync');
  const start = process.hrtime.bigint();
  const result = await compressImage(
    node,
    `${node}.${format}`,
    { format, level: Number(level) },
    { chunkBytes: Number(chunkMiB) * 1024 * 1024, reference: base },
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(`${JSON.stringify({ index, seconds, ...result })}\n`);
  await rm(node, { force: true });
  await rm(`${node}.${format}`, { force: true });
}
await rm(cache, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS })}\n`);
