/**
 * A ~2.7 GiB image shaped like Raspberry Pi OS Lite (4 MiB gap, 512 MiB FAT boot, 2250 MiB ext4 root)
 * whose ~1.9 GiB of data compresses like a real Lite root: real files of this machine's Debian
 * userland (/usr), not random filler and not zeros. Files are picked by a hash of their path (an even
 * sample of the whole tree) until each kind has its share: executables and libraries (ELF), text and
 * other data, and files that are already compressed (.gz man pages and docs, .xz, .zst, zip/jar,
 * PNG/JPEG), as a Lite root has them. The boot partition gets kernel- and firmware-sized ELF files.
 *
 * Reproducible: the same /usr gives the same bytes (sorted selection, fixed times, owners and ids
 * from makeFixtureImage). Cached by name in the bench directory; a JSON file beside it records what
 * was picked. Reused by the whole-build benchmark:
 *   const base = await liteShapedImage(workDir);
 *   await makeNodeImage(base, join(workDir, 'node-3.img'), 3);
 */

import { createHash } from 'node:crypto';
import { copyFile, lstat, mkdir, open, readdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { FixtureEntry } from '../builder/fixture/flavours.js';
import { FIXTURE_EPOCH, makeFixtureImage } from '../builder/fixture/make-fixture-image.js';
import { withPartition } from '../builder/fs/partition.js';
import { writeDiskId } from '../builder/image/clone.js';
import { readLayout } from '../builder/image/layout.js';
import { isFile } from '../builder/util/is-file.js';

const MiB = 1024 * 1024;
/** Bump when the selection rules change: the cached image is named after it. */
const GENERATION = 1;

type Kind = 'elf' | 'compressed' | 'other';
/** Shares of the data, roughly those of a Lite root (binaries, libraries, modules; docs, locales, Python). */
const SHARES: Record<Kind, number> = { elf: 0.55, compressed: 0.12, other: 0.33 };

export interface LiteShapedOptions {
  /** Bytes of file data in the root filesystem (default 1900 MiB). */
  dataBytes?: number;
  /** Where the files come from (default /usr). */
  source?: string;
}

interface Candidate {
  path: string;
  size: number;
  kind: Kind;
  order: string;
}

const plainName = /^[\w/.+@,=:-]+$/;

function kindOf(head: Buffer): Kind {
  const hex = head.toString('hex');
  if (hex.startsWith('7f454c46')) return 'elf';
  const magics = ['1f8b', 'fd377a585a00', '28b52ffd', '504b0304', '425a68', '89504e47', 'ffd8ff'];
  return magics.some((m) => hex.startsWith(m)) ? 'compressed' : 'other';
}

/** Relative paths under `dir`; symlinks are not followed (Node 20's recursive readdir follows them). */
async function walk(dir: string, under = ''): Promise<string[]> {
  const found: string[] = [];
  const entries = await readdir(join(dir, under), { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const path = under ? `${under}/${entry.name}` : entry.name;
    if (entry.isDirectory()) found.push(...(await walk(dir, path)));
    else if (entry.isFile()) found.push(path);
  }
  return found;
}

async function candidates(source: string): Promise<Candidate[]> {
  const found: Candidate[] = [];
  const names = (await walk(source)).sort();
  const head = Buffer.alloc(8);
  const inodes = new Set<string>();
  for (const name of names) {
    const path = join(source, name);
    // Debian's files only (not /usr/local), with names a debugfs script takes unquoted.
    if (name.startsWith('local/') || !plainName.test(path) || path.length > 200) continue;
    // Regular files only (no symlinks), each inode once (hard links would be duplicate bytes).
    const info = await lstat(path).catch(() => undefined);
    if (!info?.isFile() || info.size === 0 || info.size > 64 * MiB) continue;
    const inode = `${info.dev}:${info.ino}`;
    if (inodes.has(inode)) continue;
    inodes.add(inode);
    const handle = await open(path, 'r').catch(() => undefined);
    if (!handle) continue;
    head.fill(0);
    await handle.read(head, 0, 8, 0).finally(() => handle.close());
    const order = createHash('sha256').update(name).digest('hex');
    found.push({ path: name, size: info.size, kind: kindOf(head), order });
  }
  return found.sort((a, b) => (a.order < b.order ? -1 : 1));
}

/** Pick files until each kind has its share of `total` bytes; the rest of the bytes from any kind. */
function pick(all: Candidate[], total: number): { root: Candidate[]; boot: Candidate[] } {
  const boot: Candidate[] = [];
  // Kernels (~8 MiB) and firmware (~3 MiB) for the boot partition: ELF files of those sizes.
  const bootWants = [8, 8, 8, 8, 3, 3, 3, 3].map((m) => m * MiB);
  const taken = new Set<string>();
  for (const want of bootWants) {
    const hit = all.find((c) => c.kind === 'elf' && !taken.has(c.path) && c.size > want / 2 && c.size < want * 2);
    if (hit) {
      boot.push(hit);
      taken.add(hit.path);
    }
  }
  const root: Candidate[] = [];
  const used: Record<Kind, number> = { elf: 0, compressed: 0, other: 0 };
  let sum = 0;
  for (const c of all) {
    if (taken.has(c.path) || used[c.kind] + c.size > SHARES[c.kind] * total) continue;
    root.push(c);
    taken.add(c.path);
    used[c.kind] += c.size;
    sum += c.size;
  }
  for (const c of all) {
    if (sum >= total) break;
    if (taken.has(c.path) || sum + c.size > total) continue;
    root.push(c);
    taken.add(c.path);
    sum += c.size;
  }
  return { root: root.sort((a, b) => (a.path < b.path ? -1 : 1)), boot };
}

/** Make the image at `out` (overwriting it). Returns what was picked, by kind. */
export async function makeLiteShapedImage(
  out: string,
  options: LiteShapedOptions = {},
): Promise<{ files: number; bytes: Record<Kind, number> }> {
  const source = options.source ?? '/usr';
  const total = options.dataBytes ?? 1900 * MiB;
  const { root, boot } = pick(await candidates(source), total);
  const tree = `${out}.tree`;
  await rm(tree, { recursive: true, force: true });
  const bytes: Record<Kind, number> = { elf: 0, compressed: 0, other: 0 };
  try {
    const prefix = join(tree, source);
    for (const c of root) {
      const to = join(prefix, c.path);
      await mkdir(join(to, '..'), { recursive: true });
      await copyFile(join(source, c.path), to);
      await utimes(to, FIXTURE_EPOCH, FIXTURE_EPOCH);
      bytes[c.kind] += c.size;
    }
    const names = ['kernel.img', 'kernel7.img', 'kernel7l.img', 'kernel8.img', 'start.elf', 'start4.elf'];
    const extraBoot: FixtureEntry[] = await Promise.all(
      boot.slice(0, names.length + 2).map(async (c, i) => ({
        path: `/${names[i] ?? `start${i}x.elf`}`,
        content: await readFile(join(source, c.path)),
      })),
    );
    await makeFixtureImage('bookworm-arm64', `${out}.partial-image`, {
      bootMiB: 512,
      rootMiB: 2250,
      rootTree: tree,
      extraBoot,
    });
    await rename(`${out}.partial-image`, out);
  } finally {
    await rm(tree, { recursive: true, force: true });
    await rm(`${out}.partial-image`, { force: true });
  }
  return { files: root.length, bytes };
}

/** The cached Lite-shaped image in `dir`, made the first time (a few minutes). */
export async function liteShapedImage(dir: string, options: LiteShapedOptions = {}): Promise<string> {
  const mib = Math.round((options.dataBytes ?? 1900 * MiB) / MiB);
  const path = join(dir, `lite-shaped-g${GENERATION}-${mib}m.img`);
  if (await isFile(path)) return path;
  await mkdir(dir, { recursive: true });
  process.stderr.write(`generating ${path} from ${options.source ?? '/usr'}…\n`);
  const made = await makeLiteShapedImage(path, options);
  await writeFile(`${path}.json`, `${JSON.stringify(made, null, 2)}\n`);
  return path;
}

/**
 * A node made from `base` the way a build changes it, through swarmcard's own editors: its disk id
 * in the MBR, cmdline.txt and a config.txt line on the FAT partition; hostname, hosts, machine-id,
 * an SSH host key and a 64 KiB file on ext4. Only a few blocks of each partition change.
 */
export async function makeNodeImage(base: string, out: string, index: number): Promise<void> {
  await execa('cp', ['--reflink=auto', base, out]);
  await writeDiskId(out, (0x5eed0000 + index) >>> 0);
  const layout = await readLayout(out);
  const bytes = (label: string, n: number) => {
    const parts: Buffer[] = [];
    for (let i = 0; parts.length * 32 < n; i++)
      parts.push(createHash('sha256').update(`${label}${index}/${i}`).digest());
    return Buffer.concat(parts).subarray(0, n);
  };
  const epoch = 1750000000;
  await withPartition(layout, 'boot', { epoch }, async (fs) => {
    const cmdline = await fs.readText('/cmdline.txt');
    await fs.write('/cmdline.txt', `${cmdline.trim()} swarm.node=${index}\n`);
    const config = await fs.readText('/config.txt');
    await fs.write('/config.txt', `${config}\n[all]\ndtoverlay=dwc2 # node ${index}\n`);
  });
  await withPartition(layout, 'root', { epoch }, async (fs) => {
    await fs.write('/etc/hostname', `node${index}\n`);
    await fs.write('/etc/hosts', `127.0.0.1 localhost\n127.0.1.1 node${index}\n`);
    await fs.write('/etc/machine-id', `${bytes('machine', 16).toString('hex')}\n`);
    await fs.mkdir('/etc/ssh', { parents: true });
    await fs.write('/etc/ssh/ssh_host_ed25519_key', bytes('key', 411).toString('base64'), { mode: 0o600 });
    await fs.mkdir('/var/lib/swarm', { parents: true });
    await fs.write('/var/lib/swarm/state', bytes('state', 64 * 1024));
  });
}
