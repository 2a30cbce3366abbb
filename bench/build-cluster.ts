/**
 * Benchmarks for `swarmcard build` and `plan`:
 * 1. building 8 nodes (the pizero-otg profile: host + 7 workers) of a ~2.7 GiB Lite-shaped image,
 *    divided by 8 copies of the same image (target ≤ 1.10). The build hashes every image for
 *    SHA256SUMS and the manifest, makes each durable before its rename and then drops it from the
 *    page cache; three baselines are shown: plain copies, durable ones (the target's), and durable
 *    ones each dropped from the cache the same way, which isolates what the build adds. The
 *    build's CPU (the CLI and its tools) spread over the cores is printed too: where copies are
 *    fast, the build is CPU-bound, and that is the least it can take on the machine.
 * 2. planning a 1000-node profile (target < 2 s).
 *   node build/bench/build-cluster.js [--runs N]
 */

import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { makeFixtureImage } from '../builder/fixture/make-fixture-image.js';
import { planCluster } from '../builder/plan/plan.js';
import { loadProfile } from '../builder/profile/load-profile.js';
import { isFile } from '../builder/util/is-file.js';
import { cli } from './cli.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, dir: { type: 'string' } } });
const runs = Number(values.runs);
const work = values.dir ?? join(tmpdir(), 'swarmcard-bench');
const profile = fileURLToPath(new URL('../../profiles/pizero-otg.yaml', import.meta.url));
/**
 * CPU seconds (user + system) of this process's finished children: the CLI, and the tools it ran,
 * each counted once it has been waited for (fields 16 and 17 of /proc/self/stat, in clock ticks).
 */
const ticks = Number((await execa('getconf', ['CLK_TCK'])).stdout);
async function childrenCpu(): Promise<number> {
  const fields = (await readFile('/proc/self/stat', 'utf8')).replace(/^.*\) /, '').split(' ');
  return (Number(fields[13]) + Number(fields[14])) / ticks;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;

await mkdir(work, { recursive: true });
const base = join(work, 'lite-shaped-armhf.img');
if (!(await isFile(base))) {
  process.stderr.write(`generating ${base}…\n`);
  await makeFixtureImage('trixie-armhf', base, { bootMiB: 512, rootMiB: 2250, payloadBytes: 1900 * 1024 * 1024 });
}

const copies = join(work, 'copies');
const out = join(work, 'dist');
const plain: number[] = [];
const durable: number[] = [];
const dropped: number[] = [];
const builds: number[] = [];
const buildCpu: number[] = [];
for (let run = 0; run < runs; run++) {
  for (const [kind, times] of [
    ['plain', plain],
    ['durable', durable],
    ['dropped', dropped],
  ] as const) {
    await rm(copies, { recursive: true, force: true });
    await mkdir(copies);
    await execa('sync');
    const start = process.hrtime.bigint();
    for (let i = 0; i < 8; i++) {
      const copy = join(copies, `${i}.img`);
      await execa('cp', [base, copy]);
      if (kind !== 'plain') await execa('sync', [copy]);
      // What the build does with a finished image: its pages leave the page cache.
      if (kind === 'dropped') await execa('dd', [`if=${copy}`, 'iflag=nocache', 'count=0', 'status=none']);
    }
    times.push(seconds(start));
  }
  await rm(copies, { recursive: true, force: true });
  await rm(out, { recursive: true, force: true });
  await execa('sync');
  const start = process.hrtime.bigint();
  const cpuBefore = await childrenCpu();
  await execa(cli, ['build', profile, '--base', base, '--nodes', '7', '--out', out], {
    env: { SWARMCARD_CACHE_DIR: join(work, 'cache'), SWARMCARD_SECRETS_DIR: work },
  });
  builds.push(seconds(start));
  buildCpu.push((await childrenCpu()) - cpuBefore);
}
await rm(out, { recursive: true, force: true });

// Planning 1000 nodes: an Ethernet cluster whose addresses spread over 10.1.0.0/16.
const big = join(work, 'thousand.yaml');
await writeFile(
  big,
  [
    'cluster: thousand',
    'sourceDateEpoch: 1700000000',
    'base: { image: https://downloads.raspberrypi.com/raspios_lite_arm64_latest }',
    'nodes:',
    '  - { index: 0, hostname: manager0, role: manager, board: pi4, interfaces: ' +
      '[{ name: eth0, kind: ethernet, address: 10.1.255.1/16, gateway: 10.1.255.254 }] }',
    '  - pattern: "node{k}"',
    '    count: 999',
    '    role: worker',
    '    board: pi4',
    '    interfaces: [{ name: eth0, kind: ethernet, address: "10.1.{k/250}.{k%250+2}/16", ' +
      'gateway: 10.1.255.254, dns: [10.1.255.254] }]',
    '',
  ].join('\n'),
);
const plans: number[] = [];
for (let i = 0; i < 5; i++) {
  const start = process.hrtime.bigint();
  const plan = planCluster(await loadProfile(big));
  if (plan.nodes.length !== 1000) throw new Error(`planned ${plan.nodes.length} nodes`);
  plans.push(seconds(start));
}

const [p, d, dd, b] = [median(plain), median(durable), median(dropped), median(builds)];
console.log(
  `base: ${((await stat(base)).size / 2 ** 30).toFixed(2)} GiB Lite-shaped armhf image; runs: ${runs} (medians)`,
);
console.log(`8 plain copies (left dirty in the page cache): ${p.toFixed(2)} s`);
console.log(`8 durable copies (cp + sync FILE):            ${d.toFixed(2)} s`);
console.log(`8 durable copies, each then dropped from the page cache: ${dd.toFixed(2)} s`);
console.log(
  `build of 8 nodes (host + 7 workers):          ${b.toFixed(2)} s (incl. sha256 of every image, manifest, host kit)`,
);
// The build is CPU-bound where copies are fast: its CPU spread over every core is its floor here.
const cpu = median(buildCpu);
const cores = availableParallelism();
console.log(
  `build CPU (the CLI and its tools, user + system): ${cpu.toFixed(1)} s; over ${cores} cores at least ` +
    `${(cpu / cores).toFixed(1)} s, ${(cpu / cores / dd).toFixed(2)} times the copies dropped from the cache`,
);
console.log(`ratio build / 8 durable copies: ${(b / d).toFixed(3)} (target <= 1.10) ${b / d <= 1.1 ? 'OK' : 'MISSED'}`);
console.log(`ratio build / 8 durable copies dropped from the cache: ${(b / dd).toFixed(3)}`);
console.log(`ratio build / 8 plain copies:   ${(b / p).toFixed(3)}`);
console.log(`plan of 1000 nodes: ${median(plans).toFixed(3)} s (target < 2 s) ${median(plans) < 2 ? 'OK' : 'MISSED'}`);
