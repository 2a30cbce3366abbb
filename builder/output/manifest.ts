/**
 * dist/<cluster>/manifest.json and SHA256SUMS. Stable key order and sorted arrays, no timestamps:
 * the same build writes the same manifest. Never holds secrets.
 */
import { rename, writeFile } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';

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

// Hashing a 2.7 GiB image is ~2 s of CPU: a worker thread does it while the main thread goes on
// with the next node (its child processes, its event loop), so the two overlap on two cores.
const hashWorker = `
const { parentPort, workerData } = require('node:worker_threads');
const hash = require('node:crypto').createHash('sha256');
require('node:fs').createReadStream(workerData, { highWaterMark: 4 * 1024 * 1024 })
  .on('data', (chunk) => hash.update(chunk))
  .on('error', (error) => { throw error; })
  .on('end', () => parentPort.postMessage(hash.digest('hex')));
`;

export function sha256Of(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(hashWorker, { eval: true, workerData: path });
    worker.once('message', (digest: string) => resolve(digest));
    worker.once('error', reject);
    worker.once('exit', (code) => code !== 0 && reject(new Error(`hashing ${path} stopped with code ${code}`)));
  });
}

async function writeAtomic(path: string, content: string): Promise<void> {
  await writeFile(`${path}.partial`, content);
  await rename(`${path}.partial`, path);
}

export async function writeManifest(dir: string, manifest: Manifest): Promise<void> {
  const nodes = [...manifest.nodes].sort((a, b) => a.index - b.index);
  await writeAtomic(`${dir}/manifest.json`, `${JSON.stringify({ ...manifest, nodes }, null, 2)}\n`);
  const sums = [
    ...nodes.map((n) => [n.sha256, n.file]),
    ...(manifest.hostKit ? [[manifest.hostKit.sha256, manifest.hostKit.file]] : []),
  ];
  // The format `sha256sum -c` reads: hash, two spaces, file name.
  await writeAtomic(`${dir}/SHA256SUMS`, sums.map(([sum, file]) => `${sum}  ${file}\n`).join(''));
}
