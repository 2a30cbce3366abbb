/** Pure code: parsers and text edits, no I/O. */
import test from 'ava';
import { toUserError, UserError } from '../builder/errors.js';
import { ToolError } from '../builder/exec/run.js';
import { elfStub } from '../builder/fixture/flavours.js';
import { parseElf } from '../builder/formats/elf.js';
import { assertWritable, parseExt4Superblock, unsupportedFeatures } from '../builder/formats/ext4-superblock.js';
import { parseDiskId, parseMbr, partUuid, withDiskId } from '../builder/formats/mbr.js';
import type { FileStat } from '../builder/fs/editor.js';
import { parseDebugfsStat } from '../builder/fs/ext4-debugfs.js';
import { canonicalPath, normalizePath } from '../builder/fs/paths.js';
import { detectCompression } from '../builder/source/base-image.js';
import { closest } from '../builder/text/closest.js';
import { addToList, formatCmdline, getToken, parseCmdline, removeToken, setToken } from '../builder/text/cmdline.js';
import { configSettings, parseConfigTxt } from '../builder/text/config-txt.js';
import { parseFstab, parseOsRelease, replacePartUuids } from '../builder/text/etc-files.js';
import { getMarkedBlock, setMarkedBlock } from '../builder/text/marked-block.js';

