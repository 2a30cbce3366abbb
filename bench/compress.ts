/**
 * Benchmark of chunked compression (builder/release/compress.ts) on a ~2.7 GiB Lite-shaped image
 * whose 1.9 GiB of data are real userland files (bench/lite-shaped.ts), measured side by side in one
 * run, per format:
 *   plain    one `xz -T0 -LEVEL` (or `zstd -T0`) of node 1's raw image, made durable (fsync) as
 *            compressImage makes its output;
 *   chunked  compressImage of 8 node images (a few changed blocks each, made with swarmcard's own
 *            editors) into a chunk cache that starts empty, in a process of its own (peak RSS).
 * Targets: chunked 8 / plain 1 ≤ 1.2 (xz) and ≤ 2.0 (zstd); every node within +3% of the plain size.
 * The sha256 of the 8 raw images (which the build needs for its manifest anyway, and which
 * compressImage computes in its one read pass) is timed too: it is the floor of the chunked time.
 *
 *   node build/bench/compress.js [--dir DIR] [--formats xz,zst] [--xz-level 6] [--zst-level 3] [--nodes 8]
 *   node build/bench/compress.js --chunk-sizes 4,8,16,32   the chunk size trade: ratio against reuse
 */

import { open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { CHUNK_BYTES, type CompressedFile, type CompressFormat } from '../builder/release/compress.js';
import { sha256Of } from '../builder/util/hash-file.js';
import { cliNodeFlags } from './cli.js';
import { liteShapedImage, makeNodeImage } from './lite-shaped.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    formats: { type: 'string', default: 'xz,zst' },
    'xz-level': { type: 'string', default: '6' },
    'zst-level': { type: 'string', default: '3' },
    nodes: { type: 'string', default: '8' },
    'chunk-sizes': { type: 'string' },
  },
});
const work = values.dir ?? join(tmpdir(), 'swarmcard-bench');
const formats = values.formats!.split(',') as CompressFormat[];
const levels: Record<CompressFormat, number> = { xz: Number(values['xz-level']), zst: Number(values['zst-level']) };
const nodeScript = fileURLToPath(new URL('./compress-nodes.js', import.meta.url));
const MiB = 1024 * 1024;
const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;
const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(2)}%`;

/** One plain multi-threaded compression of RAW, as a release script would run it, made durable. */
async function plain(format: CompressFormat, raw: string): Promise<{ seconds: number; size: number }> {
  const out = join(work, `plain.${format}`);
  const argv = format === 'xz' ? ['xz', '-T0', `-${levels.xz}`] : ['zstd', '-q', '-T0', `-${levels.zst}`];
  await execa('sync');
  const start = process.hrtime.bigint();
  // buffer: false, or execa 9 also counts a file target's bytes against maxBuffer (100 MB).
  const env = { XZ_OPT: '', XZ_DEFAULTS: '' };
  await execa(argv[0]!, [...argv.slice(1), '-c', raw], { stdout: { file: out }, buffer: false, env });
  const handle = await open(out, 'r+');
  await handle.sync().finally(() => handle.close());
  const took = seconds(start);
  const { size } = await stat(out);
  await rm(out);
  return { seconds: took, size };
}

type NodeResult = CompressedFile & { index: number; seconds: number };

/** compressImage of nodes 1…N (cold cache) in a child process: per-node results and its peak RSS. */
async function chunked(format: CompressFormat, base: string, nodes: number, chunkMiB: number) {
  await execa('sync');
  const { stdout } = await execa('node', [
    ...cliNodeFlags,
    nodeScript,
    base,
    work,
    format,
    String(levels[format]),
    String(nodes),
    String(chunkMiB),
  ]);
  const lines = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const results = lines.filter((l) => 'index' in l) as NodeResult[];
  return { results, maxRssKiB: lines.find((l) => 'maxRssKiB' in l).maxRssKiB as number };
}

const base = await liteShapedImage(work);
const baseSize = (await stat(base)).size;
const node1 = join(work, 'plain-node-1.img');
await makeNodeImage(base, node1, 1);
console.log(`image: ${(baseSize / 2 ** 30).toFixed(2)} GiB Lite-shaped (${base}); ${values.nodes} nodes`);

if (values['chunk-sizes']) {
  // The trade: a smaller chunk is reused more (node 2 recompresses less) but compresses worse.
  const sizes = values['chunk-sizes'].split(',').map(Number);
  for (const format of formats) {
    const reference = await plain(format, node1);
    const mib = (reference.size / MiB).toFixed(1);
    console.log(`\n${format} -${levels[format]}: plain -T0 ${mib} MiB in ${reference.seconds.toFixed(1)} s`);
    console.log('chunk MiB | node 1 size | vs plain | node 1 s | node 2: chunks compressed, MiB raw, s');
    for (const chunkMiB of sizes) {
      const { results } = await chunked(format, base, 2, chunkMiB);
      const [one, two] = results as [NodeResult, NodeResult];
      const fresh = two.chunks - two.reused;
      console.log(
        [
          `${chunkMiB}`.padStart(9),
          `${(one.size / MiB).toFixed(1)} MiB`.padStart(11),
          pct(one.size / reference.size - 1).padStart(8),
          one.seconds.toFixed(1).padStart(8),
          `${fresh}, ${fresh * chunkMiB}, ${two.seconds.toFixed(1)}`,
        ].join(' | '),
      );
    }
  }
} else {
  const nodes = Number(values.nodes);
  const hashStart = process.hrtime.bigint();
  for (let i = 0; i < nodes; i++) await sha256Of(node1);
  const hashFloor = seconds(hashStart);
  console.log(`sha256 of ${nodes} raw images (the build's manifest hashes; the floor): ${hashFloor.toFixed(1)} s`);
  const goals: Record<CompressFormat, number> = { xz: 1.2, zst: 2.0 };
  for (const format of formats) {
    const reference = await plain(format, node1);
    const { results, maxRssKiB } = await chunked(format, base, nodes, CHUNK_BYTES / MiB);
    const total = results.reduce((sum, r) => sum + r.seconds, 0);
    const worst = Math.max(...results.map((r) => r.size / reference.size - 1));
    const ratio = total / reference.seconds;
    console.log(`\n${format} -${levels[format]}, ${CHUNK_BYTES / MiB} MiB chunks`);
    console.log(
      `plain -T0 of one image:      ${reference.seconds.toFixed(1)} s, ${(reference.size / MiB).toFixed(1)} MiB`,
    );
    for (const r of results)
      console.log(
        `  node ${r.index}: ${r.seconds.toFixed(1)} s, ${(r.size / MiB).toFixed(1)} MiB ` +
          `(${pct(r.size / reference.size - 1)}), ${r.chunks - r.reused} of ${r.chunks} chunks compressed`,
      );
    console.log(`chunked, ${nodes} nodes (cold cache): ${total.toFixed(1)} s`);
    console.log(
      `ratio chunked ${nodes} / plain 1: ${ratio.toFixed(3)} (goal <= ${goals[format]}) ` +
        `${ratio <= goals[format] ? 'OK' : 'MISSED'}`,
    );
    console.log(
      `ratio with the raw hashes the build does anyway: (chunked) / (plain + ${nodes} sha256) = ` +
        `${(total / (reference.seconds + hashFloor)).toFixed(3)}`,
    );
    // Node 1 cannot take less than one plain run, nor nodes 2…N less than their image's sha256.
    const floor = (reference.seconds + ((nodes - 1) * hashFloor) / nodes) / reference.seconds;
    console.log(
      `the least ratio any chunked run could reach here: (plain + ${nodes - 1} sha256) / plain = ${floor.toFixed(3)}`,
    );
    console.log(`largest node vs plain: ${pct(worst)} (goal <= +3%) ${worst <= 0.03 ? 'OK' : 'MISSED'}`);
    console.log(`peak RSS of the compressing process: ${(maxRssKiB / 1024).toFixed(0)} MiB`);
  }
}
await rm(node1, { force: true });
