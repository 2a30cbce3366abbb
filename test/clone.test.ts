/** Cloning, disk identity, refusal to write, and cleanup on failure and on Ctrl-C. */

import { access, open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { execa } from 'execa';
import { UserError } from '../builder/errors.js';
import type { FlavourName } from '../builder/fixture/flavours.js';
import { withPartition } from '../builder/fs/partition.js';
import { cloneImage } from '../builder/image/clone.js';
import { setDiskIdentity } from '../builder/image/identity.js';
import { readLayout } from '../builder/image/layout.js';
import { applyEdits } from '../builder/pipeline/apply-edits.js';
import { deriveDiskId } from '../builder/plan/ids.js';
import { fixture, scratchCopy, scratchDir } from './helpers/fixtures.js';
import { debugfsCat, debugfsStat, mtype, sfdisk } from './helpers/independent.js';
import { missingLoop, testIf } from './helpers/requires.js';

// Probed before any test is declared: ava wants every test declared in the module's first turn.
const loopMissing = await missingLoop();

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

test('a clone keeps the holes of its base and appears only when complete', async (t) => {
  const base = await fixture('bookworm-arm64');
  const out = join(await scratchDir(t), 'dist', '01-node1.img');
  const seenPartial = await cloneImage(base, out, async (partial) => {
    t.false(await exists(out), 'no final file while working');
    return stat(partial);
  });
  const [b, o] = [await stat(base), await stat(out)];
  t.is(o.size, b.size);
  t.true(o.blocks <= b.blocks + 64, `allocated ${o.blocks} blocks vs base ${b.blocks}`);
  t.true(seenPartial.isFile());
  t.false(await exists(`${out}.partial`));
});

test('a failure while editing leaves neither the image nor its .partial', async (t) => {
  const out = join(await scratchDir(t), '01-node1.img');
  await t.throwsAsync(
    cloneImage(await fixture('bookworm-arm64'), out, async () => {
      throw new UserError('the profile broke');
    }),
    { message: 'the profile broke' },
  );
  t.false(await exists(out));
  t.false(await exists(`${out}.partial`));
});

/** A node disk id changes the MBR, root=PARTUUID and fstab together, on one release's layout. */
const diskIdentity = test.macro<[FlavourName]>({
  async exec(t, name: FlavourName) {
    const image = await scratchCopy(t, await fixture(name));
    const before = await debugfsStat(image, '/etc/fstab');
    const diskId = deriveDiskId('cluster-a', 3);
    const { layout: base, identity } = await setDiskIdentity(image, diskId);
    await applyEdits(base, identity, { epoch: 1700000000 });
    const layout = await readLayout(image);
    const hex = diskId.toString(16).padStart(8, '0');
    t.is((await sfdisk(image)).id, `0x${hex}`);
    t.is(layout.mbr.diskId, diskId);
    const cmdline = await mtype(image, '/cmdline.txt');
    const fstab = await debugfsCat(image, '/etc/fstab');
    if (name === 'jessie-armhf') {
      t.regex(cmdline, /root=\/dev\/mmcblk0p2 /, 'jessie names devices, nothing to rewrite');
    } else {
      t.regex(cmdline, new RegExp(`root=PARTUUID=${hex}-02 `));
      t.regex(fstab, new RegExp(`^PARTUUID=${hex}-01 .* vfat`, 'm'));
      t.regex(fstab, new RegExp(`^PARTUUID=${hex}-02 .* ext4`, 'm'));
      t.like(await debugfsStat(image, '/etc/fstab'), { mode: before!.mode, uid: before!.uid, gid: before!.gid });
    }
    t.regex(cmdline, /^[^\n]*\n$/, 'still one line');
  },
  title: (_, name) => `${name}: a node disk id changes the MBR, root=PARTUUID and fstab together`,
});

for (const name of ['jessie-armhf', 'bullseye-arm64', 'bookworm-armhf', 'trixie-arm64'] as const)
  test(diskIdentity, name);

test('disk ids are derived, stable and distinct per node', (t) => {
  t.is(deriveDiskId('a', 1), deriveDiskId('a', 1));
  const ids = new Set(Array.from({ length: 1000 }, (_, i) => deriveDiskId('a', i + 1)));
  t.is(ids.size, 1000);
  t.not(deriveDiskId('a', 1), deriveDiskId('b', 1));
});

test('an ext4 filesystem that needs recovery is refused before anything is written', async (t) => {
  const image = await scratchCopy(t, await fixture('bookworm-armhf'));
  const layout = await readLayout(image);
  const handle = await open(image, 'r+');
  const word = Buffer.alloc(4);
  await handle.read(word, 0, 4, layout.root.offset + 1024 + 96);
  word.writeUInt32LE(word.readUInt32LE(0) | 0x4);
  await handle.write(word, 0, 4, layout.root.offset + 1024 + 96);
  await handle.close();
  const before = await readFile(image);
  await t.throwsAsync(
    withPartition(await readLayout(image), 'root', { epoch: 1 }, (fs) => fs.write('/etc/x', 'y')),
    { instanceOf: UserError, message: /was not cleanly unmounted .* run "e2fsck -fy"/ },
  );
  t.true(before.equals(await readFile(image)), 'not one byte changed');
});

const hold = fileURLToPath(new URL('helpers/hold.js', import.meta.url));

async function interrupt(t: import('ava').ExecutionContext, mode: string, image: string, out: string, tmp: string) {
  const child = execa('node', [hold, mode, image, out], { env: { SWARMCARD_TMPDIR: tmp }, reject: false });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
    child.then((r) => reject(new Error(`exited early: ${r.stderr}`)), reject);
  });
  child.kill('SIGINT');
  const result = await child;
  t.is(result.exitCode, 130, result.stderr);
  t.regex(result.stderr, /SIGINT received: cleaning up/);
  t.deepEqual(await readdir(tmp), [], 'temp dirs removed');
}

test('Ctrl-C while cloning removes the .partial', async (t) => {
  const dir = await scratchDir(t);
  const out = join(dir, 'dist', '01-node1.img');
  await interrupt(t, 'clone', await fixture('bookworm-armhf'), out, await scratchDir(t));
  t.false(await exists(`${out}.partial`));
  t.false(await exists(out));
});

test('Ctrl-C while editing with debugfs removes its staging files', async (t) => {
  const image = await scratchCopy(t, await fixture('bookworm-armhf'));
  await interrupt(t, 'debugfs', image, '', await scratchDir(t));
});

testIf(loopMissing)('Ctrl-C while loop-mounted unmounts and detaches the loop device', async (t) => {
  const image = await scratchCopy(t, await fixture('bookworm-armhf'));
  await interrupt(t, 'loop', image, '', await scratchDir(t));
  t.is((await execa('losetup', ['--associated', image])).stdout, '', 'no loop device left on the image');
  t.false((await readFile('/proc/mounts', 'utf8')).includes('swarmcard-mnt-'), 'nothing left mounted');
});