function mbr(entries: { type: number; start: number; sectors: number }[], diskId = 0x1234abcd): Buffer {
  const sector = Buffer.alloc(512);
  sector.writeUInt32LE(diskId, 440);
  entries.forEach((e, i) => {
    const at = 446 + i * 16;
    sector[at + 4] = e.type;
    sector.writeUInt32LE(e.start, at + 8);
    sector.writeUInt32LE(e.sectors, at + 12);
  });
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

test('MBR: disk id and partitions are read', (t) => {
  const parsed = parseMbr(
    mbr([
      { type: 0x0c, start: 8192, sectors: 1000 },
      { type: 0x83, start: 9192, sectors: 5000 },
    ]),
    'x.img',
  );
  t.is(parsed.diskId, 0x1234abcd);
  t.deepEqual(
    parsed.partitions.map((p) => [p.number, p.type, p.offset, p.size]),
    [
      [1, 0x0c, 8192 * 512, 1000 * 512],
      [2, 0x83, 9192 * 512, 5000 * 512],
    ],
  );
  t.is(partUuid(parsed.diskId, 2), '1234abcd-02');
});

test('MBR: bad tables give one clear sentence', (t) => {
  t.throws(() => parseMbr(Buffer.alloc(512), 'a.img'), {
    instanceOf: UserError,
    message: /a\.img has no partition table/,
  });
  t.throws(() => parseMbr(mbr([{ type: 0xee, start: 1, sectors: 100 }]), 'g.img'), {
    instanceOf: UserError,
    message: /GPT/,
  });
  t.throws(() => parseMbr(mbr([]), 'e.img'), { message: /empty partition table/ });
  t.throws(() => parseMbr(Buffer.alloc(10), 's.img'), { message: /shorter than one sector/ });
});

test('MBR: a new disk id changes exactly the 4 bytes at offset 440', (t) => {
  const before = mbr([{ type: 0x0c, start: 8192, sectors: 10 }]);
  const after = withDiskId(before, 0xdeadbeef);
  t.is(parseMbr(after, 'x').diskId, 0xdeadbeef);
  const diff = [...before].map((b, i) => (b === after[i] ? -1 : i)).filter((i) => i >= 0);
  t.true(diff.every((i) => i >= 440 && i < 444));
  t.is(parseDiskId('0xDEADBEEF'), 0xdeadbeef);
  t.throws(() => parseDiskId('xyz'), { message: /8 hex digits/ });
});

test('ELF: armhf and arm64 are told apart', (t) => {
  t.deepEqual(parseElf(elfStub('armhf')), { arch: 'armhf', bits: 32, machine: 40 });
  t.deepEqual(parseElf(elfStub('arm64')), { arch: 'arm64', bits: 64, machine: 183 });
  t.is(parseElf(Buffer.from('#!/bin/sh\n')), undefined);
});

function superblock(compat: number, incompat: number, roCompat: number): Buffer {
  const sb = Buffer.alloc(1024);
  sb.writeUInt16LE(0xef53, 56);
  sb.writeUInt32LE(compat, 92);
  sb.writeUInt32LE(incompat, 96);
  sb.writeUInt32LE(roCompat, 100);
  sb.write('rootfs', 120);
  return sb;
}

test('ext4: features are decoded and checked against the e2fsprogs version', (t) => {
  const sb = parseExt4Superblock(superblock(0x4 | 0x1000, 0x2 | 0x40, 0x400))!;
  t.is(sb.label, 'rootfs');
  t.deepEqual(
    sb.features.map((f) => f.name),
    ['has_journal', 'orphan_file', 'filetype', 'extent', 'metadata_csum'],
  );
  t.deepEqual(unsupportedFeatures(sb, '1.47.0'), []);
  t.deepEqual(
    unsupportedFeatures(sb, '1.46.2').map((f) => f.name),
    ['orphan_file'],
  );
  t.deepEqual(
    unsupportedFeatures(sb, '1.42.9').map((f) => f.name),
    ['orphan_file', 'metadata_csum'],
  );
  t.throws(() => assertWritable(sb, '1.46.2', 'pi.img'), {
    instanceOf: UserError,
    message: /orphan_file.*e2fsprogs 1\.46\.2.*install e2fsprogs 1\.47 or newer/,
  });
  t.notThrows(() => assertWritable(sb, '1.47.0', 'pi.img'));
  const unknown = parseExt4Superblock(superblock(0, 0x80000000, 0))!;
  t.throws(() => assertWritable(unknown, '1.47.0', 'pi.img'), {
    message: /unknown_incompat_0x80000000.*no known e2fsprogs/,
  });
  const dirty = parseExt4Superblock(superblock(0x4, 0x4 | 0x40, 0))!;
  t.throws(() => assertWritable(dirty, '1.47.0', 'pi.img'), { message: /journal needs recovery/ });
  t.is(parseExt4Superblock(Buffer.alloc(1024)), undefined);
});

test('cmdline.txt: tokens are edited in place on one line, init= stays last', (t) => {
  const tokens = parseCmdline(
    'console=serial0,115200 root=PARTUUID=abcd-02 rootwait init=/usr/lib/raspberrypi-sys-mods/firstboot\n' +
      'ignored second line\n',
  );
  t.is(getToken(tokens, 'root'), 'PARTUUID=abcd-02');
  const edited = addToList(setToken(tokens, 'g_ether.host_addr', '00:22:82:ff:ff:01'), 'modules-load', [
    'dwc2',
    'g_ether',
  ]);
  t.is(
    formatCmdline(edited),
    'console=serial0,115200 root=PARTUUID=abcd-02 rootwait g_ether.host_addr=00:22:82:ff:ff:01 ' +
      'modules-load=dwc2,g_ether init=/usr/lib/raspberrypi-sys-mods/firstboot\n',
  );
  t.deepEqual(addToList(edited, 'modules-load', ['g_ether']), edited, 'adding again changes nothing');
  t.deepEqual(setToken(['a=1', 'b', 'a=2'], 'a', '3'), ['a=3', 'b'], 'duplicates collapse');
  t.deepEqual(removeToken(edited, 'init').at(-1), 'modules-load=dwc2,g_ether');
  t.deepEqual(setToken(['quiet'], 'splash'), ['quiet', 'splash']);
  t.is(getToken(['quiet'], 'quiet'), '');
});

const bookwormConfig = 'dtparam=audio=on\n# comment\n\n[cm4]\notg_mode=1\n\n[cm5]\ndtoverlay=dwc2,dr_mode=host\n';

test('config.txt: sections are parsed; a marked block carries its own [all]', (t) => {
  const sections = parseConfigTxt(bookwormConfig);
  t.deepEqual(
    sections.map((s) => s.filter),
    [undefined, 'cm4', 'cm5'],
  );
  t.deepEqual(configSettings(sections), [
    { filter: '(global)', settings: ['dtparam=audio=on'] },
    { filter: 'cm4', settings: ['otg_mode=1'] },
    { filter: 'cm5', settings: ['dtoverlay=dwc2,dr_mode=host'] },
  ]);
  const once = setMarkedBlock(bookwormConfig, ['dtoverlay=dwc2', 'gpu_mem=16'], { id: 'otg', section: 'all' });
  const twice = setMarkedBlock(once, ['dtoverlay=dwc2', 'gpu_mem=16'], { id: 'otg', section: 'all' });
  t.is(once, twice, 'idempotent');
  const last = parseConfigTxt(once).at(-1)!;
  t.is(last.filter, 'all');
  t.true(last.lines.includes('dtoverlay=dwc2'));
  t.deepEqual(getMarkedBlock(once, { id: 'otg' }), ['[all]', 'dtoverlay=dwc2', 'gpu_mem=16']);
  const replaced = setMarkedBlock(once, ['gpu_mem=32'], { id: 'otg', section: 'all' });
  t.deepEqual(getMarkedBlock(replaced, { id: 'otg' }), ['[all]', 'gpu_mem=32']);
  t.is(setMarkedBlock('', ['x'], { id: 'a' }), '# BEGIN swarmcard a\nx\n# END swarmcard a\n');
});

test('os-release: quoted values; jessie has no VERSION_CODENAME', (t) => {
  const r = parseOsRelease(
    'PRETTY_NAME="Raspbian GNU/Linux 8 (jessie)"\nVERSION_ID="8"\nVERSION="8 (jessie)"\nID=raspbian\n',
  );
  t.is(r.ID, 'raspbian');
  t.is(r.VERSION, '8 (jessie)');
  t.is(r.VERSION_CODENAME, undefined);
});

test('fstab: entries and PARTUUID rewrites keep everything else', (t) => {
  const text =
    'proc /proc proc defaults 0 0\nPARTUUID=4e5cd302-01  /boot/firmware  vfat defaults 0 2\n' +
    '# PARTUUID=ffffffff-02 comment\n';
  t.deepEqual(
    parseFstab(text).map((e) => e.file),
    ['/proc', '/boot/firmware'],
  );
  t.is(replacePartUuids(text, '4e5cd302', '0badf00d'), text.replace('4e5cd302-01', '0badf00d-01'));
});

test('paths: normalised, and nothing climbs above the partition root', (t) => {
  t.is(normalizePath('/etc/./ssh//sshd_config'), '/etc/ssh/sshd_config');
  t.is(normalizePath('/etc/ssh/../hostname'), '/etc/hostname');
  t.throws(() => normalizePath('/../etc/passwd'), { instanceOf: UserError, message: /climbs above/ });
  t.throws(() => normalizePath('etc/passwd'), { message: /not an absolute path/ });
  t.throws(() => normalizePath('/etc/a\nb'), { message: /control character/ });
});

test('paths: symlinks resolve inside the image (chroot semantics), even when they point outside', async (t) => {
  const links: Record<string, string> = {
    '/bin': 'usr/bin',
    '/etc/resolv.conf': '/run/resolv.conf',
    '/evil': '../../../../host',
    '/loop': '/loop',
  };
  const lstatMany = async (paths: string[]) =>
    paths.map((p): FileStat | undefined =>
      links[p] ? { type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: 0, target: links[p] } : undefined,
    );
  t.is(await canonicalPath('/bin/sh', lstatMany, { followLast: true }), '/usr/bin/sh');
  t.is(await canonicalPath('/etc/resolv.conf', lstatMany, { followLast: true }), '/run/resolv.conf');
  t.is(await canonicalPath('/etc/resolv.conf', lstatMany, { followLast: false }), '/etc/resolv.conf');
  t.is(await canonicalPath('/evil/etc/passwd', lstatMany, { followLast: true }), '/host/etc/passwd');
  await t.throwsAsync(canonicalPath('/loop/x', lstatMany, { followLast: true }), { message: /too many levels/ });
});

test('debugfs stat answers are parsed', (t) => {
  const text =
    'Inode: 14   Type: regular    Mode:  0600   Flags: 0x80000\n' +
    'User:  1000   Group:    42   Project:     0   Size: 3\n mtime: 0x6553f100:00000000 -- x\n';
  t.deepEqual(parseDebugfsStat(text), {
    type: 'file',
    mode: 0o600,
    uid: 1000,
    gid: 42,
    size: 3,
    mtime: 0x6553f100,
    target: undefined,
  });
  t.is(parseDebugfsStat('')?.type, undefined);
  t.is(
    parseDebugfsStat('Inode: 12   Type: symlink    Mode:  0777   Flags: 0x0\nFast link dest: "usr/bin"\n')?.target,
    'usr/bin',
  );
});

test('compression is recognised by magic bytes', (t) => {
  t.is(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]), 'a'), 'xz');
  t.is(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]), 'a'), 'zstd');
  t.is(detectCompression(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0]), 'a'), 'gzip');
  t.is(detectCompression(Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0]), 'a'), 'zip');
  t.is(detectCompression(mbr([{ type: 0x0c, start: 1, sectors: 1 }]), 'a.bin'), 'none');
  t.throws(() => detectCompression(Buffer.from('hello world'), 'notes.txt'), {
    instanceOf: UserError,
    message: /notes\.txt is neither a disk image/,
  });
});

