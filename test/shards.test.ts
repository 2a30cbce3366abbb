/**
 * Sharded builds (issue 11 §3): `build --shard I/N` for every I, then `merge`, gives the folder one
 * build of every node gives, byte for byte (every file, raw and zst); merge refuses shards that do
 * not make one release, with one sentence and nothing written; across filesystems it copies, and
 * Ctrl-C while it does leaves no half-written cluster folder. Real builds of the trixie-armhf
 * fixture with the shipped pizero-otg profile.
 */

import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { cliPath, shippedSecretsDir, swarmcard } from './helpers/cli.js';
import { fixture, scratchDir } from './helpers/fixtures.js';
import { mtype } from './helpers/independent.js';

const P = fileURLToPath(new URL('../../profiles/pizero-otg.yaml', import.meta.url));
const CLUSTER = 'pizero-otg';
// Another filesystem than the shards' (tmpfs), so merge copies instead of linking.
const shm = '/dev/shm';
const otherFs = (await stat(shm).catch(() => undefined))?.dev !== (await stat(tmpdir())).dev;

/** Every file under `dir` (relative name → sha256), dot-files included. */
async function digests(dir: string): Promise<Record<string, string>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  const out: Record<string, string> = {};
  for (const e of entries.filter((e) => !e.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(e.parentPath, e.name);
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk);
    out[relative(dir, path)] = hash.digest('hex');
  }
  return out;
}

async function build(t: ExecutionContext, out: string, extra: string[], env?: Record<string, string>) {
  const base = await fixture('trixie-armhf');
  const r = await swarmcard(['build', P, '--base', base, '--out', out, ...extra], { env });
  t.is(r.exitCode, 0, `build ${extra.join(' ')}: ${r.stderr}`);
  return r;
}

/** `limit` at a time (the machine has two cores). */
async function bounded<T>(items: T[], limit: number, each: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await each(items[next++]!);
    }),
  );
}

/** Builds the whole cluster once and as `count` shards (folders shard-1 … shard-N), then merges. */
async function shardedAndSingle(t: ExecutionContext, count: number, extra: string[]) {
  t.is((await swarmcard(['secrets', P])).exitCode, 0, 'the cluster key exists before any shard runs');
  const dir = await scratchDir(t);
  const shards = Array.from({ length: count }, (_, i) => join(dir, `shard-${i + 1}`));
  const jobs = [
    () => build(t, join(dir, 'single'), extra),
    ...shards.map((out, i) => () => build(t, out, [...extra, '--shard', `${i + 1}/${count}`])),
  ];
  await bounded(jobs, 2, (job) => job());
  // Shard folders as CI artifacts come down: the cluster folder itself, or the folder holding it.
  const given = shards.map((s, i) => (i % 2 === 0 ? join(s, CLUSTER) : s)).reverse();
  const merged = await swarmcard(['merge', ...given, '--out', join(dir, 'merged')]);
  t.is(merged.exitCode, 0, merged.stderr);
  return { dir, shards, merged, single: join(dir, 'single', CLUSTER), result: join(dir, 'merged', CLUSTER) };
}

