/**
 * What `swarmcard flash TARGET` writes: an image file (`.img`, `.img.xz`, `.img.zst`), or a node of
 * a cluster folder (`--node N|HOSTNAME`, read from its manifest.json). Finds the raw image's size
 * without decompressing it, the `.bmap` beside it, and the sha256 the manifest records for it.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.js';
import { run, ToolError } from '../exec/run.js';
import { detectCompression, type Compression as SourceCompression } from '../source/base-image.js';
import { assertNotBeingWritten } from '../util/folder-lock.js';
import { isFile } from '../util/is-file.js';
import { readBytes } from '../util/read-bytes.js';
import { type Bmap, readBmap } from './bmap.js';
import type { Compression, ImageFile } from './source.js';

/** A manifest node as flash reads it (artifacts: the compressed copies and the bmap, when built). */
export interface NodeEntry {
  index: number;
  hostname: string;
  file: string;
  sha256?: string;
  size?: number;
  /** The MBR disk identifier, 8 hex digits: how a card holding this node is recognised. */
  diskId?: string;
  artifacts?: { kind: string; file: string; size?: number; sha256?: string }[];
}

export interface FlashImage extends ImageFile {
  /** For messages: the file name, e.g. 03-otg3.img.xz. */
  name: string;
  bmap?: { path: string; map: Bmap };
  /** The raw image's sha256 as the cluster's manifest records it. */
  sha256?: string;
  node?: { index: number; hostname: string; cluster?: string };
}

const formats = '.img, .img.xz or .img.zst';

export async function readManifest(dir: string): Promise<{ cluster?: string; nodes: NodeEntry[] } | undefined> {
  const file = join(dir, 'manifest.json');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  let data: { cluster?: unknown; nodes?: unknown } | undefined;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  const nodes = data?.nodes;
  const valid =
    Array.isArray(nodes) &&
    nodes.every(
      (n: Partial<NodeEntry>) =>
        typeof n === 'object' &&
        n !== null &&
        Number.isInteger(n.index) &&
        typeof n.hostname === 'string' &&
        typeof n.file === 'string' &&
        !n.file.includes('/'),
    );
  if (!valid) throw new UserError(`${file} is not a swarmcard manifest; build the cluster again.`);
  return { cluster: typeof data?.cluster === 'string' ? data.cluster : undefined, nodes: nodes as NodeEntry[] };
}

function pickNode(dir: string, nodes: NodeEntry[], wanted: string): NodeEntry {
  const hit = /^\d+$/.test(wanted)
    ? nodes.find((n) => n.index === Number(wanted))
    : nodes.find((n) => n.hostname === wanted);
  if (hit) return hit;
  const some = nodes
    .slice(0, 8)
    .map((n) => `${n.index} ${n.hostname}`)
    .join(', ');
  throw new UserError(`${dir} has no node "${wanted}"; its nodes are ${some}${nodes.length > 8 ? ', …' : ''}.`);
}

/** The node's image file to read: raw if there, else .xz, else .zst. */
async function nodeFile(dir: string, node: NodeEntry): Promise<string> {
  const order = ['raw', 'xz', 'zst'];
  const listed = (node.artifacts ?? [])
    .filter((a) => order.includes(a.kind) && typeof a.file === 'string' && !a.file.includes('/'))
    .sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind))
    .map((a) => a.file);
  const candidates = [...listed, node.file, `${node.file}.xz`, `${node.file}.zst`];
  for (const file of candidates) if (await isFile(join(dir, file))) return join(dir, file);
  throw new UserError(
    `node ${node.index} (${node.hostname}) has no image in ${dir}: ${node.file} is missing; build it again.`,
  );
}

/** The raw size of a compressed image, from the archive's own index (no decompression). */
async function listedSize(path: string, compression: Exclude<Compression, 'none'>): Promise<number> {
  const refuse = (why: string): never => {
    throw new UserError(`${path} cannot be read as a .${compression === 'xz' ? 'xz' : 'zst'} file (${why}).`);
  };
  const result = await run(compression, compression === 'xz' ? ['--robot', '--list', path] : ['-lv', path], {
    allowFailure: true,
  }).catch((error: unknown) => (error instanceof ToolError ? refuse(error.stderr.trim()) : Promise.reject(error)));
  if (result.exitCode !== 0) refuse(result.stderr.trim().split('\n').at(-1) ?? `exit code ${result.exitCode}`);
  const size =
    compression === 'xz'
      ? /^file\t\d+\t\d+\t\d+\t(\d+)\t/m.exec(result.stdout)?.[1]
      : /Decompressed Size:.*\((\d+) B\)/.exec(result.stdout + result.stderr)?.[1];
  if (size === undefined)
    throw new UserError(
      `${path} does not record the size of the image inside (it was compressed from a pipe); ` +
        'compress the .img file itself again, or put its .bmap beside it.',
    );
  return Number(size);
}