test('toUserError: a tool that may not write where it was told blames the permissions, not the image', (t) => {
  const said = "/usr/bin/cp: cannot create regular file '/out/c/00-a.img.partial': Operation not permitted";
  const error = toUserError(new ToolError('/usr/bin/cp --sparse=always a b', 1, `${said}\n`));
  t.true(error instanceof UserError);
  t.is((error as UserError).message, `cp failed: ${said}; fix the permissions there or choose another location.`);
  const other = toUserError(new ToolError('/usr/bin/cp a b', 1, '/usr/bin/cp: error reading a: Input/output error'));
  t.regex((other as UserError).message, /the image may be damaged, or set SWARMCARD_CP to another cp\.$/);
});

test('closest: a slip of the keyboard finds its word; a tie or a far word finds none', (t) => {
  const boards = ['pi0', 'pi0w', 'pi4', 'pi400', 'pi5'];
  t.is(closest('pi44', boards), 'pi4');
  t.is(closest('hostnme', ['hostname', 'board', 'role']), 'hostname');
  t.is(closest('pi0x', boards), undefined, 'pi0 and pi0w are as near: no guess');
  t.is(closest('pizero', boards), undefined, 'three edits in six letters is not a slip');
  t.is(closest('Worker', ['worker']), 'worker');
});
