/**
 * dist/<cluster>/manifest.json and SHA256SUMS. Stable key order and sorted arrays, no timestamps:
 * the same build writes the same manifest. Never holds secrets.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';

export interface ManifestNode {
  index: number;
  hostname: string;
  role: string;
  board: string;
  file: string;
  sha256: string;
  size: number;
  diskId: string;
  release: string;
  arch: string;
  interfaces: { name: string; address: string; gateway?: string; mac?: string }[];
  gadget?: { hostMac: string; devMac: string };
  overlays: string[];
  /** What secrets the image holds, by name (never their values). */
  secrets?: string[];
}

export interface Manifest {
  cluster: string;
  tool: { name: 'swarmcard'; version: string };
  profile: { file: string; sha256: string };
  sourceDateEpoch: number;
  bases: { image: string; sha256?: string; release: string; arch: string }[];
  nodes: ManifestNode[];
  hostKit?: { file: string; sha256: string };
}

export async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function writeAtomic(path: string, content: string): Promise<void> {
  await writeFile(`${path}.partial`, content);
  await rename(`${path}.partial`, path);
}

export async function writeManifest(dir: string, manifest: Manifest): Promise<void> {
  const nodes = [...manifest.nodes].sort((a, b) => a.index - b.index);
  await writeAtomic(`${dir}/manifest.json`, `${JSON.stringify({ ...manifest, nodes }, null, 2)}\n`);
  const sums = [...nodes.map((n) => [n.sha256, n.file]), ...(manifest.hostKit ? [[manifest.hostKit.sha256, manifest.hostKit.file]] : [])];
  // The format `sha256sum -c` reads: hash, two spaces, file name.
  await writeAtomic(`${dir}/SHA256SUMS`, sums.map(([sum, file]) => `${sum}  ${file}\n`).join(''));
}
