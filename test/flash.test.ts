/**
 * swarmcard drives and swarmcard flash (issue 12). Cards are loop devices over random bytes
 * (flash-lab.ts); lsblk is replayed from recordings under test/flash/ or shown loop devices as
 * cards in a USB reader (fake-lsblk.ts). After a flash the card is read back through the file
 * behind the loop device with the independent readers (fsck.vfat, e2fsck, mtools, debugfs), never
 * through swarmcard. Every refusal is checked to have left the card's bytes as they were.
 *
 * The recordings are lsblk 2.38's `--json --bytes --tree` output for the columns swarmcard asks
 * for, written out for machines this one is not: a laptop (NVMe system disk with EFI, / and swap;
 * a USB reader with a mounted card; a write-protected card; a USB hard disk; an empty reader; a
 * card in the built-in SD slot; /home on LUKS) and a Raspberry Pi 4 running from its SD card.
 */

import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { execa } from 'execa';
import { parseBmap } from '../builder/flash/bmap.js';
import { openExclusive } from '../builder/flash/device.js';
import { classifyDrives, driveRefusal, driveStatus, parseLsblk } from '../builder/flash/drives.js';
import { Slots } from '../builder/flash/source.js';
import { firstBadRange, firstDifference } from '../builder/flash/verify.js';
import { cliPath, swarmcard } from './helpers/cli.js';
import { fixture, scratchCopy, scratchDir } from './helpers/fixtures.js';
import {
  bmapRanges,
  type Card,
  fatClean,
  lsblkOverride,
  privateMounts,
  randomCard,
  sha256,
  throttleWrites,
} from './helpers/flash-lab.js';
import { debugfsCat, e2fsckClean, mtype } from './helpers/independent.js';
import { missingLoop, missingPrograms, testIf } from './helpers/requires.js';

const recordings = fileURLToPath(new URL('../../test/flash/', import.meta.url));
const laptop = join(recordings, 'lsblk-laptop.json');
const pi4 = join(recordings, 'lsblk-pi4.json');
const profile = fileURLToPath(new URL('../../profiles/pizero-otg.yaml', import.meta.url));

const loop = await missingLoop();
const withLoop = testIf(loop ?? (await missingPrograms(['bmaptool', 'fsck.vfat', 'e2fsck', 'xz', 'zstd', 'script'])));
const withBmaptool = testIf(await missingPrograms(['bmaptool']));

/**
 * The first partition's FAT system area (boot sector to the first data cluster), in whole 4 KiB
 * blocks, from the BIOS parameter block as the FAT specification lays it out.
 */
function fatSystemArea(image: Buffer): { start: number; end: number } {
  const start = image.readUInt32LE(446 + 8) * 512;
  const bpb = image.subarray(start, start + 512);
  const sectors = bpb.readUInt16LE(14) + bpb[16]! * (bpb.readUInt16LE(22) || bpb.readUInt32LE(36));
  return { start, end: Math.ceil((start + sectors * bpb.readUInt16LE(11)) / 4096) * 4096 };
}

const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('error: '));

/** Refused with exit 1 and one error line matching `says`, the card's bytes unchanged. */
async function refused(
  t: import('ava').ExecutionContext,
  card: Card,
  args: string[],
  env: Record<string, string>,
  says: RegExp,
  wrap?: string[],
): Promise<void> {
  const before = await sha256(card.file);
  const r = await swarmcard(args, { env, ...(wrap ? { wrap } : {}) });
  const errors = errorLines(r.stderr);
  t.is(r.exitCode, 1, `${args.join(' ')}\n${r.stderr}`);
  t.is(errors.length, 1, r.stderr);
  t.regex(errors[0] ?? '', says);
  t.notRegex(r.stderr, /internal error|^\s+at /m);
  t.is(await sha256(card.file), before, `nothing may be written: ${args.join(' ')}`);
}

