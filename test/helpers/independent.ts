/**
 * Read images back with the standard tools directly (mtools, debugfs, sfdisk), never through
 * swarmcard's own editors, so a test passes only if the bytes on disk are right.
 */

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { execa } from 'execa';

export const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1', MTOOLSRC: '/dev/null' };

export interface SfdiskTable {
  id: string;
  partitions: { node: string; start: number; size: number; type: string }[];
}

export async function sfdisk(image: string): Promise<SfdiskTable> {
  const { stdout } = await execa('sfdisk', ['--json', image]);
  return (JSON.parse(stdout) as { partitiontable: SfdiskTable }).partitiontable;
}

export async function partitionOffsets(image: string): Promise<{ boot: number; root: number }> {
  const table = await sfdisk(image);
  return { boot: table.partitions[0]!.start * 512, root: table.partitions[1]!.start * 512 };
}

export async function mtypeBytes(image: string, path: string): Promise<Buffer> {
  const { boot } = await partitionOffsets(image);
  const { stdout } = await execa('mtype', ['-i', `${image}@@${boot}`, `::${path}`], {
    env: MTOOLS_ENV,
    encoding: 'buffer',
    stripFinalNewline: false,
  });
  return Buffer.from(stdout);
}

export async function mtype(image: string, path: string): Promise<string> {
  return (await mtypeBytes(image, path)).toString('utf8');
}

export async function mdir(image: string, path = '/'): Promise<string[]> {
  const { boot } = await partitionOffsets(image);
  const { stdout } = await execa('mdir', ['-b', '-a', '-i', `${image}@@${boot}`, `::${path}`], {
    env: MTOOLS_ENV,
    reject: false,
  });
  return stdout.split('\n').filter(Boolean);
}

export async function debugfs(image: string, request: string): Promise<{ stdout: string; stderr: string }> {
  const { root } = await partitionOffsets(image);
  const result = await execa('debugfs', ['-R', request, `${image}?offset=${root}`], {
    stripFinalNewline: false,
    reject: false,
  });
  return { stdout: result.stdout, stderr: result.stderr };
}

export async function debugfsBytes(image: string, path: string): Promise<Buffer> {
  const { root } = await partitionOffsets(image);
  const result = await execa('debugfs', ['-R', `cat "${path}"`, `${image}?offset=${root}`], {
    encoding: 'buffer',
    reject: false,
    stripFinalNewline: false,
  });
  if (/not found/.test(Buffer.from(result.stderr).toString())) throw new Error(`${path} not found in ${image}`);
  return Buffer.from(result.stdout);
}

export async function debugfsCat(image: string, path: string): Promise<string> {
  return (await debugfsBytes(image, path)).toString('utf8');
}

export interface InodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkTarget?: string;
}

/** `debugfs stat`, parsed here independently of swarmcard's parser. */
export async function debugfsStat(image: string, path: string): Promise<InodeInfo | undefined> {
  const { stdout } = await debugfs(image, `stat "${path}"`);
  const type = /Type: (\w+)/.exec(stdout)?.[1];
  if (!type) return undefined;
  return {
    type,
    mode: Number.parseInt(/Mode:\s+(\d+)/.exec(stdout)![1]!, 8),
    uid: Number(/User:\s+(\d+)/.exec(stdout)![1]),
    gid: Number(/Group:\s+(\d+)/.exec(stdout)![1]),
    mtime: Number.parseInt(/ mtime: 0x([0-9a-f]+)/.exec(stdout)![1]!, 16),
    linkTarget: /Fast link dest: "(.*)"/.exec(stdout)?.[1],
  };
}

/** e2fsck -fn on the root partition: the filesystem is consistent. */
export async function e2fsckClean(image: string): Promise<{ ok: boolean; output: string }> {
  const { root } = await partitionOffsets(image);
  const { stdout: size } = await execa('sfdisk', ['--json', image]);
  const part = (JSON.parse(size) as { partitiontable: SfdiskTable }).partitiontable.partitions[1]!;
  // e2fsck has no offset option: check through a private sparse slice of the partition.
  const slice = `${image}.root-check`;
  await execa('dd', [
    `if=${image}`,
    `of=${slice}`,
    'bs=512',
    `skip=${root / 512}`,
    `count=${part.size}`,
    'conv=sparse',
    'status=none',
  ]);
  const result = await execa('e2fsck', ['-fn', slice], { reject: false, all: true });
  await execa('rm', ['-f', slice]);
  return { ok: result.exitCode === 0, output: result.all ?? '' };
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
