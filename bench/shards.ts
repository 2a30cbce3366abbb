/**
 * Benchmark for sharded builds: a 64-node cluster (a manager and 63 workers on Ethernet, a swarm)
 * built once, and as 8 shards (`--shard I/8`, one after the other, each with its own cache folder
 * as on its own CI runner) merged with `swarmcard merge`. Prints whether every file of the two
 * cluster folders is identical, each shard's wall time (what one of 8 runners would take), the
 * merge's, and the ratios to the single build. A fixture base (small, Raspberry Pi OS-shaped), not
 * a 2.7 GiB image: the machine is shared; what is compared is the same per-node work either way.
 *   node build/bench/shards.js [--dir DIR] [--nodes 64] [--shards 8]
 */

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { makeFixtureImage } from '../builder/fixture/make-fixture-image.js';
import { isFile } from '../builder/util/is-file.js';
import { cli } from './cli.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    nodes: { type: 'string', default: '64' },
    shards: { type: 'string', default: '8' },
  },
});
const nodes = Number(values.nodes);
const count = Number(values.shards);
const work = values.dir ?? join(tmpdir(), 'swarmcard-bench-shards');
const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;

await mkdir(work, { recursive: true });
const base = join(work, 'trixie-arm64.img');
if (!(await isFile(base))) await makeFixtureImage('trixie-arm64', base);
const profile = join(work, 'bench-shards.yaml');
const address = (k: string) => `10.1.{${k}/250}.{${k}%250+1}/16`;
await writeFile(
  profile,
  [
    'cluster: bench-shards',
    'sourceDateEpoch: 1700000000',
    `base: { image: ${base} }`,
    'swarm: { manager: manager0, docker: { method: apt } }',
    'nodes:',
    '  - { index: 0, hostname: manager0, role: manager, board: pi4, interfaces: ' +
      '[{ name: eth0, kind: ethernet, address: 10.1.255.1/16, gateway: 10.1.255.254 }] }',
    '  - pattern: "node{k}"',
    `    count: ${nodes - 1}`,
    '    role: worker',
    '    board: pi4',
    `    interfaces: [{ name: eth0, kind: ethernet, address: "${address('k')}", gateway: 10.1.255.254 }]`,
    '',
  ].join('\n'),
);
const secrets = join(work, 'secrets');
const env = { SWARMCARD_SECRETS_DIR: secrets, NO_COLOR: '1' };
// As in CI: the secrets are made once, before any shard runs.
await execa(cli, ['secrets', profile], { env });

async function digests(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of (await readdir(dir)).sort()) {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(join(dir, name))) hash.update(chunk);
    out.set(name, hash.digest('hex'));
  }
  return out;
}

async function timedBuild(out: string, extra: string[], cache: string): Promise<number> {
  await rm(out, { recursive: true, force: true });
  await rm(cache, { recursive: true, force: true });
  await execa('sync');
  const start = process.hrtime.bigint();
  await execa(cli, ['build', profile, '--out', out, ...extra], {
    env: { ...env, SWARMCARD_CACHE_DIR: cache },
  });
  return seconds(start);
}

const single = await timedBuild(join(work, 'single'), [], join(work, 'cache-single'));
const shardTimes: number[] = [];
for (let i = 1; i <= count; i++)
  shardTimes.push(await timedBuild(join(work, `shard-${i}`), ['--shard', `${i}/${count}`], join(work, `cache-${i}`)));
await rm(join(work, 'merged'), { recursive: true, force: true });
let start = process.hrtime.bigint();
const shardDirs = Array.from({ length: count }, (_, i) => join(work, `shard-${i + 1}`, 'bench-shards'));
await execa(cli, ['merge', ...shardDirs, '--out', join(work, 'merged')], { env });
const merge = seconds(start);

start = process.hrtime.bigint();
const [want, got] = [
  await digests(join(work, 'single', 'bench-shards')),
  await digests(join(work, 'merged', 'bench-shards')),
];
const compare = seconds(start);
const differing = [...new Set([...want.keys(), ...got.keys()])].filter((f) => want.get(f) !== got.get(f));

const slowest = Math.max(...shardTimes);
const sum = shardTimes.reduce((a, b) => a + b, 0);
console.log(`${nodes} nodes on the trixie-arm64 fixture base (${base}), ${count} shards`);
console.log(
  differing.length === 0
    ? `merged == single build: all ${want.size} files byte-identical (sha256 each, ${compare.toFixed(1)} s)`
    : `MISMATCH: ${differing.join(', ')}`,
);
console.log(`single build:          ${single.toFixed(2)} s`);
console.log(`shards (one runner each): ${shardTimes.map((s) => s.toFixed(2)).join(' ')} s`);
console.log(`slowest shard:         ${slowest.toFixed(2)} s; sum of shards ${sum.toFixed(2)} s`);
console.log(`merge:                 ${merge.toFixed(2)} s (hard links, manifest, imager.json, SHA256SUMS)`);
console.log(`ratio slowest shard / single build:           ${(slowest / single).toFixed(3)}`);
console.log(`ratio (slowest shard + merge) / single build: ${((slowest + merge) / single).toFixed(3)}`);
console.log(`ratio sum of shards / single build:           ${(sum / single).toFixed(3)} (the overhead of sharding)`);
for (const dir of ['single', 'merged', ...Array.from({ length: count }, (_, i) => `shard-${i + 1}`)])
  await rm(join(work, dir), { recursive: true, force: true });
if (differing.length > 0) process.exitCode = 1;