test('shards merged are one build, byte for byte: 5 shards of 4 nodes (one empty), raw images', async (t) => {
  t.timeout(600_000);
  const { shards, single, result, merged } = await shardedAndSingle(t, 5, ['--nodes', '3']);
  const want = await digests(single);
  t.deepEqual(Object.keys(want).sort(), [
    '00-otghost1.img',
    '00-otghost1.img.bmap',
    '01-otg1.img',
    '01-otg1.img.bmap',
    '02-otg2.img',
    '02-otg2.img.bmap',
    '03-otg3.img',
    '03-otg3.img.bmap',
    'SHA256SUMS',
    'host-kit.tar',
    'imager.json',
    'manifest.json',
  ]);
  t.deepEqual(await digests(result), want);
  for (const name of ['manifest.json', 'SHA256SUMS', 'imager.json'])
    t.true((await readFile(join(result, name))).equals(await readFile(join(single, name))), name);
  // Contiguous, balanced: 4 nodes over 5 shards are 0, 1, 1, 1, 1 nodes; the first has none.
  const held = await Promise.all(
    shards.map(async (s) => JSON.parse(await readFile(join(s, CLUSTER, 'shard.json'), 'utf8')).nodes),
  );
  t.deepEqual(held, [[], [0], [1], [2], [3]]);
  // Same filesystem: hard links, and the shards keep their files.
  const [linked, source] = await Promise.all([
    stat(join(result, '02-otg2.img')),
    stat(join(shards[3]!, CLUSTER, '02-otg2.img')),
  ]);
  t.is(linked.ino, source.ino);
  t.regex(merged.stderr, /9 file\(s\) hard-linked, 0 copied from 5 shard\(s\)/);
  t.is((await execa('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: result, reject: false })).exitCode, 0);
});

test('shards merged are one build, byte for byte: --compress zst, 2 shards of 3 nodes', async (t) => {
  t.timeout(600_000);
  const { single, result } = await shardedAndSingle(t, 2, ['--nodes', '2', '--compress', 'zst']);
  const want = await digests(single);
  t.true(Object.keys(want).includes('01-otg1.img.zst'));
  t.false(Object.keys(want).includes('01-otg1.img'));
  t.deepEqual(await digests(result), want);
});

/** A private copy of the shipped profile with one more line (a different profile, the same cluster). */
async function changedProfile(dir: string): Promise<string> {
  const folder = join(dir, 'profile');
  await cp(join(P, '..', 'stacks'), join(folder, 'stacks'), { recursive: true });
  const file = join(folder, 'pizero-otg.yaml');
  await writeFile(file, `${await readFile(P, 'utf8')}# changed\n`);
  return file;
}

/** mdir that reports another mtools version (and runs the real one otherwise). */
async function otherMtools(dir: string): Promise<string> {
  const script = join(dir, 'mdir');
  const real = (await execa('sh', ['-c', 'command -v mdir'])).stdout.trim();
  await writeFile(
    script,
    `#!/bin/sh\n[ "$1" = --version ] && { echo "mdir (GNU mtools) 9.9.9"; exit 0; }\nexec ${real} "$@"\n`,
  );
  await chmod(script, 0o755);
  return script;
}

test('merge refuses shards that are not one release, in one sentence, writing nothing', async (t) => {
  t.timeout(600_000);
  t.is((await swarmcard(['secrets', P])).exitCode, 0);
  const dir = await scratchDir(t);
  const base = await fixture('trixie-armhf');
  const booted = await fixture('trixie-armhf', { booted: true });
  const otherSecrets = join(dir, 'other-secrets');
  t.is((await swarmcard(['secrets', P], { env: { SWARMCARD_SECRETS_DIR: otherSecrets } })).exitCode, 0);
  const profile = await changedProfile(dir);
  const mdir = await otherMtools(dir);
  const shard = (name: string) => join(dir, name, CLUSTER);
  const one = ['--nodes', '1'];
  // [folder, profile, extra arguments, environment]
  const builds: [string, string, string[], Record<string, string>?][] = [
    ['a1', P, [...one, '--shard', '1/2']],
    ['a2', P, [...one, '--shard', '2/2']],
    ['profile', profile, [...one, '--shard', '2/2']],
    ['base', P, ['--nodes', '1', '--shard', '2/2', '--base', booted]],
    ['epoch', P, [...one, '--shard', '2/2'], { SOURCE_DATE_EPOCH: '1700000001' }],
    ['tools', P, [...one, '--shard', '2/2'], { SWARMCARD_MDIR: mdir }],
    ['nodes', P, ['--nodes', '2', '--shard', '2/2']],
    ['zst', P, [...one, '--shard', '2/2', '--compress', 'zst']],
    ['secrets', P, [...one, '--shard', '2/2'], { SWARMCARD_SECRETS_DIR: otherSecrets }],
    ['third', P, [...one, '--shard', '1/3']],
  ];
  await bounded(builds, 2, async ([name, file, extra, env]) => {
    const withBase = extra.includes('--base') ? extra : ['--base', base, ...extra];
    // The copied profile reads the shipped cluster's secrets, like a CI job restoring them.
    const secrets: Record<string, string> = name === 'profile' ? { SWARMCARD_SECRETS_DIR: shippedSecretsDir } : {};
    const r = await swarmcard(['build', file, ...withBase, '--out', join(dir, name)], {
      env: { ...env, ...secrets },
    });
    t.is(r.exitCode, 0, `${name}: ${r.stderr}`);
  });
  await rm(join(dir, 'gone'), { recursive: true, force: true });
  await cp(join(dir, 'a2'), join(dir, 'gone'), { recursive: true });
  await rm(join(shard('gone'), '01-otg1.img.bmap'));
  await mkdir(join(dir, 'taken', CLUSTER), { recursive: true });
  await writeFile(join(dir, 'taken', CLUSTER, 'notes.txt'), 'mine\n');

  const cases: [string, string[], RegExp, string?][] = [
    ['different profiles', [shard('a1'), shard('profile')], /were built with different profiles/],
    ['different bases', [shard('a1'), shard('base')], /different base images; .*sha256/],
    ['different epochs', [shard('a1'), shard('epoch')], /different epochs \(1700000000, 1700000001\)/],
    ['different tool versions', [shard('a1'), shard('tools')], /different tool versions/],
    ['different node counts', [shard('a1'), shard('nodes')], /different node lists; give every shard the same/],
    ['different compression', [shard('a1'), shard('zst')], /different release settings/],
    ['different secrets', [shard('a1'), shard('secrets')], /different secrets \(cluster SSH key\)/],
    ['different shard counts', [shard('a1'), shard('third')], /different shard counts \(2, 3\)/],
    ['the same shard twice', [shard('a1'), shard('a2'), join(dir, 'a1')], /are both shard 1\/2; give each shard once/],
    ['a missing shard', [shard('a1')], /^error: shard 2\/2 is missing; build it/],
    ['a file missing', [shard('a1'), shard('gone')], /01-otg1\.img\.bmap is missing; copy that shard whole/],
    ['not a shard', [shard('a1'), dir], /holds no shard\.json, so it is not a finished shard/],
    ['an existing cluster folder', [shard('a1'), shard('a2')], /already exists and is not empty/, 'taken'],
  ];
  for (const [name, dirs, says, outName] of cases) {
    const out = join(dir, outName ?? `out-${name.replaceAll(' ', '-')}`);
    const before = await digests(join(dir, 'taken'));
    const r = await swarmcard(['merge', ...dirs, '--out', out]);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    t.is(r.exitCode, 1, `${name}: ${r.stderr}`);
    t.is(lines.length, 1, `${name}: one line: ${r.stderr}`);
    t.regex(lines[0] ?? '', /^error: /, name);
    t.regex(lines[0] ?? '', says, name);
    if (outName) t.deepEqual(await digests(out), before, `${name}: OUT untouched`);
    else t.deepEqual(await readdir(out).catch(() => []), [], `${name}: nothing written`);
  }
  // The good pair still merges (the refusals changed nothing in the shards).
  const good = await swarmcard(['merge', shard('a2'), shard('a1'), '--out', join(dir, 'good')]);
  t.is(good.exitCode, 0, good.stderr);
  // A shard still being built, and an OUT another run is writing: refused by their locks.
  const lock = `.${CLUSTER}.lock`;
  await cp(join(dir, 'a2'), join(dir, 'busy'), { recursive: true });
  await mkdir(join(dir, 'busy', lock));
  const busy = await swarmcard(['merge', shard('a1'), join(dir, 'busy'), '--out', join(dir, 'out-busy')]);
  t.is(busy.exitCode, 1, busy.stderr);
  t.regex(busy.stderr, /busy\/pizero-otg is being written by another swarmcard run .* before merging it\./);
  t.false(existsSync(join(dir, 'out-busy')), 'nothing written');
  await mkdir(join(dir, 'locked', lock), { recursive: true });
  const locked = await swarmcard(['merge', shard('a1'), shard('a2'), '--out', join(dir, 'locked')]);
  t.is(locked.exitCode, 1, locked.stderr);
  t.regex(locked.stderr, /locked\/pizero-otg is being written by another swarmcard run .* before writing into it\./);
  t.deepEqual(await readdir(join(dir, 'locked')), [lock], 'nothing written');
});

test('a shard never makes secrets: without the secrets file it is refused before anything is written', async (t) => {
  const dir = await scratchDir(t);
  const base = await fixture('trixie-armhf');
  const env = { SWARMCARD_SECRETS_DIR: join(dir, 'secrets') };
  const out = join(dir, 'out');
  const r = await swarmcard(['build', P, '--base', base, '--nodes', '1', '--shard', '1/2', '--out', out], { env });
  t.is(r.exitCode, 1);
  t.regex(
    r.stderr,
    /pizero-otg\.secrets\.yaml does not exist yet, and a shard must not make secrets .*swarmcard secrets/,
  );
  t.deepEqual(await readdir(dir), [], 'no output folder, no secrets folder');
  // swarmcard secrets makes them (printing where, never what), and then the shard builds.
  const made = await swarmcard(['secrets', P], { env });
  t.is(made.exitCode, 0, made.stderr);
  t.is(made.stdout.trim(), join(dir, 'secrets', 'pizero-otg.secrets.yaml'));
  t.notRegex(made.stdout + made.stderr, /PRIVATE KEY|ssh-ed25519/);
  const again = await swarmcard(['build', P, '--base', base, '--nodes', '1', '--shard', '1/2', '--out', out], { env });
  t.is(again.exitCode, 0, again.stderr);
});

test('a shard never makes an admin password or its hash; without the password file, the stored hash', async (t) => {
  const dir = await scratchDir(t);
  const profile = join(dir, 'pi4-ethernet.yaml');
  await cp(fileURLToPath(new URL('../../profiles/pi4-ethernet.yaml', import.meta.url)), profile);
  const env = { SWARMCARD_SECRETS_DIR: '' }; // beside the profile
  const shard = async () => {
    const base = await fixture('trixie-arm64');
    const out = join(dir, 'out');
    const r = await swarmcard(['build', profile, '--base', base, '--nodes', '1', '--shard', '1/2', '--out', out], {
      env,
    });
    return r;
  };
  const refused = async () => {
    const r = await shard();
    t.is(r.exitCode, 1, r.stderr);
    t.deepEqual(await readdir(join(dir, 'out')).catch(() => []), [], 'nothing written');
    return r.stderr.split('\n').filter((l) => l.startsWith('error: '));
  };
  t.true((await refused())[0]?.includes('pi4-ethernet.secrets.yaml does not exist yet, and a shard must not'));
  const made = await swarmcard(['secrets', profile], { env });
  t.is(made.exitCode, 0, made.stderr);
  t.deepEqual(made.stdout.trim().split('\n'), [
    join(dir, 'pi4-ethernet.secrets.yaml'),
    join(dir, 'pi4-ethernet.password'),
  ]);
  await writeFile(join(dir, 'pi4-ethernet.password'), 'another password\n', { mode: 0o600 });
  t.regex(
    (await refused())[0] ?? '',
    /holds no hash of the admin password in .*pi4-ethernet\.password, and a shard must not/,
  );
  // A CI runner holds the secrets file only: the stored hash is what the images need.
  const secretsFile = join(dir, 'pi4-ethernet.secrets.yaml');
  const { hash } = (parseYaml(await readFile(secretsFile, 'utf8')) as { adminPassword: { hash: string } })
    .adminPassword;
  await rm(join(dir, 'pi4-ethernet.password'));
  const built = await shard();
  t.is(built.exitCode, 0, built.stderr);
  t.regex(built.stderr, /pi4-ethernet\.password is absent: the admin password stays the one hashed in/);
  const image = (await readdir(join(dir, 'out', 'pi4-ethernet'))).find((f) => f.endsWith('.img'))!;
  t.true((await mtype(join(dir, 'out', 'pi4-ethernet', image), '/user-data')).includes(hash));
  await rm(join(dir, 'out'), { recursive: true });
  // Neither the password file nor a hash: refused.
  const text = await readFile(secretsFile, 'utf8');
  await writeFile(secretsFile, stringifyYaml({ ...parseYaml(text), adminPassword: undefined }), { mode: 0o600 });
  t.regex((await refused())[0] ?? '', /pi4-ethernet\.password does not exist yet, and a shard must not make secrets/);
});

/** A cp that takes its time (then runs the real one), so a merge's copying can be interrupted. */
async function slowCp(dir: string): Promise<string> {
  const script = join(dir, 'slow-cp');
  const real = (await execa('sh', ['-c', 'command -v cp'])).stdout.trim();
  await writeFile(script, `#!/bin/sh\nsleep 1\nexec ${real} "$@"\n`);
  await chmod(script, 0o755);
  return script;
}

(otherFs ? test : test.skip)('across filesystems merge copies; Ctrl-C while it copies leaves nothing', async (t) => {
  t.timeout(600_000);
  t.is((await swarmcard(['secrets', P])).exitCode, 0);
  const dir = await scratchDir(t);
  const shards = [join(dir, 's1'), join(dir, 's2')];
  for (const [i, s] of shards.entries()) await build(t, s, ['--nodes', '2', '--shard', `${i + 1}/2`]);
  const dirs = shards.map((s) => join(s, CLUSTER));
  const linked = await swarmcard(['merge', ...dirs, '--out', join(dir, 'linked')]);
  t.is(linked.exitCode, 0, linked.stderr);
  const far = await mkdtemp(join(shm, 'swarmcard-test-'));
  t.teardown(() => rm(far, { recursive: true, force: true }));
  const copied = await swarmcard(['merge', ...dirs, '--out', join(far, 'copied')]);
  t.is(copied.exitCode, 0, copied.stderr);
  t.regex(copied.stderr, /0 file\(s\) hard-linked, 7 copied/);
  t.deepEqual(await digests(join(far, 'copied', CLUSTER)), await digests(join(dir, 'linked', CLUSTER)));
  // Interrupt once the staging folder exists (the slow cp keeps the merge there for seconds).
  const env = { NO_COLOR: '1', SWARMCARD_CP: await slowCp(dir) };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const out = join(far, signal);
    const child = execa('node', [cliPath, 'merge', ...dirs, '--out', out], { reject: false, env });
    const staging = join(out, `.${CLUSTER}.merge.partial`);
    while (!(await readdir(staging).catch(() => [])).length && child.exitCode === null)
      await new Promise((r) => setTimeout(r, 20));
    child.kill(signal);
    const r = await child;
    t.is(r.exitCode, signal === 'SIGINT' ? 130 : 143, r.stderr);
    t.notRegex(r.stderr, /internal error/);
    t.deepEqual(await readdir(out), [], `${signal}: no cluster folder, no staging folder`);
  }
});

test('--help shows --shard, merge and secrets', async (t) => {
  const b = await swarmcard(['build', '--help']);
  t.regex(b.stdout, /--shard I\/N\s+build shard I of N/);
  const m = await swarmcard(['merge', '--help']);
  t.is(m.exitCode, 0);
  t.regex(m.stdout, /usage: swarmcard merge SHARD_DIR… \[--out DIR\] \[--json\]/);
  t.regex(m.stdout, /byte-identical/);
  const s = await swarmcard(['secrets', '--help']);
  t.regex(s.stdout, /never the values/);
  t.regex((await swarmcard(['--help'])).stdout, /merge SHARD_DIR…/);
});
