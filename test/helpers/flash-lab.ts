/**
 * Cards without card readers: loop devices over files filled with random bytes (so a block that
 * was not written is recognisably not the image's), always detached when the test ends, and the
 * lsblk stand-in (fake-lsblk.ts) wired in through SWARMCARD_LSBLK.
 */

import { createHash, randomFillSync } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { partitionOffsets, sfdisk } from './independent.js';
import { namespaceHolder } from './namespace.js';

export interface Card {
  /** The loop device: /dev/loopN. */
  device: string;
  /** The file behind it: what the "card" holds, read without the loop device's page cache. */
  file: string;
}

/** A loop device over `mib` MiB of random bytes, detached when the test ends. */
export async function randomCard(
  t: ExecutionContext,
  dir: string,
  mib: number,
  options: { readOnly?: boolean; name?: string } = {},
): Promise<Card> {
  const file = join(dir, options.name ?? `card-${Math.random().toString(36).slice(2)}.bin`);
  const handle = await open(file, 'w');
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < mib; i++) await handle.write(randomFillSync(block));
  await handle.close();
  const { stdout } = await execa('losetup', ['--find', '--show', ...(options.readOnly ? ['--read-only'] : []), file]);
  const device = stdout.trim();
  t.teardown(async () => {
    await execa('losetup', ['--detach', device], { reject: false });
  });
  return { device, file };
}

/**
 * Slow the writes this process and its children make to `device`, through the block I/O throttle
 * of the cgroup this process is in: cgroup v1's blkio, else v2's io.max. The cgroup must be this
 * process's own, not the root's: a throttle set on another cgroup does not slow us. Returns the
 * undo, or undefined where no throttle can be set (no such controller, or not root).
 */
export async function throttleWrites(device: string, bytesPerSecond: number) {
  const majMin = (await execa('lsblk', ['-dno', 'MAJ:MIN', device])).stdout.trim();
  const groups = (await readFile('/proc/self/cgroup', 'utf8')).split('\n').map((l) => l.split(':'));
  const v1 = groups.find(([, controllers]) => controllers?.split(',').includes('blkio'))?.[2];
  const v2 = groups.find(([id, controllers]) => id === '0' && controllers === '')?.[2];
  const throttles = [
    v1 && { file: join('/sys/fs/cgroup/blkio', v1, 'blkio.throttle.write_bps_device'), slow: bytesPerSecond, undo: 0 },
    v2 && { file: join('/sys/fs/cgroup', v2, 'io.max'), slow: `wbps=${bytesPerSecond}`, undo: 'wbps=max' },
  ];
  for (const throttle of throttles) {
    if (!throttle) continue;
    const set = (value: string | number) => writeFile(throttle.file, `${majMin} ${value}`);
    try {
      await set(throttle.slow);
    } catch {
      continue;
    }
    return () => set(throttle.undo).catch(() => undefined);
  }
  return undefined;
}

export async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

/**
 * A mount namespace of the test's own, for mounting a card: `wrap` runs a command inside it. A
 * mount made in the shared namespace is copied into every namespace another test creates meanwhile
 * (swarm labs, unshare), and such a copy keeps the filesystem, and so the card, busy after the test
 * unmounts it. The namespace, and whatever is still mounted in it, goes when the test ends.
 */
export async function privateMounts(t: ExecutionContext) {
  const holder = await namespaceHolder('mnt');
  t.teardown(async () => {
    holder.process.kill('SIGKILL');
    await holder.process;
  });
  const wrap = ['nsenter', '-t', String(holder.pid), '-m'];
  /** Run `file args…` inside the namespace; its exit code is the caller's to check. */
  const inside = (file: string, ...args: string[]) =>
    execa(wrap[0]!, [...wrap.slice(1), file, ...args], { reject: false });
  return { wrap, inside };
}

const fakeLsblk = fileURLToPath(new URL('fake-lsblk.js', import.meta.url));

/**
 * The environment that makes swarmcard's lsblk the stand-in: a recording (with recorded disks
 * replaced by real devices), or the real lsblk with some loop devices shown as cards in a reader.
 */
export async function lsblkOverride(
  dir: string,
  how: { recording: string; map?: Record<string, string> } | { cards: string[] },
): Promise<Record<string, string>> {
  const script = join(dir, `lsblk-${Math.random().toString(36).slice(2)}.sh`);
  await writeFile(script, `#!/bin/sh\nexec "${process.execPath}" "${fakeLsblk}" "$@"\n`, { mode: 0o755 });
  if ('recording' in how)
    return {
      SWARMCARD_LSBLK: script,
      FAKE_LSBLK_RECORDING: how.recording,
      FAKE_LSBLK_MAP: Object.entries(how.map ?? {})
        .map(([from, to]) => `${from}=${to}`)
        .join(','),
    };
  return { SWARMCARD_LSBLK: script, FAKE_LSBLK_CARDS: how.cards.join(',') };
}

/** fsck.vfat -n on a private slice of the first (boot) partition: the FAT is consistent. */
export async function fatClean(image: string): Promise<{ ok: boolean; output: string }> {
  const part = (await sfdisk(image)).partitions[0]!;
  const { boot } = await partitionOffsets(image);
  const slice = `${image}.boot-check`;
  await execa('dd', [
    `if=${image}`,
    `of=${slice}`,
    'bs=512',
    `skip=${boot / 512}`,
    `count=${part.size}`,
    'status=none',
  ]);
  const result = await execa('fsck.vfat', ['-n', slice], { reject: false, all: true });
  await execa('rm', ['-f', slice]);
  return { ok: result.exitCode === 0, output: result.all ?? '' };
}

/** The mapped byte ranges of a bmap file, read here with a plain pattern (not swarmcard's parser). */
export async function bmapRanges(bmap: string): Promise<{ start: number; end: number }[]> {
  const text = await readFile(bmap, 'utf8');
  const blockSize = Number(/<BlockSize>\s*(\d+)/.exec(text)![1]);
  const imageSize = Number(/<ImageSize>\s*(\d+)/.exec(text)![1]);
  return [...text.matchAll(/<Range[^>]*>\s*(\d+)(?:-(\d+))?\s*<\/Range>/g)].map((m) => ({
    start: Number(m[1]) * blockSize,
    end: Math.min((Number(m[2] ?? m[1]) + 1) * blockSize, imageSize),
  }));
}
