/**
 * The filesystem editors against every fixture flavour and every backend available here, read back
 * with mtools, debugfs and e2fsck directly.
 */

import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { UserError } from '../builder/errors.js';
import { type FlavourName, flavourNames } from '../builder/fixture/flavours.js';
import { type Ext4Backend, withPartition } from '../builder/fs/partition.js';
import { readLayout } from '../builder/image/layout.js';
import { fixture, scratchCopy, scratchDir } from './helpers/fixtures.js';
import {
  debugfsBytes,
  debugfsCat,
  debugfsStat,
  e2fsckClean,
  mdir,
  mtype,
  mtypeBytes,
  sha256File,
} from './helpers/independent.js';
import { writeSecretWithDebugfs } from './helpers/isolated.js';
import { missingLoop, testIf } from './helpers/requires.js';

// Probed before any test is declared: ava wants every test declared in the module's first turn.
const loopMissing = await missingLoop();
const EPOCH = 1750000000;
const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** The same edits on any image: every editor operation, including ones that depend on each other. */
async function applyEdits(image: string, backend: Ext4Backend): Promise<void> {
  const layout = await readLayout(image);
  const options = { epoch: EPOCH, ext4Backend: backend };
  await withPartition(layout, 'boot', options, async (fs) => {
    await fs.write('/ssh', '');
    await fs.write('/config.txt', `${await fs.readText('/config.txt')}[all]\ndtoverlay=dwc2\n`);
    await fs.mkdir('/swarmcard/node', { parents: true });
    await fs.write('/swarmcard/node/blob.bin', binary);
    await fs.remove('/issue.txt');
    await fs.remove('/overlays', { recursive: true });
  });
  await withPartition(layout, 'root', options, async (fs) => {
    await fs.write('/etc/hostname', 'node7\n');
    await fs.mkdir('/var/lib/swarmcard/state', { parents: true, mode: 0o700 });
    await fs.write('/var/lib/swarmcard/state/secret', 'not in logs\n', {
      mode: 0o600,
      uid: 1000,
      gid: 1000,
      mtime: 1234567890,
    });
    await fs.write('/var/lib/swarmcard/state/blob.bin', binary);
    // Through /bin → usr/bin on merged-/usr releases.
    await fs.write('/bin/swarmcard-tool', '#!/bin/sh\necho hi\n', { mode: 0o755 });
    await fs.write('/etc/systemd/system/swarmcard-firstboot.service', '[Unit]\nDescription=x\n');
    await fs.symlink(
      '/etc/systemd/system/multi-user.target.wants/swarmcard-firstboot.service',
      '/etc/systemd/system/swarmcard-firstboot.service',
    );
    await fs.remove('/etc/motd');
    await fs.mkdir('/opt/tmp/deep', { parents: true });
    await fs.write('/opt/tmp/deep/file', 'x');
    await fs.remove('/opt/tmp', { recursive: true });
    await fs.remove('/etc/ssh', { recursive: true });
    // Read-your-writes inside one scope, before anything is committed.
    if ((await fs.readText('/etc/hostname')) !== 'node7\n') throw new Error('read after write failed');
  });
}

async function checkEdits(t: ExecutionContext, image: string, name: FlavourName): Promise<void> {
  const merged = name.startsWith('bookworm') || name.startsWith('trixie');
  // Boot partition through mtools directly.
  t.is(await mtype(image, '/ssh'), '');
  t.regex(await mtype(image, '/config.txt'), /\[all\]\ndtoverlay=dwc2\n$/);
  t.deepEqual(await mtypeBytes(image, '/swarmcard/node/blob.bin'), binary);
  const root = await mdir(image, '/');
  t.true(
    root.some((l) => /config\.txt/i.test(l)),
    'mdir lists the partition (else the absences below prove nothing)',
  );
  t.false(
    root.some((l) => /issue\.txt/i.test(l)),
    'issue.txt removed',
  );
  t.false(
    root.some((l) => /overlays/i.test(l)),
    'overlays/ removed recursively',
  );
  // Root partition through debugfs directly.
  t.is(await debugfsCat(image, '/etc/hostname'), 'node7\n');
  t.like(await debugfsStat(image, '/etc/hostname'), { type: 'regular', mode: 0o644, uid: 0, gid: 0, mtime: EPOCH });
  t.like(await debugfsStat(image, '/var/lib/swarmcard/state'), { type: 'directory', mode: 0o700, uid: 0, gid: 0 });
  t.like(await debugfsStat(image, '/var/lib/swarmcard'), { type: 'directory', mode: 0o755 });
  t.like(await debugfsStat(image, '/var/lib/swarmcard/state/secret'), {
    type: 'regular',
    mode: 0o600,
    uid: 1000,
    gid: 1000,
    mtime: 1234567890,
  });
  t.is(await debugfsCat(image, '/var/lib/swarmcard/state/secret'), 'not in logs\n');
  t.deepEqual(await debugfsBytes(image, '/var/lib/swarmcard/state/blob.bin'), binary);
  t.like(await debugfsStat(image, merged ? '/usr/bin/swarmcard-tool' : '/bin/swarmcard-tool'), {
    type: 'regular',
    mode: 0o755,
  });
  if (merged)
    t.like(await debugfsStat(image, '/bin'), { type: 'symlink', linkTarget: 'usr/bin' }, '/bin stays a symlink');
  t.like(await debugfsStat(image, '/etc/systemd/system/multi-user.target.wants/swarmcard-firstboot.service'), {
    type: 'symlink',
    linkTarget: '/etc/systemd/system/swarmcard-firstboot.service',
  });
  t.is(await debugfsStat(image, '/etc/motd'), undefined);
  t.is(await debugfsStat(image, '/opt/tmp'), undefined);
  t.like(await debugfsStat(image, '/opt'), { type: 'directory' });
  t.is(await debugfsStat(image, '/etc/ssh'), undefined);
  const fsck = await e2fsckClean(image);
  t.true(fsck.ok, fsck.output);
}

