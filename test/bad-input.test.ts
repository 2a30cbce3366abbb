/**
 * The bad-input corpus (issue 10): every case is refused with exit 1 and one sentence, and leaves
 * nothing behind. The contract checked here: stderr holds exactly one line starting "error:"
 * (naming the file, the field and its YAML line where there is one, and the fix), followed by at
 * most one hint line; no stack trace, no "internal error"; the output folder gains no file and no
 * `.partial` is left anywhere under the case's folder. Profiles are files under test/bad-input/
 * (each checked by validate and by build); flags, images and the environment are the table below.
 */

import { chmod, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { swarmcard } from './helpers/cli.js';
import { fixture, scratchCopy, scratchDir } from './helpers/fixtures.js';

const corpus = fileURLToPath(new URL('../../test/bad-input/', import.meta.url));
const older = fileURLToPath(new URL('../../test/profiles/', import.meta.url));
const goodProfile = fileURLToPath(new URL('../../profiles/pizero-otg.yaml', import.meta.url));

/** Every file and folder under `dir`, relative (folders end in /). */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.map((e) => relative(dir, join(e.parentPath, e.name)) + (e.isDirectory() ? '/' : '')).sort();
}

/** `limit` at a time, in order of the list. */
async function bounded<T>(items: T[], limit: number, each: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await each(items[next++]!);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

interface Case {
  name: string;
  args: (ctx: { dir: string; out: string; base: string }) => string[] | Promise<string[]>;
  env?: Record<string, string>;
  /** A fragment the error line must contain. */
  says?: RegExp;
  /** Complete files the case may add (a cache entry is not an output). */
  mayLeave?: RegExp;
}

/** Runs one case in its own folder and returns what is wrong with the result (empty when right). */
async function check(t: ExecutionContext, c: Case, base: string): Promise<string[]> {
  const dir = await scratchDir(t);
  const out = join(dir, 'out');
  await mkdir(out);
  const args = await c.args({ dir, out, base });
  const before = await tree(dir);
  const r = await swarmcard(args, { env: c.env, cwd: dir });
  // Progress lines ("==> …", "[1/5] …", "decompressing …") and the note that a first build kept a new
  // cluster key may come before the error; the error is the rest.
  const progress = /^(==> |\[\d+\/\d+\] |decompressing |downloading |hashing |generated the cluster SSH key )/;
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && !progress.test(l));
  const wrong: string[] = [];
  if (r.exitCode !== 1) wrong.push(`exit ${r.exitCode}, not 1`);
  if (lines.length < 1 || lines.length > 2 || !lines[0]!.startsWith('error: ') || lines[1]?.startsWith('error: '))
    wrong.push(`stderr is not one error line (plus at most a hint): ${lines.length} lines`);
  if (/internal error|^\s+at /m.test(r.stderr)) wrong.push('a stack trace or internal error');
  if (c.says && !c.says.test(lines[0] ?? '')) wrong.push(`the error does not match ${c.says}`);
  const after = await tree(dir);
  const added = after.filter((f) => !before.includes(f) && !c.mayLeave?.test(f));
  if (added.length > 0) wrong.push(`left ${added.join(', ')}`);
  if (after.some((f) => f.endsWith('.partial'))) wrong.push('left a .partial file');
  return wrong.map((w) => `${c.name}: ${w}\n    swarmcard ${args.join(' ')}\n    ${lines.slice(0, 3).join('\n    ')}`);
}

async function runAll(t: ExecutionContext, cases: Case[]) {
  const base = await fixture('trixie-armhf');
  const failures: string[] = [];
  await bounded(cases, 4, async (c) => {
    failures.push(...(await check(t, c, base)));
  });
  t.deepEqual(failures, [], failures.join('\n'));
  t.log(`${cases.length} cases`);
}

const profileFiles = async (): Promise<string[]> => [
  ...(await readdir(corpus)).filter((f) => f.endsWith('.yaml')).map((f) => join(corpus, f)),
  ...(await readdir(older))
    // Several problems are several lines by design (one per problem); those files are tested in profile.test.
    .filter((f) => f.startsWith('invalid-') && !f.startsWith('invalid-several-'))
    .map((f) => join(older, f)),
];

test('every bad profile: validate refuses it in one sentence', async (t) => {
  const files = await profileFiles();
  t.true(files.length >= 60);
  await runAll(
    t,
    files.map((file) => ({ name: `validate ${file.split('/').at(-1)}`, args: () => ['validate', file] })),
  );
});