/** The bmap beside an image: X.img.bmap for X.img, X.img.xz and X.img.zst (or X.img.xz.bmap). */
async function bmapBeside(path: string, node?: NodeEntry): Promise<string | undefined> {
  const dir = dirname(path);
  const listed = node?.artifacts?.find((a) => a.kind === 'bmap')?.file;
  const raw = basename(path).replace(/\.(xz|zst)$/i, '');
  const candidates = [
    ...(listed && !listed.includes('/') ? [listed] : []),
    ...(node ? [`${node.file}.bmap`] : []),
    `${basename(path)}.bmap`,
    `${raw}.bmap`,
  ];
  for (const file of candidates) if (await isFile(join(dir, file))) return join(dir, file);
  return undefined;
}

/** Resolve TARGET (and --node) to the file to read, its raw size, bmap and expected sha256. */
export async function resolveFlashImage(target: string, wanted?: string): Promise<FlashImage> {
  const st = await stat(target).catch(() => undefined);
  if (!st)
    throw new UserError(
      `${target} does not exist; give an image (${formats}) or a cluster folder (dist/<cluster>) with --node.`,
    );
  let path = target;
  let node: NodeEntry | undefined;
  let cluster: string | undefined;
  if (st.isDirectory()) {
    await assertNotBeingWritten(target, 'flashing from it');
    const manifest = await readManifest(target);
    if (!manifest)
      throw new UserError(`${target} is a folder without manifest.json; give an image file or a built cluster folder.`);
    if (wanted === undefined) {
      const some = manifest.nodes
        .slice(0, 8)
        .map((n) => `${n.index} ${n.hostname}`)
        .join(', ');
      throw new UserError(`${target} is a cluster: say which node to flash with --node N or HOSTNAME (${some}).`);
    }
    node = pickNode(target, manifest.nodes, wanted);
    cluster = manifest.cluster;
    path = await nodeFile(target, node);
  } else {
    if (!st.isFile()) throw new UserError(`${target} is not a file; give an image (${formats}).`);
    if (wanted !== undefined)
      throw new UserError(`--node picks a node of a cluster folder, and ${target} is an image file; leave --node out.`);
    // An image inside a built cluster folder: its manifest tells the sha256 to verify against.
    const manifest = await readManifest(dirname(target)).catch(() => undefined);
    const name = basename(target);
    node = manifest?.nodes.find(
      (n) =>
        n.file === name ||
        `${n.file}.xz` === name ||
        `${n.file}.zst` === name ||
        n.artifacts?.some((a) => a.file === name),
    );
    cluster = manifest?.cluster;
  }
  const found = await stat(path);
  if (found.size === 0) throw new UserError(`${path} is empty, not a disk image.`);
  const compression: SourceCompression = detectCompression(await readBytes(path, 0, 512), path);
  if (compression === 'gzip' || compression === 'zip')
    throw new UserError(
      `${path} is a .${compression === 'gzip' ? 'gz' : 'zip'} archive; flash writes ${formats} files.`,
    );
  const bmapPath = await bmapBeside(path, node);
  const bmap = bmapPath ? { path: bmapPath, map: await readBmap(bmapPath) } : undefined;
  const size =
    compression === 'none' ? found.size : (bmap?.map.imageSize ?? node?.size ?? (await listedSize(path, compression)));
  if (bmap && bmap.map.imageSize !== size)
    throw new UserError(
      `${bmap.path} describes an image of ${bmap.map.imageSize} bytes and ${path} holds ${size}; ` +
        'they do not belong together (make the bmap again, or move it away).',
    );
  if (node?.size !== undefined && node.size !== size)
    throw new UserError(
      `${path} holds an image of ${size} bytes and the cluster's manifest.json says ${node.size}; ` +
        'it belongs to another build (build the cluster again).',
    );
  return {
    path,
    name: basename(path),
    compression: compression as Compression,
    size,
    ...(bmap ? { bmap } : {}),
    ...(node?.sha256 && /^[0-9a-f]{64}$/.test(node.sha256) ? { sha256: node.sha256 } : {}),
    ...(node ? { node: { index: node.index, hostname: node.hostname, ...(cluster ? { cluster } : {}) } } : {}),
  };
}
