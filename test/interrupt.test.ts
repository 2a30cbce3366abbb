/**
 * Ctrl-C and SIGTERM at random moments of real builds (the CLI as a child process): whatever the
 * moment, the build exits 130/143 (or 0 if it had already finished), says no "internal error", and
 * leaves no .partial, no temp dir, no loop device, no mount and no child process behind.
 * The delays are seeded (SWARMCARD_INTERRUPT_SEED to replay a run) and spread over the measured
 * duration of an uninterrupted build; a few runs go at once to stay within the time budget.
 */

import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { cliPath } from './helpers/cli.js';
import { fixture, fixtureDir, scratchDir } from './helpers/fixtures.js';
import { missingLoop, testIf } from './helpers/requires.js';

const profile = fileURLToPath(new URL('../../profiles/pizero-otg.yaml', import.meta.url));
const seed = Number(process.env.SWARMCARD_INTERRUPT_SEED ?? 20251129);
const CONCURRENCY = 4;
const loopMissing = await missingLoop();

/** mulberry32: a small seeded generator, so a failing schedule can be replayed. */
function random(start: number): () => number {
  let a = start >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Run {
  dir: string;
  env: Record<string, string>;
  args: string[];
}

async function prepare(t: ExecutionContext, base: string, extra: string[]): Promise<Run> {
  const dir = await scratchDir(t);
  for (const sub of ['tmp', 'cache', 'secrets']) await mkdir(join(dir, sub));
  return {
    dir,
    env: {
      NO_COLOR: '1',
      SWARMCARD_TMPDIR: join(dir, 'tmp'),
      SWARMCARD_CACHE_DIR: join(dir, 'cache'),
      SWARMCARD_SECRETS_DIR: join(dir, 'secrets'),
    },
    args: [cliPath, 'build', profile, '--base', base, '--nodes', '1', '--out', join(dir, 'dist'), ...extra],
  };
}

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.map((e) => join(e.parentPath ?? (e as { path: string }).path, e.name));
}

/** Processes (other than this test's) whose argv or cwd mention the run's directory. */
async function processesOf(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
    if (Number(pid) === process.pid) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
    if (argv.includes(dir) || cwd.startsWith(dir)) found.push(`${pid}: ${argv.slice(0, 160)}`);
  }
  return found;
}

async function leftovers(run: Run): Promise<string[]> {
  const problems: string[] = [];
  const partials = (await walk(run.dir)).filter((p) => p.endsWith('.partial'));
  if (partials.length > 0) problems.push(`partial files: ${partials.join(', ')}`);
  const temps = await readdir(join(run.dir, 'tmp'));
  if (temps.length > 0) problems.push(`temp entries: ${temps.join(', ')}`);
  const loops = execFileSync('losetup', ['-a'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(run.dir));
  if (loops.length > 0) problems.push(`loop devices: ${loops.join('; ')}`);
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(run.dir));
  if (mounts.length > 0) problems.push(`mounts: ${mounts.join('; ')}`);
  const children = await processesOf(run.dir);
  if (children.length > 0) problems.push(`processes: ${children.join('; ')}`);
  return problems;
}

/** Undo what a failed run left, so one failure does not leak into the machine (or the next test). */
async function scrub(run: Run): Promise<void> {
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n'))
    if (line.includes(run.dir)) await execa('umount', ['-l', line.split(' ')[4]!], { reject: false });
  for (const line of execFileSync('losetup', ['-a'], { encoding: 'utf8' }).split('\n'))
    if (line.includes(run.dir)) await execa('losetup', ['-d', line.slice(0, line.indexOf(':'))], { reject: false });
  for (const p of await processesOf(run.dir)) {
    try {
      process.kill(Number(p.split(':')[0]), 'SIGKILL');
    } catch {}
  }
}

async function interruptAt(run: Run, delayMs: number, signal: 'SIGINT' | 'SIGTERM') {
  const child = execa('node', run.args, { env: run.env, reject: false });
  const timer = setTimeout(() => child.kill(signal), delayMs);
  const result = await child;
  clearTimeout(timer);
  // Give the kernel a moment to reap what a leaking build orphaned, so a leak is not a race.
  await new Promise((r) => setTimeout(r, 100));
  return result;
}

async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
    }),
  );
}

async function interruptMany(
  t: ExecutionContext,
  base: string,
  extra: string[],
  count: number,
  window: (done: number) => number,
  tag: string,
) {
  const rand = random(seed + tag.length * 7919);
  // One uninterrupted run measures the build, so the delays cover every step of it.
  const reference = await prepare(t, base, extra);
  const started = Date.now();
  const full = await execa('node', reference.args, { env: reference.env, reject: false });
  t.is(full.exitCode, 0, full.stderr);
  const span = window(Date.now() - started);
  const schedule = Array.from({ length: count }, (_, i) => ({
    delay: Math.round(30 + rand() * span),
    signal: i % 2 === 0 ? ('SIGINT' as const) : ('SIGTERM' as const),
  }));
  t.log(`${tag}: seed ${seed}, build ${Date.now() - started} ms, delays ${schedule.map((s) => s.delay).join(' ')}`);
  await pool(schedule, CONCURRENCY, async ({ delay, signal }) => {
    const run = await prepare(t, base, extra);
    const result = await interruptAt(run, delay, signal);
    const what = `${tag} ${signal} after ${delay} ms`;
    const expected = signal === 'SIGINT' ? 130 : 143;
    // A signal before the CLI installed its handler kills node outright: the shell sees 128+n too.
    const code = result.exitCode ?? (result.signal === signal ? expected : -1);
    t.true(code === expected || code === 0, `${what}: exit ${result.exitCode ?? result.signal}\n${result.stderr}`);
    t.notRegex(result.stderr, /internal error|\n\s+at /, `${what}: no internal error or stack`);
    const left = await leftovers(run);
    t.deepEqual(left, [], `${what} left: ${left.join('\n')}\n${result.stderr}`);
    if (left.length > 0) await scrub(run);
    await rm(run.dir, { recursive: true, force: true });
  });
}

test('interrupts during debugfs builds leave nothing behind', async (t) => {
  t.timeout(600_000); // ~1 min on an idle machine; far longer on a loaded one
  await interruptMany(t, await fixture('bookworm-armhf'), [], 12, (ms) => ms * 1.05, 'debugfs');
});

testIf(loopMissing)('interrupts during loop-backend builds leave no loop device, mount or temp dir', async (t) => {
  t.timeout(600_000); // ~1 min on an idle machine; far longer on a loaded one
  await interruptMany(t, await fixture('bookworm-armhf'), ['--ext4-backend', 'loop'], 8, (ms) => ms * 1.05, 'loop');
});

test('Ctrl-C while decompressing a base leaves no .partial in the cache', async (t) => {
  t.timeout(600_000); // ~1 min on an idle machine; far longer on a loaded one
  const xz = join(fixtureDir, 'bookworm-armhf.img.xz');
  const made = await readFile(xz).then(
    () => true,
    () => false,
  );
  if (!made) {
    const unique = `${xz}.${process.pid}`;
    await execa('sh', ['-c', 'xz -T0 -1 -c "$0" > "$1"', await fixture('bookworm-armhf'), unique]);
    await execa('mv', [unique, xz]);
  }
  // Decompressing is the first step: the delays cover it and the clone right after.
  await interruptMany(t, xz, [], 6, (ms) => Math.min(ms, 4000), 'xz');
});
