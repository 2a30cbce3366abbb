/** `swarmcard inspect` on every fixture flavour and on bad inputs, through the real CLI. */

import { open, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { flavourNames } from '../builder/fixture/flavours.js';
import type { ImageReport } from '../builder/image/inspect.js';
import { swarmcard } from './helpers/cli.js';
import { fixture, scratchCopy, scratchDir } from './helpers/fixtures.js';

const expected = {
  'jessie-armhf': {
    codename: 'jessie',
    arch: 'armhf',
    bootMount: '/boot',
    network: 'dhcpcd',
    firstBoot: 'init_resize',
    machineId: 'empty',
    root: '/dev/mmcblk0p2',
  },
  'bullseye-armhf': {
    codename: 'bullseye',
    arch: 'armhf',
    bootMount: '/boot',
    network: 'dhcpcd',
    firstBoot: 'raspberrypi-sys-mods',
    machineId: 'empty',
    root: 'PARTUUID=7a1e0b11-02',
  },
  'bullseye-arm64': {
    codename: 'bullseye',
    arch: 'arm64',
    bootMount: '/boot',
    network: 'dhcpcd',
    firstBoot: 'raspberrypi-sys-mods',
    machineId: 'empty',
    root: 'PARTUUID=7a1e0c11-02',
  },
  'bookworm-armhf': {
    codename: 'bookworm',
    arch: 'armhf',
    bootMount: '/boot/firmware',
    network: 'networkmanager',
    firstBoot: 'raspberrypi-sys-mods',
    machineId: 'empty',
    root: 'PARTUUID=4e5cd302-02',
  },
  'bookworm-arm64': {
    codename: 'bookworm',
    arch: 'arm64',
    bootMount: '/boot/firmware',
    network: 'networkmanager',
    firstBoot: 'raspberrypi-sys-mods',
    machineId: 'empty',
    root: 'PARTUUID=4e5cd402-02',
  },
  'trixie-armhf': {
    codename: 'trixie',
    arch: 'armhf',
    bootMount: '/boot/firmware',
    network: 'networkmanager',
    firstBoot: 'rpi-resize',
    machineId: 'uninitialized',
    root: 'PARTUUID=93b1f4a7-02',
  },
  'trixie-arm64': {
    codename: 'trixie',
    arch: 'arm64',
    bootMount: '/boot/firmware',
    network: 'networkmanager',
    firstBoot: 'rpi-resize',
    machineId: 'uninitialized',
    root: 'PARTUUID=93b1f5a7-02',
  },
} as const;

for (const name of flavourNames) {
  test(`inspect --json is correct on ${name}`, async (t) => {
    const image = await fixture(name);
    const result = await swarmcard(['inspect', image, '--json']);
    t.is(result.exitCode, 0, result.stderr);
    const report = JSON.parse(result.stdout) as ImageReport; // stdout is exactly one JSON document
    const want = expected[name];
    t.is(report.release.codename, want.codename);
    t.is(report.arch.arch, want.arch);
    t.is(report.arch.bootableModels.includes('pi0'), want.arch === 'armhf', 'only armhf boots a Pi Zero');
    t.true(report.arch.bootableModels.includes('pi4'));
    t.is(report.bootMount, want.bootMount);
    t.is(report.network.active, want.network);
    t.is(report.network.cloudInit.installed, want.codename === 'trixie');
    t.is(
      report.network.networkManager.installed,
      want.codename !== 'jessie',
      'bullseye has NetworkManager installed but disabled',
    );
    t.is(report.firstBoot.mechanism, want.firstBoot);
    t.is(report.identity.machineId, want.machineId);
    t.is(report.cmdline.root, want.root);
    t.is(report.hostname, 'raspberrypi');
    t.deepEqual(
      report.partitions.map((p) => p.role),
      ['boot', 'root'],
    );
    t.is(report.partitions[0]!.label, want.codename === 'bookworm' || want.codename === 'trixie' ? 'bootfs' : 'boot');
    t.is(report.ext4.features.includes('metadata_csum'), want.codename !== 'jessie');
    t.is(report.ext4.features.includes('orphan_file'), want.codename === 'trixie');
    t.deepEqual(report.ext4.unsupported, []);
    t.is(
      report.ssh.hostKeyRegeneration,
      want.codename === 'trixie' ? 'cloud-init (ssh module)' : 'regenerate_ssh_host_keys.service',
      'what recreates SSH host keys',
    );
    t.deepEqual(report.warnings, [], 'a fresh image is clean');
    if (want.codename === 'bookworm' || want.codename === 'trixie') {
      t.deepEqual(report.config.at(-1), { filter: 'cm5', settings: ['dtoverlay=dwc2,dr_mode=host'] });
    }
  });
}

test('inspect prints a readable report and warns about every clone-hygiene problem', async (t) => {
  const result = await swarmcard(['inspect', await fixture('bookworm-armhf', { booted: true })]);
  t.is(result.exitCode, 0);
  t.regex(result.stdout, /release\s+bookworm/);
  t.regex(result.stdout, /architecture\s+armhf/);
  for (const problem of [
    /machine-id is set/,
    /dbus\/machine-id is present/,
    /SSH host keys are present/,
    /engine-id/,
    /key\.json/,
    /docker\/swarm/,
    /\/var\/lib\/cloud is not empty/,
  ]) {
    t.regex(result.stderr, problem);
  }
});

test('inspect flags trixie with an empty machine-id (it skips the resize)', async (t) => {
  const image = await scratchCopy(t, await fixture('trixie-arm64'));
  const { root } = await offsets(image);
  const dir = await scratchDir(t);
  await writeFile(join(dir, 'cmds'), 'rm /etc/machine-id\ncd /etc\nwrite /dev/null machine-id\n');
  await execa('debugfs', ['-w', '-f', join(dir, 'cmds'), `${image}?offset=${root}`]);
  const report = JSON.parse((await swarmcard(['inspect', image, '--json'])).stdout) as ImageReport;
  t.is(report.identity.machineId, 'empty');
  t.true(report.warnings.some((w) => /must read "uninitialized"/.test(w)));
});

async function offsets(image: string) {
  const { stdout } = await execa('sfdisk', ['--json', image]);
  const parts = (JSON.parse(stdout) as { partitiontable: { partitions: { start: number }[] } }).partitiontable
    .partitions;
  return { boot: parts[0]!.start * 512, root: parts[1]!.start * 512 };
}

/** Each bad input: exit 1, one line on stderr that names the file and says what to do, nothing on stdout. */
async function badInput(t: import('ava').ExecutionContext, image: string, message: RegExp) {
  const result = await swarmcard(['inspect', image]);
  t.is(result.exitCode, 1, result.stderr);
  t.is(result.stdout, '');
  const lines = result.stderr.trim().split('\n');
  t.is(lines.length, 1, result.stderr);
  t.regex(lines[0]!, /^error: /);
  t.true(lines[0]!.includes(image), 'names the file');
  t.regex(lines[0]!, message);
}

test('bad input: a missing file', async (t) => {
  await badInput(
    t,
    join(await scratchDir(t), 'nothere.img'),
    /does not exist; give the path of a Raspberry Pi OS image/,
  );
});

test('bad input: a truncated image', async (t) => {
  const image = await scratchCopy(t, await fixture('bookworm-armhf'));
  await truncate(image, 100 * 1024 * 1024);
  await badInput(
    t,
    image,
    /is truncated: its partition table needs \d+ bytes but the file has 104857600; download or decompress it again\./,
  );
});

test('bad input: no partition table', async (t) => {
  const image = join(await scratchDir(t), 'blank.img');
  await writeFile(image, Buffer.alloc(4 * 1024 * 1024));
  await badInput(t, image, /has no partition table/);
});

test('bad input: a GPT disk', async (t) => {
  const image = join(await scratchDir(t), 'gpt.img');
  await writeFile(image, '');
  await truncate(image, 64 * 1024 * 1024);
  await execa('sfdisk', ['--quiet', image], { input: 'label: gpt\nstart=2048, size=20000, type=linux\n' });
  await badInput(t, image, /has a GPT partition table; Raspberry Pi OS images use MBR/);
});

test('bad input: partitions that are not Raspberry Pi OS', async (t) => {
  const image = join(await scratchDir(t), 'linux.img');
  await writeFile(image, '');
  await truncate(image, 64 * 1024 * 1024);
  await execa('sfdisk', ['--quiet', image], { input: 'label: dos\nstart=2048, size=100000, type=83\n' });
  await badInput(t, image, /is not a Raspberry Pi OS image: it needs a FAT boot partition and a Linux root partition/);
});

test('bad input: a FAT + ext4 disk without Raspberry Pi OS on it', async (t) => {
  const image = await scratchCopy(t, await fixture('bookworm-armhf'));
  const { boot } = await offsets(image);
  await execa('mdel', ['-i', `${image}@@${boot}`, '::/cmdline.txt'], { env: { MTOOLS_SKIP_CHECK: '1' } });
  await badInput(t, image, /is not a Raspberry Pi OS image: its boot partition has no cmdline\.txt/);
});

test('bad input: an ext4 filesystem marked as needing recovery is refused for writing', async (t) => {
  const image = await scratchCopy(t, await fixture('bookworm-armhf'));
  const { root } = await offsets(image);
  // Set the needs_recovery flag (incompat bit 0x4) in the superblock by hand.
  const handle = await open(image, 'r+');
  const word = Buffer.alloc(4);
  await handle.read(word, 0, 4, root + 1024 + 96);
  word.writeUInt32LE(word.readUInt32LE(0) | 0x4);
  await handle.write(word, 0, 4, root + 1024 + 96);
  await handle.close();
  const result = await swarmcard(['inspect', image, '--json']);
  t.is(result.exitCode, 0, 'inspect still reads it');
  t.true((JSON.parse(result.stdout) as ImageReport).warnings.some((w) => /needs journal recovery/.test(w)));
});

test('usage errors exit 1 with one sentence', async (t) => {
  const result = await swarmcard(['inspect']);
  t.is(result.exitCode, 1);
  t.regex(result.stderr, /^error: swarmcard inspect takes IMAGE, not 0/);
  const bare = await swarmcard([]);
  t.is(bare.exitCode, 1, 'no command is a mistake');
  t.is(bare.stdout, '');
  t.regex(bare.stderr, /^usage: swarmcard <command>[\s\S]*\nerror: no command given; run one of the commands above/);
  const asked = await swarmcard(['--help']);
  t.is(asked.exitCode, 0);
  t.regex(asked.stdout, /^usage: swarmcard <command>/);
  const unknown = await swarmcard(['frobnicate']);
  t.is(unknown.exitCode, 1);
  t.regex(unknown.stderr, /"frobnicate" is not a swarmcard command/);
  const option = await swarmcard(['inspect', 'x.img', '--bogus']);
  t.is(option.exitCode, 1);
  t.regex(option.stderr, /--bogus is not a swarmcard option/);
});

test('inspect reads a compressed image through the cache', async (t) => {
  const dir = await scratchDir(t);
  const archive = join(dir, 'raspios-trixie-arm64-lite.img.xz');
  await execa('sh', ['-c', 'xz -T0 -c "$0" > "$1"', await fixture('trixie-arm64'), archive]);
  const result = await swarmcard(['inspect', archive, '--json'], { env: { SWARMCARD_CACHE_DIR: join(dir, 'cache') } });
  t.is(result.exitCode, 0, result.stderr);
  const report = JSON.parse(result.stdout) as ImageReport;
  t.is(report.path, archive);
  t.is(report.release.codename, 'trixie');
  t.regex(result.stderr, /decompressing raspios-trixie-arm64-lite\.img\.xz/, 'progress on stderr');
});
