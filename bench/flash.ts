/**
 * Benchmark for `swarmcard flash` (issue 12): one ~2.7 GiB Lite-shaped image (the one
 * build-cluster.js makes) written with its bmap to a loop device, against `bmaptool copy` with the
 * same bmap and against `dd bs=4M oflag=direct` of the raw image, in one run. swarmcard reads every
 * written range back from the device and compares it; bmaptool checks the image's ranges against
 * the bmap's checksums as it copies (its verification); dd verifies nothing. All three end with the
 * data on the backing disk (the loop device uses direct I/O, and dd gets conv=fsync).
 * Targets: swarmcard ≤ 1.05 × bmaptool, and faster than dd. Needs root (losetup) and bmaptool.
 *
 * A read-back reads what was written a second time, so where the device reads as fast as it writes
 * (a loop device on a fast disk) it costs about as much as the write; an SD card reads 3–4 times
 * faster than it writes. The second measurement throttles the same loop device to such speeds
 * (--card-write/--card-read MB/s, default 60/216: the 25/90 of a common card, scaled up to keep the
 * run short; --card-runs 0 skips it).
 *   node build/bench/flash.js [--runs N] [--dir DIR] [--card-runs N] [--card-write MB/s] [--card-read MB/s]
 */

import { randomFillSync } from 'node:crypto';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { makeFixtureImage } from '../builder/fixture/make-fixture-image.js';
import { isFile } from '../builder/util/is-file.js';
import { cli } from './cli.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    dir: { type: 'string' },
    'card-runs': { type: 'string', default: '1' },
    'card-write': { type: 'string', default: '60' },
    'card-read': { type: 'string', default: '216' },
  },
});
const runs = Number(values.runs);
const work = values.dir ?? join(tmpdir(), 'swarmcard-bench');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;

if (process.getuid?.() !== 0) {
  console.error('error: the flash benchmark needs root (it attaches a loop device); run it with sudo.');
  process.exit(1);
}

await mkdir(work, { recursive: true });
const base = join(work, 'lite-shaped-armhf.img');
if (!(await isFile(base))) {
  process.stderr.write(`generating ${base}…\n`);
  await makeFixtureImage('trixie-armhf', base, { bootMiB: 512, rootMiB: 2250, payloadBytes: 1900 * 1024 * 1024 });
}
const size = (await stat(base)).size;
const bmap = `${base}.bmap`;
if (!(await isFile(bmap)) || (await stat(bmap)).mtimeMs < (await stat(base)).mtimeMs)
  await execa('bmaptool', ['create', base, '-o', bmap]);
const mapped = Number(/<MappedBlocksCount>\s*(\d+)/.exec(await readFile(bmap, 'utf8'))![1]) * 4096;

// The card: random bytes, fully allocated, a little larger than the image; kept between runs.
const cardFile = join(work, 'card.bin');
const cardSize = size + 64 * 1024 * 1024;
if (!(await isFile(cardFile)) || (await stat(cardFile)).size !== cardSize) {
  process.stderr.write(`filling ${cardFile} with random bytes…\n`);
  const handle = await open(cardFile, 'w');
  const block = Buffer.alloc(8 * 1024 * 1024);
  for (let done = 0; done < cardSize; done += block.length)
    await handle.write(randomFillSync(block), 0, Math.min(block.length, cardSize - done));
  await handle.sync();
  await handle.close();
}

const device = (await execa('losetup', ['--find', '--show', '--direct-io=on', cardFile])).stdout.trim();
const detach = () => execa('losetup', ['--detach', device], { reject: false });
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    void detach().finally(() => process.exit(130));
  });

const tools: Record<string, () => Promise<unknown>> = {
  swarmcard: () => execa(cli, ['flash', base, '--device', device, '--yes', '--force-non-removable']),
  bmaptool: () => execa('bmaptool', ['-q', 'copy', '--bmap', bmap, base, device]),
  dd: () => execa('dd', [`if=${base}`, `of=${device}`, 'bs=4M', 'oflag=direct', 'conv=fsync', 'status=none']),
};

