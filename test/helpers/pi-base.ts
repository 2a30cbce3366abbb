/**
 * The boot proof's base image: a Raspberry Pi OS Lite-shaped arm64 image made from Debian packages
 * by test/boot-proof/make-pi-base.sh (docs/boot-proof.md). Built once and cached in the fixture
 * cache under the hash of its recipe (the scripts and base/), so a second run reuses it.
 */

import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { fixtureDir } from './fixtures.js';

const recipeDir = fileURLToPath(new URL('../../../test/boot-proof/', import.meta.url));
const recipeFiles = ['make-pi-base.sh', 'customize-pi-base.sh'];

async function recipeKey(): Promise<string> {
  const hash = createHash('sha256');
  const base = (await readdir(join(recipeDir, 'base'))).sort().map((f) => join('base', f));
  for (const file of [...recipeFiles, ...base]) hash.update(`${file}\0`).update(await readFile(join(recipeDir, file)));
  return hash.digest('hex').slice(0, 16);
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** Undefined when arm64 programs run here (qemu-user through binfmt_misc, registered if need be), else why not. */
export async function missingArm64Emulation(): Promise<string | undefined> {
  const entry = '/proc/sys/fs/binfmt_misc/qemu-aarch64';
  if (await exists(entry)) return undefined;
  if (!(await exists('/proc/sys/fs/binfmt_misc/register')))
    await execa('mount', ['-t', 'binfmt_misc', 'binfmt_misc', '/proc/sys/fs/binfmt_misc'], { reject: false });
  await execa('update-binfmts', ['--enable', 'qemu-aarch64'], { reject: false });
  return (await exists(entry)) ? undefined : 'qemu-user cannot be registered for arm64 (binfmt_misc)';
}

/**
 * Remove a build's work directory, never through a mount (mmdebstrap binds /dev, /proc and /sys into
 * the tree while it runs; a build killed half-way could leave them there).
 */
async function removeWork(work: string): Promise<void> {
  const mounted = () =>
    readFile('/proc/self/mountinfo', 'utf8').then((info) =>
      info
        .split('\n')
        .map((line) => line.split(' ')[4] ?? '')
        .filter((point) => point.startsWith(`${work}/`)),
    );
  for (const point of (await mounted()).reverse()) await execa('umount', ['--lazy', point], { reject: false });
  const left = await mounted();
  if (left.length > 0) throw new Error(`mounts left in ${work}, not removed: ${left.join(' ')}`);
  await rm(work, { recursive: true, force: true });
}

/** The cached base (built now when missing): its path, and the build's duration when it was built. */
export async function piBase(): Promise<{ path: string; builtSeconds?: number }> {
  const path = join(fixtureDir, `pi-base-${await recipeKey()}.img`);
  if (await exists(path)) return { path };
  await mkdir(fixtureDir, { recursive: true });
  // A base of an older recipe, or a build that was killed, only takes space. A killed build's work
  // folder may still hold the host's /dev, /proc and /sys: removed only through removeWork.
  for (const entry of await readdir(fixtureDir)) {
    if (/^pi-base-work-/.test(entry)) await removeWork(join(fixtureDir, entry));
    else if (/^pi-base-/.test(entry)) await rm(join(fixtureDir, entry), { recursive: true, force: true });
  }
  const work = await mkdtemp(join(fixtureDir, 'pi-base-work-'));
  const started = Date.now();
  try {
    const built = await execa(join(recipeDir, 'make-pi-base.sh'), [path, work], { reject: false, all: true });
    if (built.exitCode !== 0)
      throw new Error(`the boot proof's base did not build (exit ${built.exitCode}):\n${built.all?.slice(-6000)}`);
  } finally {
    await removeWork(work);
    await rm(`${path}.partial`, { force: true });
  }
  return { path, builtSeconds: Math.round((Date.now() - started) / 1000) };
}