test('drives: a recorded laptop and a Pi 4 — the system disks are marked, each card gets its refusal', async (t) => {
  const drives = classifyDrives(parseLsblk(await readFile(laptop, 'utf8')));
  const by = (name: string) => drives.find((d) => d.name === name)!;
  t.deepEqual(
    drives.map((d) => d.name),
    ['sda', 'sdb', 'sdc', 'sdd', 'mmcblk0', 'nvme0n1', 'nvme1n1'],
    'disks only: no optical drive, no partitions at the top',
  );
  t.deepEqual(by('nvme0n1').system, ['/', '/boot/efi', 'EFI system partition', 'swap']);
  t.deepEqual(by('nvme1n1').system, ['/home'], '/home on LUKS marks the disk under it');
  t.deepEqual(by('nvme1n1').holders, ['luks-data (crypt)']);
  for (const name of ['sda', 'sdb', 'sdc', 'sdd', 'mmcblk0']) t.deepEqual(by(name).system, [], name);
  t.true(by('mmcblk0').removable, 'a card in the SD slot is removable though the kernel flag says 0');
  t.false(by('mmcblk0').removableFlag);
  t.false(by('sdc').removable, 'a USB hard disk is hotplug, not removable');
  const options = { unmount: false, forceNonRemovable: false };
  const refusal = (name: string, o = options) => driveRefusal(by(name), o);
  t.regex(refusal('nvme0n1')!, /holds the running system \(\/, \/boot\/efi, EFI system partition, swap\)/);
  t.regex(refusal('nvme0n1', { unmount: true, forceNonRemovable: true })!, /never writes to it/);
  t.regex(refusal('sda')!, /mounted filesystems \(sda1 at \/media\/pi\/bootfs, sda2 at \/media\/pi\/rootfs\)/);
  t.is(refusal('sda', { unmount: true, forceNonRemovable: false }), undefined);
  t.regex(refusal('sdb')!, /read-only \(is the card's write-protect switch on\?\)/);
  t.regex(refusal('sdc')!, /not a removable disk; add --force-non-removable/);
  t.is(refusal('sdc', { unmount: false, forceNonRemovable: true }), undefined);
  t.regex(refusal('sdd')!, /no card in it/);
  t.is(refusal('mmcblk0'), undefined);
  t.is(driveStatus(by('mmcblk0')), 'ready');
  t.regex(driveStatus(by('nvme0n1')), /^system disk .*never written$/);

  const pi = classifyDrives(parseLsblk(await readFile(pi4, 'utf8')));
  t.deepEqual(
    pi.map((d) => [d.name, d.system]),
    [
      ['sda', []],
      ['mmcblk0', ['/', '/boot/firmware']],
    ],
    'the SD card the Pi runs from is its system disk; zram swap is no drive',
  );
});

test('drives: the same facts from lsblk before 2.37 (MOUNTPOINT, "0"/"1" strings)', (t) => {
  const old = JSON.stringify({
    blockdevices: [
      {
        name: 'sda',
        'maj:min': '8:0',
        rm: '1',
        ro: '0',
        size: '31914983424',
        type: 'disk',
        mountpoint: null,
        children: [{ name: 'sda1', 'maj:min': '8:1', rm: '1', size: '1000', type: 'part', mountpoint: '/' }],
      },
    ],
  });
  const [sda] = classifyDrives(parseLsblk(old));
  t.is(sda!.path, '/dev/sda');
  t.is(sda!.size, 31914983424);
  t.true(sda!.removable);
  t.deepEqual(sda!.system, ['/']);
});

withBmaptool(
  'bmap: a bmaptool-made file is read exactly; a changed byte, a newer format, bad counts are refused',
  async (t) => {
    const dir = await scratchDir(t);
    const bmap = join(dir, 'image.img.bmap');
    await execa('bmaptool', ['create', await fixture('trixie-armhf'), '-o', bmap]);
    const text = await readFile(bmap, 'latin1');
    const map = parseBmap(text, bmap);
    t.is(map.imageSize, 205520896);
    t.is(map.blockSize, 4096);
    t.is(map.checksumType, 'sha256');
    t.deepEqual(
      map.ranges.map((r) => ({ start: r.start, end: r.end })),
      await bmapRanges(bmap),
    );
    t.is(
      map.ranges.reduce((n, r) => n + r.last - r.first + 1, 0),
      map.mappedBlocksCount,
    );
    t.true(map.ranges.every((r) => /^[0-9a-f]{64}$/.test(r.checksum ?? '')));
    const first = map.ranges[1]!;
    const changed = text.replace(`> ${first.first}-${first.last} <`, `> ${first.first}-${first.last + 1} <`);
    t.not(changed, text);
    t.throws(() => parseBmap(changed, bmap), {
      message: /is damaged: its own sha256 \(BmapFileChecksum\) does not match/,
    });
    t.throws(() => parseBmap(text.replace('version="2.0"', 'version="3.0"'), bmap), { message: /format 3\.0/ });
    t.throws(() => parseBmap('<html></html>', bmap), { message: /not a usable bmap file/ });
    const noSelfCheck = text.replace(/<BmapFileChecksum>.*<\/BmapFileChecksum>/, '');
    t.throws(() => parseBmap(noSelfCheck.replace(/<BlocksCount> \d+/, '<BlocksCount> 7'), bmap), {
      message: /do not make an image/,
    });
  },
);

test('drives --json and drives through SWARMCARD_LSBLK: what a user sees', async (t) => {
  const dir = await scratchDir(t);
  const env = await lsblkOverride(dir, { recording: laptop });
  const json = await swarmcard(['drives', '--json'], { env });
  t.is(json.exitCode, 0, json.stderr);
  const { drives } = JSON.parse(json.stdout) as { drives: { path: string; system: string[]; status: string }[] };
  t.is(drives.length, 7);
  t.deepEqual(drives.find((d) => d.path === '/dev/nvme0n1')!.system, [
    '/',
    '/boot/efi',
    'EFI system partition',
    'swap',
  ]);
  const text = await swarmcard(['drives'], { env });
  t.is(text.exitCode, 0, text.stderr);
  t.regex(text.stdout, /\/dev\/nvme0n1 .*system disk \(\/, \/boot\/efi, EFI system partition, swap\): never written/);
  t.regex(text.stdout, /\/dev\/sda .*STORAGE DEVICE .*000000000039 .*mounted .*flash needs --unmount/);
  t.regex(text.stdout, /\/dev\/sda1 +512\.0 MiB +vfat "bootfs" +mounted at \/media\/pi\/bootfs/);
  t.regex(text.stdout, /\/dev\/mmcblk0 .* sd .*ready/);
});

withLoop('flash a built cluster node with its bmap: mapped blocks only, fsck clean, files identical', async (t) => {
  const dir = await scratchDir(t);
  const out = join(dir, 'dist');
  const built = await swarmcard([
    'build',
    profile,
    '--base',
    await fixture('trixie-armhf'),
    '--out',
    out,
    '--only',
    '1',
  ]);
  t.is(built.exitCode, 0, built.stderr);
  const cluster = join(out, 'pizero-otg');
  const image = join(cluster, '01-otg1.img');
  await execa('bmaptool', ['create', image, '-o', `${image}.bmap`]);
  const card = await randomCard(t, dir, 200);
  const before = await readFile(card.file);
  const env = await lsblkOverride(dir, { cards: [card.device] });
  const r = await swarmcard(['flash', cluster, '--node', 'otg1', '--device', card.device, '--yes'], { env });
  t.is(r.exitCode, 0, r.stderr);

  const after = await readFile(card.file);
  const want = await readFile(image);
  const written = [...(await bmapRanges(`${image}.bmap`)), fatSystemArea(want)].sort((a, b) => a.start - b.start);
  let at = 0;
  let untouched = 0;
  for (const { start, end } of [...written, { start: want.length, end: want.length }]) {
    if (start > at) {
      t.true(
        after.subarray(at, start).equals(before.subarray(at, start)),
        `bytes ${at}–${start} were not to be written`,
      );
      untouched += start - at;
    }
    t.true(after.subarray(start, end).equals(want.subarray(start, end)), `written bytes ${start}–${end}`);
    at = Math.max(at, end);
  }
  t.true(after.subarray(want.length).equals(before.subarray(want.length)), 'beyond the image');
  t.true(untouched > 150 * 1024 * 1024, 'most of the card was left as it was');
  const fat = await fatClean(card.file);
  t.true(fat.ok, fat.output);
  const ext4 = await e2fsckClean(card.file);
  t.true(ext4.ok, ext4.output);
  for (const file of ['/cmdline.txt', '/config.txt']) t.is(await mtype(card.file, file), await mtype(image, file));
  t.is(await debugfsCat(card.file, '/etc/hostname'), 'otg1\n');
  t.is(await debugfsCat(card.file, '/etc/hosts'), await debugfsCat(image, '/etc/hosts'));
  t.regex(r.stdout, /01-otg1\.img \(node 01 otg1\) +wrote .* of 196\.0 MiB, verified against the bmap's sha256/);
  // The build's clone keeps the unused part of the FAT as holes, so its bmap leaves that out: flash
  // writes the FAT system area too (see the sparse-copy test for why).
  t.regex(r.stdout, /\(and [\d.]+ [KM]iB of FAT system area it left out\)/);
});

withLoop('flash streams a .img.xz without a temporary raw copy; the card equals the image', async (t) => {
  const dir = await scratchDir(t);
  const image = await scratchCopy(t, await fixture('trixie-armhf'), 'node.img');
  const stream = join(dir, 'stream');
  await mkdir(stream);
  await execa('xz', ['-T0', '-1', '-k', image]);
  await rename(`${image}.xz`, join(stream, 'node.img.xz'));
  // Everything swarmcard could put a temporary file in is a 1 MiB tmpfs: not even a sparse raw copy
  // (5.5 MiB of data) fits, and whatever does fit is seen at the end.
  const tiny = join(dir, 'tiny');
  await mkdir(tiny);
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', tiny]);
  t.teardown(() => execa('umount', [tiny], { reject: false }));
  const card = await randomCard(t, dir, 200);
  const before = await readFile(card.file);
  // The real lsblk: a loop device is not removable, so this also checks the override.
  const r = await swarmcard(
    ['flash', join(stream, 'node.img.xz'), '--device', card.device, '--yes', '--force-non-removable'],
    { env: { TMPDIR: tiny, SWARMCARD_TMPDIR: tiny, SWARMCARD_CACHE_DIR: tiny, XDG_CACHE_HOME: tiny } },
  );
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /node\.img\.xz +wrote 196\.0 MiB, verified against the image's sha256/);
  t.regex(r.stderr, /writing node\.img\.xz 100% 196\.0 MiB of 196\.0 MiB \([\d.]+ [KMG]iB\/s, \d+:\d\d\)/);
  const after = await readFile(card.file);
  const want = await readFile(image);
  t.true(after.subarray(0, want.length).equals(want), 'the card holds the image, byte for byte');
  t.true(after.subarray(want.length).equals(before.subarray(want.length)), 'and nothing beyond it');
  t.deepEqual((await execa('ls', ['-A', tiny])).stdout, '', 'nothing was left in the temp space');
});

withLoop(
  'a bmap of a sparse copy leaves the FAT out: bmaptool copy corrupts it, flash (of a .zst) writes it',
  async (t) => {
    const dir = await scratchDir(t);
    const sparse = join(dir, 'sparse.img');
    // cp --sparse=always makes every zero block a hole, as swarmcard's own decompression of a base does.
    await execa('cp', ['--sparse=always', await fixture('trixie-armhf'), sparse]);
    await execa('bmaptool', ['create', sparse, '-o', `${sparse}.bmap`]);
    await execa('zstd', ['-q', sparse, '-o', `${sparse}.zst`]);
    const [a, b] = [await randomCard(t, dir, 200), await randomCard(t, dir, 200)];
    await execa('bmaptool', ['copy', '--bmap', `${sparse}.bmap`, sparse, a.device]);
    t.false((await fatClean(a.file)).ok, 'the premise: the old bytes under the unmapped part of the FAT corrupt it');
    const env = await lsblkOverride(dir, { cards: [b.device] });
    const r = await swarmcard(['flash', `${sparse}.zst`, '--device', b.device, '--yes'], { env });
    t.is(r.exitCode, 0, r.stderr);
    const fat = await fatClean(b.file);
    t.true(fat.ok, fat.output);
    t.regex(
      r.stdout,
      /sparse\.img\.zst .*the bmap's sha256 of each range \(and [\d.]+ [KM]iB of FAT system area it left out\)/,
    );
    t.true((await e2fsckClean(b.file)).ok);
    t.is(await mtype(b.file, '/config.txt'), await mtype(sparse, '/config.txt'));
  },
);

withLoop(
  'a byte changed on the card after writing: exit 1 naming the first bad offset (raw with bmap, .xz)',
  async (t) => {
    const dir = await scratchDir(t);
    const image = await scratchCopy(t, await fixture('trixie-armhf'), 'node.img');
    await execa('bmaptool', ['create', image, '-o', `${image}.bmap`]);
    const card = await randomCard(t, dir, 200);
    const env = await lsblkOverride(dir, { cards: [card.device] });
    // In a mapped range of the root partition (past the FAT areas flash adds), and far into the
    // image for the whole-image check.
    const root = (await readFile(image)).readUInt32LE(446 + 16 + 8) * 512;
    const range = (await bmapRanges(`${image}.bmap`)).find((r) => r.start >= root)!;
    const offset = range.start + 123;
    const bmapRun = await swarmcard(['flash', image, '--device', card.device, '--yes'], {
      env: { ...env, SWARMCARD_TEST_CORRUPT_OFFSET: String(offset) },
    });
    t.is(bmapRun.exitCode, 1, bmapRun.stderr);
    const [first, last] = [range.start / 4096, Math.ceil(range.end / 4096) - 1];
    t.deepEqual(errorLines(bmapRun.stderr), [
      `error: ${card.device} does not hold what was written: the first bad byte is at offset ${offset} ` +
        `(0x${offset.toString(16)}) (bmap blocks ${first}–${last}); ` +
        'the card or reader is faulty, so try another card.',
    ]);
    t.notRegex(bmapRun.stderr, /left incomplete/, 'it was all written; the read-back found the difference');

    const xzDir = join(dir, 'xz');
    await mkdir(xzDir);
    await execa('xz', ['-T0', '-1', '-k', image]);
    await rename(`${image}.xz`, join(xzDir, 'node.img.xz'));
    const far = 123456789;
    const xzRun = await swarmcard(['flash', join(xzDir, 'node.img.xz'), '--device', card.device, '--yes'], {
      env: { ...env, SWARMCARD_TEST_CORRUPT_OFFSET: String(far) },
    });
    t.is(xzRun.exitCode, 1, xzRun.stderr);
    t.regex(errorLines(xzRun.stderr)[0] ?? '', new RegExp(`the first bad byte is at offset ${far} \\(0x75bcd15\\);`));
  },
);

withLoop('the read-back reads the card, not the page cache', async (t) => {
  const dir = await scratchDir(t);
  const card = await randomCard(t, dir, 16);
  const image = join(dir, 'image.img');
  const data = (await readFile(card.file)).subarray(0, 8 * 1024 * 1024);
  await writeFile(image, data);
  // Cache the loop device's bytes, then change the file behind it: the cache is now stale. The cache
  // lives while the device is open (the kernel drops it at the last close), so one reader stays open.
  const buffered = openSync(card.device, 'r');
  t.teardown(() => closeSync(buffered));
  const warm = Buffer.alloc(data.length);
  readSync(buffered, warm, 0, warm.length, 0);
  const offset = 5 * 1024 * 1024 + 77;
  const file = openSync(card.file, 'r+');
  writeSync(file, Buffer.from([data[offset]! ^ 0x5a]), 0, 1, offset);
  fsyncSync(file);
  closeSync(file);
  const cached = Buffer.alloc(1);
  readSync(buffered, cached, 0, 1, offset);
  t.is(cached[0], data[offset], 'the premise: a buffered read still sees the old byte');

  const fh = await openExclusive(card.device);
  try {
    const range = { start: 0, end: data.length, hash: 'sha256', from: 'source' as const };
    const reference = createHash('sha256').update(data).digest('hex');
    const progress = { update: () => undefined, done: () => undefined };
    const options = { slots: new Slots(8), sectorSize: 512 };
    t.is(await firstBadRange(fh, [range], [reference], { ...options, progress }), 0);
    const flashImage = { path: image, name: 'image.img', compression: 'none' as const, size: data.length };
    t.is(await firstDifference(fh, flashImage, range, options), offset);
  } finally {
    await fh.close();
  }
});

withLoop('refusals from recorded lsblk outputs write nothing', async (t) => {
  const dir = await scratchDir(t);
  const image = await fixture('trixie-armhf');
  const card = await randomCard(t, dir, 16);
  const flash = (device = card.device) => ['flash', image, '--device', device, '--yes'];
  const recorded = (map: Record<string, string>, recording = laptop) => lsblkOverride(dir, { recording, map });
  const cases: [string, Record<string, string>, RegExp, string?][] = [
    ['system disk', await recorded({ '/dev/nvme0n1': card.device }), /holds the running system .*never writes to it/],
    [
      'system SD card of a Pi',
      await recorded({ '/dev/mmcblk0': card.device }, pi4),
      /holds the running system \(\/, \/boot\/firmware\)/,
    ],
    ['mounted card', await recorded({ '/dev/sda': card.device }), /has mounted filesystems \(sda1 at .*add --unmount/],
    [
      'read-only card',
      await recorded({ '/dev/sdb': card.device }),
      /is read-only \(is the card's write-protect switch on\?\)/,
    ],
    [
      'non-removable disk',
      await recorded({ '/dev/sdc': card.device }),
      /is not a removable disk; add --force-non-removable/,
    ],
    ['reader without a card', await recorded({ '/dev/sdd': card.device }), /has no card in it/],
    ['vanished device', await recorded({}), /is not there \(no such disk, or the card or reader was removed\)/],
    ['a partition', await recorded({ '/dev/sda1': card.device }), /is a partition of \/dev\/sda; give the whole card/],
  ];
  for (const [name, env, says] of cases) {
    t.log(name);
    await refused(t, card, flash(), env, says);
  }
  // Even told to unmount and to take a non-removable disk, the system disk stays refused.
  await refused(
    t,
    card,
    [...flash(), '--unmount', '--force-non-removable'],
    await recorded({ '/dev/nvme0n1': card.device }),
    /holds the running system/,
  );
});

withLoop('refusals by the real kernel write nothing; --unmount unmounts, then writes', async (t) => {
  const dir = await scratchDir(t);
  const image = await fixture('trixie-armhf');
  const flash = (card: Card, ...more: string[]) => ['flash', image, '--device', card.device, '--yes', ...more];
  const cardEnv = (card: Card) => lsblkOverride(dir, { cards: [card.device] });

  const readOnly = await randomCard(t, dir, 16, { readOnly: true });
  await refused(t, readOnly, flash(readOnly), await cardEnv(readOnly), /is read-only/);

  const small = await randomCard(t, dir, 16);
  await refused(
    t,
    small,
    flash(small),
    await cardEnv(small),
    /needs 196\.0 MiB \(205520896 bytes\) and .* holds only 16\.0 MiB/,
  );

  const plain = await randomCard(t, dir, 200);
  await refused(t, plain, flash(plain), {}, /is not a removable disk; add --force-non-removable/);
  const held = openSync(plain.device, constants.O_RDONLY | constants.O_EXCL);
  try {
    await refused(
      t,
      plain,
      flash(plain),
      await cardEnv(plain),
      /is in use \(mounted, perhaps in another mount namespace .*, or held by another program/,
    );
  } finally {
    closeSync(held);
  }
  await refused(t, plain, ['flash', image, '--device', '/dev/swarmcard-no-such-disk', '--yes'], {}, /is not there/);

  const mounted = await randomCard(t, dir, 200);
  await execa('mkfs.ext4', ['-q', '-F', mounted.device]);
  const point = join(dir, 'mnt');
  await mkdir(point);
  const { wrap, inside } = await privateMounts(t);
  const mount = await inside('mount', '-o', 'ro', mounted.device, point);
  t.is(mount.exitCode, 0, mount.stderr);
  const env = await cardEnv(mounted);
  await refused(
    t,
    mounted,
    flash(mounted),
    env,
    new RegExp(`has mounted filesystems \\(.* at ${point}\\); add --unmount`),
    wrap,
  );
  const r = await swarmcard(flash(mounted, '--unmount'), { env, wrap });
  t.is(r.exitCode, 0, r.stderr);
  t.is((await inside('findmnt', '--source', mounted.device)).exitCode, 1, 'unmounted');
  t.true((await fatClean(mounted.file)).ok);
});

withLoop('a mount racing the write fails while flash holds the card', async (t) => {
  const dir = await scratchDir(t);
  const card = await randomCard(t, dir, 64);
  await execa('mkfs.ext4', ['-q', '-F', card.device]);
  const point = join(dir, 'mnt');
  await mkdir(point);
  t.teardown(() => execa('umount', [point], { reject: false }));
  const fh = await openExclusive(card.device);
  const racing = await execa('mount', ['-o', 'ro', card.device, point], { reject: false });
  await fh.close();
  t.not(racing.exitCode, 0, 'the mount must fail while the card is held');
  t.regex(racing.stderr, /busy/i);
  const after = await execa('mount', ['-o', 'ro', card.device, point], { reject: false });
  t.is(after.exitCode, 0, `and succeed once it is released: ${after.stderr}`);
});

withLoop('confirmation: never from a pipe; on a terminal "n" writes nothing and "yes" writes', async (t) => {
  const dir = await scratchDir(t);
  const image = await fixture('trixie-armhf');
  const card = await randomCard(t, dir, 200);
  const env = await lsblkOverride(dir, { cards: [card.device] });
  const before = await sha256(card.file);
  const piped = await execa('node', [cliPath, 'flash', image, '--device', card.device], {
    input: 'yes\n',
    env: { ...env, NO_COLOR: '1' },
    reject: false,
  });
  t.is(piped.exitCode, 1);
  t.deepEqual(errorLines(piped.stderr), [
    `error: stdin is not a terminal, so swarmcard cannot ask before overwriting ${card.device}; ` +
      'add --yes to write without asking.',
  ]);
  t.is(await sha256(card.file), before);
  // script(1) runs the command on a pseudo-terminal and types what it reads.
  const onTerminal = (answer: string) =>
    execa('script', ['-qec', `node ${cliPath} flash ${image} --device ${card.device}`, '/dev/null'], {
      input: answer,
      env: { ...env, NO_COLOR: '1' },
      reject: false,
    });
  const no = await onTerminal('n\n');
  t.is(no.exitCode, 1, no.stdout);
  t.regex(no.stdout, /Test Reader, 200\.0 MiB, serial TESTCARD0, usb, backed by .*\r?\n/);
  t.regex(no.stdout, /Everything on it will be replaced by trixie-armhf\.img\.\r?\nWrite \/dev\/loop\d+\? \[y\/N\]/);
  t.regex(no.stdout, /error: nothing was written: overwriting .* was not confirmed\./);
  t.is(await sha256(card.file), before);
  const yes = await onTerminal('yes\n');
  t.is(yes.exitCode, 0, yes.stdout);
  t.not(await sha256(card.file), before);
  t.true((await fatClean(card.file)).ok);
});

withLoop('swarmcard drives shows the test cards and marks the system disk', async (t) => {
  const dir = await scratchDir(t);
  const card = await randomCard(t, dir, 32);
  const env = await lsblkOverride(dir, { cards: [card.device] });
  const r = await swarmcard(['drives'], { env });
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`${card.device} +32\\.0 MiB +usb +yes +no +Generic Test Reader +TESTCARD0 +ready`));
  const json = JSON.parse((await swarmcard(['drives', '--json'], { env })).stdout) as {
    drives: { path: string; system: string[]; backingFile?: string }[];
  };
  t.is(json.drives.find((d) => d.path === card.device)?.backingFile, card.file);
  // Where / is a block device (not an overlay), its disk is marked and never offered.
  const root = await execa('findmnt', ['-n', '-o', 'MAJ:MIN', '/'], { reject: false });
  const system = json.drives.filter((d) => d.system.includes('/'));
  if (root.stdout.trim().startsWith('0:')) t.is(system.length, 0);
  else {
    t.is(system.length, 1, r.stdout);
    t.regex(r.stdout, new RegExp(`${system[0]!.path} .*system disk \\(.*\\): never written`));
  }
});

/** Poll until `check` holds (or fail after `ms`). */
async function waitFor(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface LogLine {
  event: string;
  id: string;
  node?: number;
  device?: string;
  serial?: string;
  result?: string;
}

withLoop('burn station: 5 nodes, two readers, scripted cards, Ctrl-C, resume, a re-inserted card', async (t) => {
  const dir = await scratchDir(t);
  const out = join(dir, 'dist');
  const built = await swarmcard([
    'build',
    profile,
    '--base',
    await fixture('trixie-armhf'),
    '--out',
    out,
    '--nodes',
    '4',
  ]);
  t.is(built.exitCode, 0, built.stderr);
  const cluster = join(out, 'pizero-otg');
  const files = ['00-otghost1', '01-otg1', '02-otg2', '03-otg3', '04-otg4'].map((f) => join(cluster, `${f}.img`));
  for (const image of files) await execa('bmaptool', ['create', image, '-o', `${image}.bmap`]);
  const [a, b] = [await randomCard(t, dir, 200), await randomCard(t, dir, 200)];
  const inserted = join(dir, 'inserted');
  await writeFile(inserted, '');
  const slots = new Map<string, string>();
  // Cards go in together (one write of the list), so two readers start in the same poll.
  const insert = async (...cards: [Card, string, string?][]) => {
    for (const [card, serial, content] of cards) {
      if (content) await copyFile(content, card.file);
      else await writeFile(card.file, randomBytes(200 * 1024 * 1024));
      slots.set(card.device, serial);
    }
    await writeFile(inserted, [...slots].map(([device, s]) => `${device} ${s}\n`).join(''));
  };
  const remove = async (card: Card) => {
    slots.delete(card.device);
    await writeFile(inserted, [...slots].map(([device, s]) => `${device} ${s}\n`).join(''));
  };
  const env = {
    ...(await lsblkOverride(dir, { cards: [a.device, b.device] })),
    FAKE_LSBLK_INSERTED: inserted,
    SWARMCARD_STATION_POLL_MS: '200',
    NO_COLOR: '1',
  };
  const log = async (): Promise<LogLine[]> =>
    (await readFile(join(cluster, 'flash-log.jsonl'), 'utf8').catch(() => ''))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as LogLine);
  const ends = async (result: string) => (await log()).filter((l) => l.event === 'end' && l.result === result);
  const station = () => {
    const child = execa('node', [cliPath, 'flash', cluster, '--station', '--yes'], { env, reject: false, all: true });
    let said = '';
    child.all?.on('data', (chunk: Buffer) => {
      said += chunk.toString();
    });
    t.teardown(() => {
      child.kill('SIGKILL');
    });
    return { child, said: () => said };
  };

  // Two readers, two cards at once; then two more.
  const first = station();
  await waitFor('the station to start', async () => first.said().includes('insert cards'));
  await insert([a, 'CARD-A1'], [b, 'CARD-B1']);
  await waitFor('two verified cards', async () => (await ends('verified')).length === 2);
  const starts = (await log()).filter((l) => l.event === 'start');
  t.deepEqual(starts.map((l) => l.node).sort(), [0, 1], 'two readers at once never get the same node');
  const a1 = join(dir, 'a1.bin');
  await copyFile(a.file, a1);
  await remove(a);
  await remove(b);
  await insert([a, 'CARD-A2'], [b, 'CARD-B2']);
  await waitFor('four verified cards', async () => (await ends('verified')).length === 4);
  await remove(a);
  await remove(b);

  // Ctrl-C while the fifth card is written: the log says incomplete.
  // The card is slowed to 1 MB/s, so the write is surely still going when Ctrl-C comes.
  const unthrottle = await throttleWrites(a.device, 1_000_000);
  t.teardown(async () => unthrottle?.());
  if (!unthrottle) await execa('rm', [`${files[4]}.bmap`]); // no throttling here: the whole image takes longer
  await insert([a, 'CARD-A3']);
  await waitFor('the fifth card to start', async () => (await log()).some((l) => l.event === 'start' && l.node === 4));
  first.child.kill('SIGINT');
  const stopped = await first.child;
  await unthrottle?.();
  t.is(stopped.exitCode, 130, first.said());
  t.deepEqual(
    (await ends('incomplete')).map((l) => (l.id ? 'incomplete' : '')),
    ['incomplete'],
    'the interrupted card is in the log as incomplete',
  );
  const lines = first.said().split('\n');
  const removeLines = lines.filter((l) => l.startsWith('remove the card in'));
  t.is(removeLines.length, 4, first.said());
  t.regex(
    removeLines[0]!,
    /^remove the card in \/dev\/loop\d+ \(Generic Test Reader\): it is 0[01] otg(host)?1 — label it$/,
  );

  // Resume: node 4 is offered again; a re-inserted card that holds a verified node is left alone.
  const second = station();
  await waitFor('the station to resume', async () => second.said().includes('insert cards'));
  t.regex(second.said(), /1 node\(s\) left: 04 otg4/);
  t.regex(second.said(), new RegExp(`${a.device} .* was there before the station started`));
  await remove(a);
  await new Promise((r) => setTimeout(r, 1000)); // a few polls: the station sees the reader empty
  const before = await sha256(a1);
  await insert([a, 'CARD-A1', a1]);
  await waitFor('the card to be recognised', async () => second.said().includes('already holds'));
  t.regex(
    second.said(),
    new RegExp(`the card in ${a.device} already holds 0[01] otg(host)?1 \\(verified\\); not overwritten`),
  );
  t.is(await sha256(a.file), before, 'the recognised card was not written');
  await insert([b, 'CARD-B3']);
  const done = await second.child;
  t.is(done.exitCode, 0, second.said());
  t.regex(second.said(), /all 5 node\(s\) of .* are flashed and verified/);
  t.is(await debugfsCat(b.file, '/etc/hostname'), 'otg4\n');
  t.true((await fatClean(b.file)).ok);

  const all = await log();
  const verified = all.filter((l) => l.event === 'end' && l.result === 'verified').map((l) => l.id);
  const cards = all
    .filter((l) => l.event === 'start' && verified.includes(l.id))
    .map((l) => `${l.node} ${l.serial}`)
    .sort();
  t.deepEqual(
    cards.map((c) => c.split(' ')[0]),
    ['0', '1', '2', '3', '4'],
  );
  t.true(cards.includes('4 CARD-B3'));
  const status = await swarmcard(['flash', cluster, '--status']);
  t.is(status.exitCode, 0, status.stderr);
  t.regex(status.stdout, /5 node\(s\), 5 flashed and verified\n/);
  t.regex(status.stdout, /04 otg4 +verified .* in \/dev\/loop\d+: Generic Test Reader, serial CARD-B3, 200\.0 MiB/);
});

withLoop("a cluster node from the manifest's artifacts: raw gone, so the .xz, with the raw image's bmap", async (t) => {
  const dir = await scratchDir(t);
  const cluster = join(dir, 'c');
  await mkdir(cluster);
  const raw = join(cluster, '01-worker1.img');
  await execa('cp', [await fixture('trixie-armhf'), raw]);
  const sha = await sha256(raw);
  await execa('bmaptool', ['create', raw, '-o', `${raw}.bmap`]);
  await execa('xz', ['-T0', '-1', '-k', raw]);
  await execa('zstd', ['-q', raw, '-o', `${raw}.zst`]);
  await execa('rm', [raw]);
  const artifacts = [
    { kind: 'raw', file: '01-worker1.img' },
    { kind: 'zst', file: '01-worker1.img.zst' },
    { kind: 'xz', file: '01-worker1.img.xz' },
    { kind: 'bmap', file: '01-worker1.img.bmap' },
  ];
  const node = { index: 1, hostname: 'worker1', file: '01-worker1.img', sha256: sha, size: 205520896, artifacts };
  await writeFile(join(cluster, 'manifest.json'), JSON.stringify({ cluster: 'c', nodes: [node] }));
  const card = await randomCard(t, dir, 200);
  const env = await lsblkOverride(dir, { cards: [card.device] });
  const r = await swarmcard(['flash', cluster, '--node', '1', '--device', card.device, '--yes'], { env });
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /01-worker1\.img\.xz \(node 01 worker1\) +wrote .* of 196\.0 MiB, verified against the bmap's/);
  t.true((await fatClean(card.file)).ok);
  t.true((await e2fsckClean(card.file)).ok);
});
