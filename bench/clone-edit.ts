/**
 * Benchmark: clone + edit one node of a ~2.7 GiB image shaped like Raspberry Pi OS Lite (512 MiB
 * FAT boot, ~2.2 GiB ext4 root with 1.9 GiB of incompressible data), divided by a `cp` of the same
 * image (target ≤ 1.10), and the peak RSS of the clone+edit process tree (target < 200 MB,
 * independent of image size: compared with the same job on a 196 MiB image).
 *
 * Two baselines: a plain `cp`, which returns with the copy still dirty in the page cache, and a
 * durable `cp` + `sync FILE`. A clone is always durable (debugfs fsyncs the image on every close,
 * even read-only, and swarmcard fsyncs before the atomic rename), so the durable copy is the
 * like-for-like baseline; the plain ratio is printed too.
 *   node build/bench/clone-edit.js [--runs N]
 */

import { mkdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { makeFixtureImage } from '../builder/fixture/make-fixture-image.js';
import { isFile } from '../builder/util/is-file.js';
import { cliNodeFlags } from './cli.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, dir: { type: 'string' } } });
const runs = Number(values.runs);
const work = values.dir ?? join(tmpdir(), 'swarmcard-bench');
const cli = fileURLToPath(new URL('./clone-edit-one.js', import.meta.url));

async function image(name: string, options: Parameters<typeof makeFixtureImage>[2]): Promise<string> {
  const path = join(work, name);
  if (!(await isFile(path))) {
    process.stderr.write(`generating ${path}…\n`);
    await makeFixtureImage('bookworm-arm64', path, options);
  }
  return path;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(argv: string[]): Promise<{ seconds: number; maxRssKiB: number; inProcess?: number }> {
  // GNU time reports the largest resident set among the process and the children it waited for.
  const { stdout, stderr } = await execa('/usr/bin/time', ['-f', 'BENCH %e %M', ...argv]);
  const [, seconds, rss] = /BENCH ([\d.]+) (\d+)/.exec(stderr)!;
  const inProcess = /NODE_SECONDS ([\d.]+)/.exec(stdout)?.[1];
  return { seconds: Number(seconds), maxRssKiB: Number(rss), inProcess: inProcess ? Number(inProcess) : undefined };
}

async function measure(
  base: string,
): Promise<{ cp: number; durableCp: number; clone: number; process: number; rss: number }> {
  const out = join(work, 'out.img');
  const cp: number[] = [];
  const durableCp: number[] = [];
  const clone: number[] = [];
  const whole: number[] = [];
  let rss = 0;
  for (let i = 0; i < runs; i++) {
    await rm(out, { force: true });
    await execa('sync');
    cp.push((await timed(['cp', base, out])).seconds);
    await execa('sync');
    await rm(out, { force: true });
    await execa('sync');
    durableCp.push((await timed(['sh', '-c', 'cp "$0" "$1" && sync "$1"', base, out])).seconds);
    await rm(out, { force: true });
    await execa('sync');
    const result = await timed(['node', ...cliNodeFlags, cli, base, out]);
    clone.push(result.inProcess!);
    whole.push(result.seconds);
    rss = Math.max(rss, result.maxRssKiB);
  }
  await rm(out, { force: true });
  return { cp: median(cp), durableCp: median(durableCp), clone: median(clone), process: median(whole), rss };
}

await mkdir(work, { recursive: true });
const big = await image('lite-shaped.img', { bootMiB: 512, rootMiB: 2250, payloadBytes: 1900 * 1024 * 1024 });
const small = await image('small.img', {});
const bigSize = (await stat(big)).size;

const large = await measure(big);
const tiny = await measure(small);
const ratio = large.clone / large.durableCp;
console.log(`image: ${(bigSize / 2 ** 30).toFixed(2)} GiB (Lite-shaped), runs: ${runs} (medians)`);
console.log(`plain cp (copy left dirty in page cache): ${large.cp.toFixed(2)} s`);
console.log(`durable cp (cp + sync FILE):              ${large.durableCp.toFixed(2)} s`);
console.log(
  `clone + edit 1 node (durable):            ${large.clone.toFixed(2)} s ` +
    `(whole process incl. Node start-up: ${large.process.toFixed(2)} s)`,
);
console.log(`ratio clone+edit / durable cp: ${ratio.toFixed(3)} (target <= 1.10) ${ratio <= 1.1 ? 'OK' : 'MISSED'}`);
console.log(
  `ratio clone+edit / plain cp:   ${(large.clone / large.cp).toFixed(3)} ` +
    "(the copy's write-back is not counted in plain cp)",
);
const smallSize = (await stat(small)).size;
console.log(
  `peak RSS: ${(large.rss / 1024).toFixed(0)} MiB on ${(bigSize / 2 ** 30).toFixed(2)} GiB, ` +
    `${(tiny.rss / 1024).toFixed(0)} MiB on ${(smallSize / 2 ** 20).toFixed(0)} MiB ` +
    `(target < 200 MB) ${large.rss * 1024 < 200e6 ? 'OK' : 'MISSED'}`,
);
console.log(`RSS ratio large/small image: ${(large.rss / tiny.rss).toFixed(2)} (≈1 means independent of image size)`);