test('every bad profile: build refuses it in one sentence and writes nothing', async (t) => {
  const files = await profileFiles();
  await runAll(
    t,
    files.map((file) => ({
      name: `build ${file.split('/').at(-1)}`,
      args: ({ out, base }) => ['build', file, '--base', base, '--out', out],
    })),
  );
});

const P = goodProfile;
const flagCases: Case[] = [
  {
    name: '--nodes past what the address pattern can number',
    args: () => ['plan', P, '--nodes', '250'],
    says: /"10\.0\.256\.2\/24" \(node otg246\) is not an IPv4 address: the group's address pattern runs past 255 here/,
  },
  {
    name: 'a folder given as the profile',
    args: ({ dir }) => ['validate', dir],
    says: /is a folder, not a profile; give the path of a profile such as profiles\/pizero-otg\.yaml\.$/,
  },
  {
    name: 'a single-value option given twice',
    args: () => ['plan', P, '--nodes', '2', '--nodes', '4'],
    says: /^error: --nodes is given 2 times \(2, 4\); give it once\.$/,
  },
  {
    name: '--base given twice',
    args: ({ dir, base, out }) => ['build', P, '--base', join(dir, 'none.img'), '--base', base, '--out', out],
    says: /^error: --base is given 2 times \(.*none\.img, .*\); give it once\.$/,
  },
  { name: 'no such command', args: () => ['frobnicate'] },
  { name: 'unknown option', args: () => ['plan', P, '--frobnicate'] },
  { name: 'plan --only', args: () => ['plan', P, '--only', '1'], says: /plan does not take --only/ },
  { name: 'inspect --nodes', args: ({ base }) => ['inspect', base, '--nodes', '2'], says: /does not take/ },
  { name: 'validate --json', args: () => ['validate', P, '--json'], says: /does not take --json/ },
  { name: 'validate --out', args: ({ out }) => ['validate', P, '--out', out] },
  { name: 'plan --base', args: ({ base }) => ['plan', P, '--base', base] },
  { name: 'schema --json', args: () => ['schema', '--json'] },
  { name: 'demo --nodes', args: () => ['demo', '--nodes', '2'] },
  { name: 'fixture --json', args: ({ dir }) => ['fixture', 'trixie-armhf', join(dir, 'x.img'), '--json'] },
  { name: 'inspect --booted', args: ({ base }) => ['inspect', base, '--booted'] },
  { name: 'build --only ""', args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--only', ''] },
  { name: 'build --only=', args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--only='] },
  { name: 'build --only x', args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--only', 'x'] },
  { name: 'build --only 3-1', args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--only', '3-1'] },
  {
    name: 'build --compress gz',
    args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--compress', 'gz'],
  },
  {
    name: 'build --compress xz:12',
    args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--compress', 'xz:12'],
    says: /level must be from 0 to 9/,
  },
  {
    name: 'build --compress twice',
    args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--compress', 'zst', '--compress', 'zst:9'],
    says: /twice/,
  },
  { name: 'build --compress ""', args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--compress='] },
  {
    name: 'build --release-url http',
    args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--release-url', 'http://example.com/'],
    says: /https/,
  },
  { name: 'plan --compress', args: () => ['plan', P, '--compress', 'xz'], says: /does not take --compress/ },
  ...['0/3', '4/3', 'x', '1/0', '2', '-1/3', '1/3/5', '1/10000'].map(
    (value): Case => ({
      name: `build --shard ${value}`,
      args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--shard', value],
      says: /--shard must be I\/N with 1 <= I <= N/,
    }),
  ),
  { name: 'build --shard ""', args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--shard='] },
  {
    name: 'build --shard with --only',
    args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--shard', '1/2', '--only', '1'],
    says: /--shard and --only do not go together/,
  },
  {
    name: 'build --shard without the secrets',
    args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--shard', '1/2'],
    env: { SWARMCARD_SECRETS_DIR: 'no-secrets-yet' },
    says: /does not exist yet, and a shard must not make secrets .* "swarmcard secrets /,
  },
  {
    name: 'plan --shard',
    args: () => ['plan', P, '--shard', '1/2'],
    says: /plan does not take --shard \(build does\)/,
  },
  { name: 'merge without shards', args: () => ['merge'], says: /merge takes SHARD_DIR…, not 0/ },
  { name: 'merge --nodes', args: ({ dir }) => ['merge', dir, '--nodes', '2'], says: /merge does not take --nodes/ },
  {
    name: 'merge a folder that is no shard',
    args: ({ dir, out }) => ['merge', dir, '--out', out],
    says: /holds no shard\.json, so it is not a finished shard/,
  },
  {
    name: 'merge a corrupt shard',
    args: async ({ dir, out }) => {
      await mkdir(join(dir, 's'));
      await writeFile(join(dir, 's', 'shard.json'), '{ "format": 1 ');
      await writeFile(join(dir, 's', 'manifest.json'), '{}');
      return ['merge', join(dir, 's'), '--out', out];
    },
    says: /shard\.json is not JSON; build that shard again/,
  },
  { name: 'secrets without profile', args: () => ['secrets'], says: /secrets takes PROFILE, not 0/ },
  { name: 'build --only 9', args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--only', '9'] },
  {
    name: 'build --only huge range',
    args: ({ out, base }) => ['build', P, '--base', base, '--out', out, '--only', '1-999999999'],
  },
  { name: 'plan --nodes -1', args: () => ['plan', P, '--nodes', '-1'], says: /--nodes must be/ },
  { name: 'plan --nodes 0', args: () => ['plan', P, '--nodes', '0'] },
  { name: 'plan --nodes abc', args: () => ['plan', P, '--nodes', 'abc'] },
  { name: 'plan --nodes 1.5', args: () => ['plan', P, '--nodes', '1.5'] },
  { name: 'plan --nodes huge', args: () => ['plan', P, '--nodes', '100000'] },
  { name: 'plan --nodes without value', args: () => ['plan', P, '--nodes'] },
  { name: 'plan --json=yes', args: () => ['plan', P, '--json=yes'] },
  { name: 'build --base without value', args: () => ['build', P, '--base'] },
  { name: 'build --out ""', args: ({ base }) => ['build', P, '--base', base, '--out', ''] },
  { name: 'build --ext4-backend zfs', args: ({ base }) => ['build', P, '--base', base, '--ext4-backend', 'zfs'] },
  { name: 'option before the command', args: () => ['--json', 'plan', P] },
  { name: 'plan without profile', args: () => ['plan'] },
  { name: 'plan with two profiles', args: () => ['plan', P, P] },
  { name: 'schema with an argument', args: () => ['schema', 'x'] },
  { name: 'help for no such command', args: () => ['help', 'frobnicate'] },
  { name: 'plan of a missing profile', args: ({ dir }) => ['plan', join(dir, 'none.yaml')] },
  { name: 'validate a directory', args: ({ dir }) => ['validate', dir] },
  {
    name: 'fixture over an existing file',
    args: async ({ dir }) => ['fixture', 'trixie-armhf', await write(join(dir, 'real.img'), 'a download')],
    says: /real\.img already exists; a fixture never replaces a file: remove it or choose another OUT\.$/,
  },
  { name: 'fixture unknown flavour', args: ({ dir }) => ['fixture', 'wheezy', join(dir, 'x.img')] },
  {
    name: 'fixture into a missing directory',
    args: ({ dir }) => ['fixture', 'trixie-armhf', join(dir, 'missing', 'x.img')],
  },
];

test('flags: each command takes only its own options, each value is checked', async (t) => {
  await runAll(t, flagCases);
});

const write = async (path: string, data: string | Buffer) => {
  await writeFile(path, data);
  return path;
};

/** A copy of the fixture with an ext4 incompat feature bit no e2fsprogs knows. */
async function unknownFeatureImage(dir: string, base: string): Promise<string> {
  const image = await readFile(base);
  // The root partition: the second MBR entry's start LBA.
  const start = image.readUInt32LE(446 + 16 + 8) * 512;
  const superblock = start + 1024;
  const incompat = superblock + 0x60;
  image.writeUInt32LE((image.readUInt32LE(incompat) | 0x80000000) >>> 0, incompat);
  return write(join(dir, 'future.img'), image);
}

/** The base with its ext4 group descriptors (the block after the superblock's) overwritten. */
async function corruptDescriptors(dir: string, base: string): Promise<string> {
  const image = await readFile(base);
  const superblock = image.readUInt32LE(446 + 16 + 8) * 512 + 1024;
  const blockSize = 1024 << image.readUInt32LE(superblock + 24);
  const firstDataBlock = image.readUInt32LE(superblock + 20);
  const start = superblock - 1024 + (firstDataBlock + 1) * blockSize;
  for (let at = 0; at < 1024; at += 4) image.writeUInt32LE((0x9e3779b9 * (at + 1)) >>> 0, start + at);
  return write(join(dir, 'descriptors.img'), image);
}

/** The base with the first entries of its FAT overwritten (mtools: "Bad FAT entry"). */
async function corruptFat(dir: string, base: string): Promise<string> {
  const image = await readFile(base);
  const boot = image.readUInt32LE(446 + 8) * 512;
  const fat = boot + image.readUInt16LE(boot + 14) * image.readUInt16LE(boot + 11);
  for (let at = 4; at < 36; at += 4) image.writeUInt32LE(0x0dadbeef, fat + at);
  return write(join(dir, 'fat.img'), image);
}

const imageCases: Case[] = [
  { name: 'inspect an empty file', args: async ({ dir }) => ['inspect', await write(join(dir, 'e.img'), '')] },
  {
    name: 'inspect random bytes',
    args: async ({ dir }) => ['inspect', await write(join(dir, 'r.img'), Buffer.alloc(4096, 7))],
  },
  { name: 'inspect a text file', args: async ({ dir }) => ['inspect', await write(join(dir, 'notes.txt'), 'hi\n')] },
  { name: 'inspect a missing file', args: ({ dir }) => ['inspect', join(dir, 'none.img')] },
  { name: 'inspect a directory', args: ({ dir }) => ['inspect', dir] },
  {
    name: 'inspect a truncated .xz',
    args: async ({ dir }) => [
      'inspect',
      await write(join(dir, 't.img.xz'), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0, 0, 4, 1, 2, 3])),
    ],
    env: { SWARMCARD_CACHE_DIR: '/tmp/swarmcard-bad-input-cache' },
  },
  {
    name: 'inspect an ext4 feature e2fsprogs does not know',
    args: async ({ dir, base }) => ['inspect', await unknownFeatureImage(dir, base)],
  },
  {
    name: 'build on an ext4 feature e2fsprogs does not know',
    args: async ({ dir, base, out }) => ['build', P, '--base', await unknownFeatureImage(dir, base), '--out', out],
  },
  {
    name: 'inspect an ext4 with corrupt group descriptors',
    args: async ({ dir, base }) => ['inspect', await corruptDescriptors(dir, base)],
    says: /the root filesystem of \S+descriptors\.img is damaged \(Corrupt group descriptor/,
  },
  {
    name: 'build on an ext4 with corrupt group descriptors',
    args: async ({ dir, base, out }) => ['build', P, '--base', await corruptDescriptors(dir, base), '--out', out],
    says: /is damaged .*; check it with "e2fsck -fn" or download the image again\.$/,
  },
  {
    name: 'inspect a FAT with a bad entry',
    args: async ({ dir, base }) => ['inspect', await corruptFat(dir, base)],
    says: /the boot partition of \S+fat\.img is damaged \(Bad FAT entry \d+ at 2\); check it with "fsck\.vfat -n"/,
  },
  {
    name: 'build on an empty image',
    args: async ({ dir, out }) => ['build', P, '--base', await write(join(dir, 'e.img'), ''), '--out', out],
  },
  {
    name: 'build on a missing image',
    args: ({ dir, out }) => ['build', P, '--base', join(dir, 'no.img'), '--out', out],
  },
  { name: 'build on a directory', args: ({ dir, out }) => ['build', P, '--base', dir, '--out', out] },
  {
    name: 'build from a plain-http URL',
    args: ({ out }) => ['build', P, '--base', 'http://example.com/x.img', '--out', out],
  },
];

test('images: empty, corrupt, missing and unwritable bases', async (t) => {
  await runAll(t, imageCases);
});

const envCases: Case[] = [
  { name: 'SOURCE_DATE_EPOCH not a number', args: () => ['plan', P], env: { SOURCE_DATE_EPOCH: 'soon' } },
  {
    name: 'SOURCE_DATE_EPOCH huge',
    args: ({ base, out }) => ['build', P, '--base', base, '--out', out],
    env: { SOURCE_DATE_EPOCH: '99999999999999' },
  },
  {
    name: 'SWARMCARD_DEBUGFS=/bin/false (inspect)',
    args: ({ base }) => ['inspect', base],
    env: { SWARMCARD_DEBUGFS: '/bin/false' },
    says: /SWARMCARD_DEBUGFS/,
  },
  {
    name: 'SWARMCARD_DEBUGFS=/bin/false (build)',
    args: ({ base, out }) => ['build', P, '--base', base, '--out', out],
    env: { SWARMCARD_DEBUGFS: '/bin/false' },
    says: /SWARMCARD_DEBUGFS/,
  },
  {
    name: 'SWARMCARD_DEBUGFS missing',
    args: ({ base }) => ['inspect', base],
    env: { SWARMCARD_DEBUGFS: '/nonexistent/debugfs' },
  },
  {
    name: 'SWARMCARD_MCOPY=/bin/false (build)',
    args: ({ base, out }) => ['build', P, '--base', base, '--out', out],
    env: { SWARMCARD_MCOPY: '/bin/false' },
  },
];

test('environment: bad epochs and tool overrides that fail', async (t) => {
  await runAll(t, envCases);
});

/** A profile folder with the good profile copied in, so its secrets file can be bad. */
async function profileCopy(dir: string): Promise<string> {
  const folder = join(dir, 'profile');
  await mkdir(join(folder, 'stacks'), { recursive: true });
  const text = await readFile(P, 'utf8');
  await writeFile(join(folder, 'pizero-otg.yaml'), text);
  const stack = fileURLToPath(new URL('../../profiles/stacks/pizero-guid.yml', import.meta.url));
  await writeFile(join(folder, 'stacks', 'pizero-guid.yml'), await readFile(stack));
  return join(folder, 'pizero-otg.yaml');
}

const outputCases: Case[] = [
  {
    // Node's recursive mkdir spins for ever there: the case would time out.
    name: '--out under /proc, which makes no folders',
    args: ({ base }) => ['build', P, '--base', base, '--out', '/proc/swarmcard-test/out'],
    says: /\/proc\/swarmcard-test cannot be created: \/proc takes no new folders/,
  },
  {
    name: '--out is a link to nothing',
    args: async ({ dir, base }) => {
      await symlink(join(dir, 'gone'), join(dir, 'dangling'));
      return ['build', P, '--base', base, '--out', join(dir, 'dangling')];
    },
    says: /\/dangling is a symbolic link to \S+\/gone, which does not exist; make that folder or choose another/,
  },
  {
    name: '--out is a file',
    args: async ({ dir, base }) => ['build', P, '--base', base, '--out', await write(join(dir, 'f'), 'x')],
  },
  {
    name: "--out's cluster folder is a file",
    args: async ({ out, base }) => {
      await write(join(out, 'pizero-otg'), 'x');
      return ['build', P, '--base', base, '--out', out];
    },
  },
  {
    name: 'corrupt manifest.json with --only',
    args: async ({ out, base }) => {
      await mkdir(join(out, 'pizero-otg'));
      await write(join(out, 'pizero-otg', 'manifest.json'), '{ not json');
      return ['build', P, '--base', base, '--out', out, '--only', '1'];
    },
  },
  {
    name: 'secrets file is not YAML',
    args: async ({ dir, out, base }) => {
      const profile = await profileCopy(dir);
      await writeFile(join(dir, 'profile', 'pizero-otg.secrets.yaml'), '{ [ :', { mode: 0o600 });
      return ['build', profile, '--base', base, '--out', out];
    },
  },
  {
    name: 'secrets file is a list',
    args: async ({ dir, out, base }) => {
      const profile = await profileCopy(dir);
      await writeFile(join(dir, 'profile', 'pizero-otg.secrets.yaml'), '- a\n- b\n', { mode: 0o600 });
      return ['build', profile, '--base', base, '--out', out];
    },
  },
  {
    name: 'secrets file without a key',
    args: async ({ dir, out, base }) => {
      const profile = await profileCopy(dir);
      await writeFile(join(dir, 'profile', 'pizero-otg.secrets.yaml'), 'wifi: 3\n', { mode: 0o600 });
      return ['build', profile, '--base', base, '--out', out];
    },
  },
  {
    name: 'SWARMCARD_SECRETS_DIR is a file',
    args: async ({ dir, out, base }) => {
      await write(join(dir, 'secrets'), 'x');
      return ['build', P, '--base', base, '--out', out];
    },
    env: { SWARMCARD_SECRETS_DIR: 'secrets' },
  },
];

test('outputs and secrets: files in the way, corrupt state', async (t) => {
  await runAll(t, outputCases);
});

const unprivileged = process.getuid?.() === 0 ? 'root writes to read-only folders anyway' : undefined;
(unprivileged ? test.skip : test)(
  `permissions: an unwritable --out and profile folder${unprivileged ? ` — skipped: ${unprivileged}` : ''}`,
  async (t) => {
    await runAll(t, [
      {
        name: '--out not writable',
        args: async ({ out, base }) => {
          await chmod(out, 0o555);
          return ['build', P, '--base', base, '--out', out];
        },
      },
      {
        name: 'profile folder not writable (secrets)',
        args: async ({ dir, out, base }) => {
          const profile = await profileCopy(dir);
          await chmod(join(dir, 'profile'), 0o555);
          return ['build', profile, '--base', base, '--out', out];
        },
      },
    ]);
  },
);

const notRoot = process.getuid?.() === 0 ? undefined : 'mounting a small or read-only tmpfs needs root';
const disks = "disks: a full and a read-only disk for the output, the profile's secrets and the cache";
(notRoot ? test.skip : test)(`${disks}${notRoot ? ` — skipped: ${notRoot}` : ''}`, async (t) => {
  // A tmpfs of its own per case, unmounted before the case's folder is removed (teardowns run last-first).
  const mount = async (dir: string, options: string) => {
    await mkdir(dir, { recursive: true });
    await execa('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir]);
    t.teardown(() => execa('umount', [dir]).then(() => undefined));
    return dir;
  };
  const xzBase = async (dir: string, base: string) => {
    await execa('xz', ['-T0', '-0', '-c', base], { stdout: { file: join(dir, 'base.img.xz') } });
    return join(dir, 'base.img.xz');
  };
  await runAll(t, [
    {
      name: '--out on a full disk',
      // Smaller than one node image's data: the first clone fails, so no node is written.
      args: async ({ dir, base }) => ['build', P, '--base', base, '--out', await mount(join(dir, 'o'), 'size=200k')],
      says: /No space left on device; free some space or choose another location\.$/,
    },
    {
      name: '--out on a read-only disk',
      args: async ({ dir, base }) => ['build', P, '--base', base, '--out', await mount(join(dir, 'o'), 'ro')],
      says: /\/o\/pizero-otg is on a read-only filesystem; choose a writable location\.$/,
    },
    {
      name: 'profile folder on a read-only disk (the secrets file)',
      args: async ({ dir, out, base }) => {
        await mount(join(dir, 'profile'), 'size=1m');
        const profile = await profileCopy(dir);
        await execa('mount', ['-o', 'remount,ro', join(dir, 'profile')]);
        return ['build', profile, '--base', base, '--out', out];
      },
      says: /pizero-otg\.secrets\.yaml.* is on a read-only filesystem/,
    },
    {
      name: 'cache on a full disk while decompressing the base',
      args: async ({ dir, out, base }) => {
        await mount(join(dir, 'cache'), 'size=100k');
        return ['build', P, '--base', await xzBase(dir, base), '--out', out];
      },
      env: { SWARMCARD_CACHE_DIR: 'cache' },
      says: /the disk holding cache\/images is full; free some space/,
      // The cache's folders and the base's sha256, computed before the disk filled.
      mayLeave: /^cache\/(images\/|hashes\/([0-9a-f]{64})?)$/,
    },
    {
      name: "--out's cluster folder immutable (chattr +i)",
      args: async ({ out, base }) => {
        const cluster = join(out, 'pizero-otg');
        await mkdir(cluster);
        await execa('chattr', ['+i', cluster]);
        t.teardown(() => execa('chattr', ['-i', cluster]).then(() => undefined));
        return ['build', P, '--base', base, '--out', out];
      },
      says: /\/pizero-otg\/\S+ may not be changed \(operation not permitted\); fix its permissions/,
    },
    {
      name: 'cache on a read-only disk',
      args: async ({ dir, out, base }) => {
        await mount(join(dir, 'cache'), 'ro');
        return ['build', P, '--base', await xzBase(dir, base), '--out', out];
      },
      env: { SWARMCARD_CACHE_DIR: 'cache' },
      says: /cache\/\w+ is on a read-only filesystem/,
    },
  ]);
});

/** A built cluster's folder as flash reads it: manifest.json naming one node (its image only if `image`). */
async function clusterDir(out: string, base?: string): Promise<string> {
  const dir = join(out, 'c');
  await mkdir(dir, { recursive: true });
  const nodes = [{ index: 1, hostname: 'worker1', file: '01-worker1.img', size: 205520896 }];
  await writeFile(join(dir, 'manifest.json'), JSON.stringify({ cluster: 'c', nodes }));
  if (base) await writeFile(join(dir, '01-worker1.img'), await readFile(base));
  return dir;
}

const flashCases: Case[] = [
  { name: 'flash without --device', args: ({ base }) => ['flash', base], says: /needs --device/ },
  { name: 'flash --device ""', args: ({ base }) => ['flash', base, '--device', ''], says: /--device is empty/ },
  { name: 'flash --yes=no', args: ({ base }) => ['flash', base, '--device', '/dev/null', '--yes=no'] },
  {
    name: 'flash a missing image',
    args: ({ dir }) => ['flash', join(dir, 'none.img'), '--device', '/dev/null'],
    says: /does not exist/,
  },
  {
    name: 'flash an empty image',
    args: async ({ dir }) => ['flash', await write(join(dir, 'e.img'), ''), '--device', '/dev/null'],
    says: /is empty/,
  },
  {
    name: 'flash a .gz',
    args: async ({ dir }) => [
      'flash',
      await write(join(dir, 'x.img.gz'), Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0])),
      '--device',
      '/dev/null',
    ],
    says: /is a \.gz archive; flash writes \.img, \.img\.xz or \.img\.zst files/,
  },
  {
    name: 'flash a folder without manifest.json',
    args: ({ dir }) => ['flash', dir, '--device', '/dev/null'],
    says: /folder without manifest\.json/,
  },
  {
    name: 'flash a cluster without --node',
    args: async ({ out }) => ['flash', await clusterDir(out), '--device', '/dev/null'],
    says: /is a cluster: say which node to flash with --node N or HOSTNAME \(1 worker1\)/,
  },
  {
    name: 'flash a cluster --node 9',
    args: async ({ out }) => ['flash', await clusterDir(out), '--node', '9', '--device', '/dev/null'],
    says: /has no node "9"; its nodes are 1 worker1/,
  },
  {
    name: 'flash a cluster node whose image is gone',
    args: async ({ out }) => ['flash', await clusterDir(out), '--node', 'worker1', '--device', '/dev/null'],
    says: /node 1 \(worker1\) has no image in/,
  },
  {
    name: 'flash a corrupt manifest.json',
    args: async ({ out }) => {
      await write(join(out, 'manifest.json'), '{ "nodes": 3 }');
      return ['flash', out, '--node', '1', '--device', '/dev/null'];
    },
    says: /is not a swarmcard manifest/,
  },
  {
    name: 'flash an image with --node',
    args: ({ base }) => ['flash', base, '--node', '1', '--device', '/dev/null'],
    says: /--node picks a node of a cluster folder/,
  },
  {
    name: 'flash an image whose bmap is not one',
    args: async ({ dir, base }) => {
      const image = await write(join(dir, 'x.img'), await readFile(base));
      await write(`${image}.bmap`, '<bmap version="2.0"><ImageSize> 1 </ImageSize></bmap>');
      return ['flash', image, '--device', '/dev/null'];
    },
    says: /x\.img\.bmap is not a usable bmap file/,
  },
  {
    name: 'flash onto a file',
    args: async ({ dir, base }) => ['flash', base, '--device', await write(join(dir, 'card'), 'x')],
    says: /is not a disk device/,
  },
  { name: 'flash onto /dev/null', args: ({ base }) => ['flash', base, '--device', '/dev/null'], says: /not a disk/ },
  {
    name: 'flash --station with --device',
    args: async ({ out }) => ['flash', await clusterDir(out), '--station', '--device', '/dev/sdb'],
    says: /--station works on every reader, so it takes no --device/,
  },
  {
    name: 'flash --status of an image',
    args: ({ base }) => ['flash', base, '--status'],
    says: /--status needs a cluster folder/,
  },
  {
    name: 'flash --station and --status',
    args: async ({ out }) => ['flash', await clusterDir(out), '--station', '--status'],
    says: /do not go together/,
  },
  {
    name: 'flash --reflash without --station',
    args: ({ base }) => ['flash', base, '--reflash', '--device', '/dev/null'],
    says: /--reflash is for --station/,
  },
  {
    name: 'flash --station from a pipe',
    args: async ({ out }) => ['flash', await clusterDir(out), '--station'],
    says: /stdin is not a terminal, so swarmcard cannot ask before overwriting the cards; add --yes/,
  },
  {
    name: 'flash --station of a folder without a cluster',
    args: ({ dir }) => ['flash', dir, '--station', '--yes'],
    says: /is not a built cluster/,
  },
  { name: 'drives with an argument', args: () => ['drives', 'x'], says: /takes no arguments/ },
  { name: 'drives --yes', args: () => ['drives', '--yes'], says: /does not take --yes \(flash does\)/ },
  { name: 'build --device', args: () => ['build', P, '--device', '/dev/sdb'], says: /does not take --device/ },
  { name: 'flash --nodes', args: ({ base }) => ['flash', base, '--nodes', '2'], says: /does not take --nodes/ },
];

test('flash and drives: targets, nodes and devices that cannot be flashed', async (t) => {
  await runAll(t, flashCases);
});

/** A server that answers plain http, or cuts a download off half-way. */
async function serve(t: ExecutionContext, handler: Parameters<typeof createServer>[1]): Promise<number> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  server.unref();
  return (server.address() as AddressInfo).port;
}

test('downloads: https to a plain-http server, a download cut off', async (t) => {
  const plain = await serve(t, (_req, res) => res.end('hello'));
  const cut = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-length': String(1 << 20) });
    res.write(Buffer.alloc(4096));
    setTimeout(() => res.destroy(), 50);
  });
  const cache = await scratchDir(t);
  const env = { SWARMCARD_CACHE_DIR: cache };
  await runAll(t, [
    {
      name: 'https to a plain-http server',
      args: () => ['inspect', `https://127.0.0.1:${plain}/x.img`],
      env,
      says: /does not speak TLS/,
    },
    {
      name: 'a URL that serves no image',
      args: () => ['inspect', `http://127.0.0.1:${plain}/notes.txt`],
      env,
      says: /^error: http:\/\/127\.0\.0\.1:\d+\/notes\.txt is neither a disk image nor/,
    },
    {
      name: 'download cut mid-way',
      args: () => ['inspect', `http://127.0.0.1:${cut}/x.img`],
      env,
      says: /broke off/,
    },
  ]);
  t.deepEqual(
    (await tree(cache)).filter((f) => f.endsWith('.partial')),
    [],
  );
});

test('plan --json | cat gets the whole document', async (t) => {
  const r = await swarmcard(['plan', P, '--json', '--nodes', '200']);
  t.is(r.exitCode, 0);
  t.true(r.stdout.length > 65536);
  t.notThrows(() => JSON.parse(r.stdout));
});

test('a failure with --json is one JSON document on stdout too: the error and its exit code', async (t) => {
  const dir = await scratchDir(t);
  const missing = join(dir, 'none.img');
  for (const args of [
    ['plan', P, '--nodes', '0', '--json'],
    ['plan', P, '--json', '--frobnicate'],
    ['inspect', missing, '--json'],
    ['build', P, '--base', missing, '--out', join(dir, 'out'), '--json'],
  ]) {
    const r = await swarmcard(args);
    t.is(r.exitCode, 1, r.stderr);
    const answer = JSON.parse(r.stdout) as { error: { exitCode: number; message: string } };
    t.is(answer.error.exitCode, 1, args.join(' '));
    t.true(r.stderr.includes(`error: ${answer.error.message}`), `the sentence stderr gives: ${r.stderr}`);
  }
  // Without --json, or where a command takes none, stdout stays empty.
  for (const args of [
    ['plan', P, '--nodes', '0'],
    ['validate', P, '--json'],
  ]) {
    const r = await swarmcard(args);
    t.is(r.exitCode, 1, r.stderr);
    t.is(r.stdout, '', args.join(' '));
  }
});

test('each command has its own --help', async (t) => {
  const r = await swarmcard(['build', '--help']);
  t.is(r.exitCode, 0);
  t.regex(r.stdout, /--only LIST/);
  t.regex(r.stdout, /2,4-6/);
  t.regex(r.stdout, /pattern group/);
  const f = await swarmcard(['fixture', '--help']);
  t.regex(f.stdout, /trixie-armhf/);
  const scratch = scratchCopy;
  t.truthy(scratch);
});