/** Median seconds per tool over `count` runs, the order rotated so none always follows the same one. */
async function measure(count: number): Promise<Record<string, number>> {
  const times: Record<string, number[]> = { swarmcard: [], bmaptool: [], dd: [] };
  for (let run = 0; run < count; run++) {
    const order = Object.keys(tools).map((_, i, all) => all[(i + run) % all.length]!);
    for (const name of order) {
      await execa('sync');
      const start = process.hrtime.bigint();
      await tools[name]!();
      times[name]!.push(seconds(start));
    }
  }
  return Object.fromEntries(Object.entries(times).map(([name, xs]) => [name, median(xs)]));
}

/**
 * A card-like device: the loop device throttled (cgroup v1 blkio, root group: it also holds the
 * kernel's writeback, so bmaptool's buffered writes are throttled too) to an SD card's speeds,
 * which write far slower than they read. Undefined where there is no such control.
 */
const throttle = '/sys/fs/cgroup/blkio/blkio.throttle';
const majMin = (await execa('lsblk', ['-dno', 'MAJ:MIN', device])).stdout.trim();
async function throttled(writeMBs: number, readMBs: number): Promise<boolean> {
  try {
    await writeFile(`${throttle}.write_bps_device`, `${majMin} ${writeMBs * 1e6}`);
    await writeFile(`${throttle}.read_bps_device`, `${majMin} ${readMBs * 1e6}`);
    return true;
  } catch {
    return false;
  }
}
const unthrottle = async () => {
  for (const way of ['write', 'read'])
    await writeFile(`${throttle}.${way}_bps_device`, `${majMin} 0`).catch(() => undefined);
};

const card = { write: Number(values['card-write']), read: Number(values['card-read']) };
let plain: Record<string, number>;
let cardLike: Record<string, number> | undefined;
try {
  // Warm the image into the page cache once, so no tool pays for reading it from disk first.
  await execa('cat', [base], { stdout: 'ignore' });
  plain = await measure(runs);
  if (Number(values['card-runs']) > 0 && (await throttled(card.write, card.read)))
    cardLike = await measure(Number(values['card-runs']));
} finally {
  await unthrottle();
  await detach();
}

const startup = [] as number[];
for (let i = 0; i < 3; i++) {
  const start = process.hrtime.bigint();
  await execa(cli, ['--version']);
  startup.push(seconds(start));
}
const gib = (n: number) => (n / 2 ** 30).toFixed(2);
const boot = `(node start-up alone: ${median(startup).toFixed(2)} s)`;
console.log(`image: ${gib(size)} GiB Lite-shaped armhf, ${gib(mapped)} GiB mapped by its bmap`);
function report(title: string, t: Record<string, number>, count: number): void {
  const [s, b, d] = [t.swarmcard!, t.bmaptool!, t.dd!];
  console.log(`${title}; runs: ${count} (medians)`);
  console.log(`  swarmcard flash (bmap, read back from the card): ${s.toFixed(2)} s  ${boot}`);
  console.log(`  bmaptool copy (bmap, checks the image's ranges): ${b.toFixed(2)} s`);
  console.log(`  dd bs=4M oflag=direct conv=fsync (whole image):  ${d.toFixed(2)} s`);
  console.log(
    `  ratio swarmcard / bmaptool: ${(s / b).toFixed(3)} (target <= 1.05) ${s / b <= 1.05 ? 'OK' : 'MISSED'}`,
  );
  console.log(`  ratio swarmcard / dd:       ${(s / d).toFixed(3)} (target < 1) ${s / d < 1 ? 'OK' : 'MISSED'}`);
}
report('loop device with direct I/O (as fast as the disk under it)', plain, runs);
if (cardLike)
  report(
    `the same loop device throttled like an SD card (write ${card.write} MB/s, read ${card.read} MB/s)`,
    cardLike,
    Number(values['card-runs']),
  );
else console.log('(no card-like run: --card-runs 0, or no cgroup v1 blkio throttling here)');