/** Every edit on one release's fixture with one ext4 backend, read back with the standard tools. */
const everyEditTitle = (name: FlavourName, backend: Ext4Backend) =>
  `${name}: every edit with the ${backend} backend reads back with mtools, debugfs and e2fsck`;
const everyEdit = test.macro<[FlavourName, Ext4Backend]>({
  async exec(t, name: FlavourName, backend: Ext4Backend) {
    const image = await scratchCopy(t, await fixture(name));
    await applyEdits(image, backend);
    await checkEdits(t, image, name);
  },
  title: (provided, name, backend) => provided ?? everyEditTitle(name, backend),
});

for (const name of flavourNames) {
  test(everyEdit, name, 'debugfs');
  testIf(loopMissing)(everyEditTitle(name, 'loop'), everyEdit, name, 'loop');
}

test('the mtools + debugfs route is byte-identical across two runs at different times', async (t) => {
  const base = await fixture('trixie-arm64');
  const first = await scratchCopy(t, base, 'a.img');
  const second = await scratchCopy(t, base, 'b.img');
  await applyEdits(first, 'debugfs');
  await new Promise((r) => setTimeout(r, 1100)); // the wall clock moves on; the bytes must not
  await applyEdits(second, 'debugfs');
  t.is(await sha256File(first), await sha256File(second));
  t.not(await sha256File(first), await sha256File(base));
});

test('read-back verification catches a backend that silently drops a change', async (t) => {
  const dir = await scratchDir(t);
  // A debugfs that "forgets" every mode change, as a buggy backend might.
  const wrapper = join(dir, 'debugfs');
  await writeFile(
    wrapper,
    '#!/bin/sh\nif [ "$1" = -w ]; then sed -i "/ mode 0/d" "$3"; fi\nexec /usr/sbin/debugfs "$@"\n',
  );
  await chmod(wrapper, 0o755);
  const image = await scratchCopy(t, await fixture('bookworm-arm64'));
  // In a child process: SWARMCARD_DEBUGFS there, never in this worker's shared process.env.
  await t.throwsAsync(writeSecretWithDebugfs(image, wrapper), {
    message: /read-back verification failed: \/etc\/secret has mode 644, not 600/,
  });
});

test('editors refuse paths that leave the partition and FAT symlinks', async (t) => {
  const image = await scratchCopy(t, await fixture('bookworm-armhf'));
  const layout = await readLayout(image);
  await t.throwsAsync(
    withPartition(layout, 'root', { epoch: EPOCH }, (fs) => fs.write('/../../etc/passwd', 'x')),
    { instanceOf: UserError, message: /climbs above the partition's root/ },
  );
  await t.throwsAsync(
    withPartition(layout, 'boot', { epoch: EPOCH }, (fs) => fs.symlink('/x', '/y')),
    { instanceOf: UserError, message: /FAT, which has no symbolic links/ },
  );
  await t.throwsAsync(
    withPartition(layout, 'root', { epoch: EPOCH }, (fs) => fs.write('/etc', 'x')),
    { instanceOf: UserError, message: /a directory is in the way/ },
  );
  await t.throwsAsync(
    withPartition(layout, 'root', { epoch: EPOCH }, (fs) => fs.mkdir('/a/b/c')),
    { instanceOf: UserError, message: /\/a does not exist/ },
  );
});

test('an image symlink pointing outside resolves inside the partition', async (t) => {
  const image = await scratchCopy(t, await fixture('bookworm-armhf'));
  const layout = await readLayout(image);
  await withPartition(layout, 'root', { epoch: EPOCH }, async (fs) => {
    await fs.symlink('/etc/escape', '../../../../../tmp');
  });
  await withPartition(layout, 'root', { epoch: EPOCH }, async (fs) => {
    await fs.write('/etc/escape/inside', 'contained\n');
  });
  t.is(await debugfsCat(image, '/tmp/inside'), 'contained\n');
});

test('what was learnt through a symlink is forgotten when the link is replaced by a directory', async (t) => {
  const image = await scratchCopy(t, await fixture('bookworm-armhf'));
  const layout = await readLayout(image);
  await withPartition(layout, 'root', { epoch: EPOCH }, async (fs) => {
    await fs.symlink('/etc/link', '/etc');
  });
  await withPartition(layout, 'root', { epoch: EPOCH }, async (fs) => {
    // debugfs follows the link while stat-ing below it: /etc/link/hostname is /etc/hostname now.
    await fs.prefetch(['/etc/link/hostname']);
    t.true(await fs.exists('/etc/link/hostname'));
    await fs.remove('/etc/link');
    await fs.mkdir('/etc/link');
    t.false(await fs.exists('/etc/link/hostname'), 'the new directory is empty');
    await fs.write('/etc/link/hostname', 'in the new directory\n');
  });
  t.is(await debugfsCat(image, '/etc/link/hostname'), 'in the new directory\n');
  t.not(await debugfsCat(image, '/etc/hostname'), 'in the new directory\n');
  const fsck = await e2fsckClean(image);
  t.true(fsck.ok, fsck.output);
});
