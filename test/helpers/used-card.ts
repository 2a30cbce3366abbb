/**
 * A used SD card, simulated: a file of pseudo-random bytes the size of the image, written with the
 * real bmap client, then read back with the standard tools (fsck.vfat, e2fsck, mtools, debugfs),
 * never through swarmcard's code. `bmaptool copy` truncates a regular-file target (it opens it
 * with "wb+"), which would turn the old bytes into zeros, so the card is a loop device over that
 * file, as a real card is a block device; without loop devices (not root) the same bmaptools copy
 * engine writes into the open file instead.
 */

import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, readlink } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { type BmapRange, bmapXml } from '../../builder/formats/bmap-xml.js';

const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1', MTOOLSRC: '/dev/null' };
/** A corrupt filesystem must not hang a reader for ever. */
const READER_TIMEOUT_MS = 120_000;

/** `size` pseudo-random bytes (AES-CTR under a key from `seed`): reproducible "old card content". */
export async function oldCardBytes(path: string, size: number, seed: string): Promise<void> {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16, 0));
  const zeros = Buffer.alloc(4 * 1024 * 1024);
  function* chunks() {
    for (let left = size; left > 0; left -= zeros.length)
      yield cipher.update(zeros.subarray(0, Math.min(left, zeros.length)));
  }
  await pipeline(Readable.from(chunks()), createWriteStream(path));
}

const PYTHON_COPY = `
import os, sys
from bmaptools import BmapCopy
image, bmap, dest = sys.argv[1:4]
with open(image, 'rb') as i, open(bmap, 'r') as b, open(dest, 'r+b') as d:
    BmapCopy.BmapCopy(i, d, b, os.path.getsize(image)).copy(False, True)
`;

/**
 * Write IMAGE with BMAP over CARD (a file of old bytes, as large as the image). With `loop`,
 * through `bmaptool copy` onto a loop device over CARD; else through bmaptools' BmapCopy.
 * Returns what the client said, and its exit code.
 */
export async function flashOverUsedCard(
  image: string,
  bmap: string,
  card: string,
  loop: boolean,
): Promise<{ exitCode: number; output: string; route: string }> {
  if (!loop) {
    // The interpreter bmaptool itself runs with (its #! line), which is the one that has bmaptools.
    const bmaptool = (await execa('sh', ['-c', 'command -v bmaptool'])).stdout.trim();
    const python = /^#!\s*(\S+)/.exec(await readFile(bmaptool, 'utf8'))?.[1] ?? 'python3';
    const result = await execa(python, ['-c', PYTHON_COPY, image, bmap, card], { reject: false, all: true });
    return { exitCode: result.exitCode ?? -1, output: result.all ?? '', route: 'bmaptools BmapCopy into the file' };
  }
  const device = (await execa('losetup', ['--find', '--show', card])).stdout.trim();
  try {
    const result = await execa('bmaptool', ['copy', '--bmap', bmap, image, device], { reject: false, all: true });
    return { exitCode: result.exitCode ?? -1, output: result.all ?? '', route: `bmaptool copy onto ${device}` };
  } finally {
    await execa('losetup', ['--detach', device]);
  }
}

/** Bytes [offset, offset + size) of `image` into a sparse file of their own. */
export async function slice(image: string, offset: number, size: number, out: string): Promise<string> {
  await execa('dd', [
    `if=${image}`,
    `of=${out}`,
    'bs=1M',
    'iflag=skip_bytes,count_bytes',
    `skip=${offset}`,
    `count=${size}`,
    'conv=sparse',
    'status=none',
  ]);
  return out;
}

export interface Check {
  ok: boolean;
  output: string;
}

/** `fsck.vfat -n` (no changes) on a partition slice. */
export async function fsckFat(partition: string): Promise<Check> {
  const r = await execa('fsck.vfat', ['-n', partition], { reject: false, all: true, timeout: READER_TIMEOUT_MS });
  return { ok: r.exitCode === 0, output: r.all ?? '' };
}

/** `e2fsck -fn` (forced, no changes) on a partition slice. */
export async function fsckExt(partition: string): Promise<Check> {
  const r = await execa('e2fsck', ['-fn', partition], { reject: false, all: true, timeout: READER_TIMEOUT_MS });
  return { ok: r.exitCode === 0, output: r.all ?? '' };
}

/** Every entry under `dir`: type, mode, size and sha256 or link target (and owner/mtime when asked). */
async function describeTree(dir: string, details: { owner: boolean }): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const entries = (await readdir(dir, { recursive: true })).sort();
  for (const name of entries) {
    const path = join(dir, name);
    const s = await lstat(path);
    const owner = details.owner ? ` ${s.uid}:${s.gid}` : '';
    const mode = (s.mode & 0o7777).toString(8);
    if (s.isSymbolicLink()) out[relative(dir, path)] = `link -> ${await readlink(path)}${owner}`;
    else if (s.isDirectory()) out[relative(dir, path)] = `dir ${mode}${owner}`;
    else {
      const sum = createHash('sha256')
        .update(await readFile(path))
        .digest('hex');
      out[relative(dir, path)] = `file ${mode} ${s.size} ${Math.floor(s.mtimeMs / 1000)} ${sum}${owner}`;
    }
  }
  return out;
}

/** Every file of the FAT volume at `offset`, copied out with mtools (times kept), described. */
export async function fatFiles(image: string, offset: number, into: string): Promise<Record<string, string> | string> {
  await mkdir(into, { recursive: true });
  const r = await execa('mcopy', ['-s', '-m', '-n', '-i', `${image}@@${offset}`, '::', into], {
    env: MTOOLS_ENV,
    reject: false,
    all: true,
    timeout: READER_TIMEOUT_MS,
  });
  if (r.exitCode !== 0) return `mcopy failed: ${r.all}`;
  return describeTree(into, { owner: false });
}

/** Every file of the ext4 filesystem at `offset`, dumped with debugfs rdump (owners kept), described. */
export async function extFiles(image: string, offset: number, into: string): Promise<Record<string, string> | string> {
  await mkdir(into, { recursive: true });
  const r = await execa('debugfs', ['-R', `rdump / ${into}`, `${image}?offset=${offset}`], {
    reject: false,
    all: true,
    timeout: READER_TIMEOUT_MS,
  });
  const problems = (r.all ?? '').split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l));
  if (r.exitCode !== 0 || problems.length > 0) return `debugfs rdump failed: ${problems.join('; ')}`;
  return describeTree(into, { owner: true });
}

/**
 * The map bmaptool create would make of a fully allocated image: the 4096-byte blocks that are not
 * all zeros, with their checksums. The wrong map, for the negative proof.
 */
export async function nonZeroBmap(image: string): Promise<{ xml: string; mapped: number }> {
  const handle = await open(image, 'r');
  try {
    const { size } = await handle.stat();
    const read = async (first: number, last: number) => {
      const bytes = Buffer.alloc(Math.min((last + 1) * 4096, size) - first * 4096);
      await handle.read(bytes, 0, bytes.length, first * 4096);
      return bytes;
    };
    const ranges: BmapRange[] = [];
    const zero = Buffer.alloc(4096);
    const perRead = 1024;
    for (let block = 0; block * 4096 < size; block += perRead) {
      const bytes = await read(block, block + perRead - 1);
      for (let i = 0; i * 4096 < bytes.length; i++) {
        const data = bytes.subarray(i * 4096, (i + 1) * 4096);
        if (data.equals(zero.subarray(0, data.length))) continue;
        const last = ranges.at(-1);
        if (last && last.last === block + i - 1) last.last = block + i;
        else ranges.push({ first: block + i, last: block + i, sha256: '' });
      }
    }
    for (const r of ranges)
      r.sha256 = createHash('sha256')
        .update(await read(r.first, r.last))
        .digest('hex');
    return { xml: bmapXml({ imageSize: size, ranges }), mapped: ranges.reduce((n, r) => n + r.last - r.first + 1, 0) };
  } finally {
    await handle.close();
  }
}
