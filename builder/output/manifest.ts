/**
 * dist/<cluster>/manifest.json and SHA256SUMS. Stable key order and sorted arrays, no timestamps:
 * the same build writes the same manifest. Never holds secrets.
 */

import { createHash } from 'node:crypto';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import type { ImageReport } from '../image/report.js';
import type { ClusterPlan, NodePlan } from '../plan/plan.js';
import type { BaseData } from '../profile/types.js';
import type { ArtifactKind } from '../release/settings.js';
import { secretsIn } from '../secrets/for-build.js';
import { withScope } from '../util/scope.js';

/** One file of a node's release: its raw image, a compressed copy or its bmap. */
export interface Artifact {
  kind: ArtifactKind;
  file: string;
  size: number;
  sha256: string;
}

export interface ManifestNode {
  index: number;
  hostname: string;
  role: string;
  board: string;
  /** The raw image's name, sha256 and size (also when only compressed copies are kept). */
  file: string;
  sha256: string;
  size: number;
  /** The files of this node in the cluster folder. */
  artifacts: Artifact[];
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
  /** Versions of the programs that wrote the artifacts. */
  tools: Record<string, string>;
  /** The container image the build ran in (`--in-docker`): its tag, its id and its Node.js version. */
  builder?: { image: string; id: string; node: string };
  nodes: ManifestNode[];
  hostKit?: { file: string; sha256: string };
  /** The Raspberry Pi Imager repository of the release. */
  imager?: { file: string; sha256: string };
}

/** Write a small file whole or not at all (staged as .partial, renamed). */
export async function writeFileAtomic(path: string, content: string): Promise<void> {
  await withScope(async (scope) => {
    const partial = `${path}.partial`;
    scope.defer(`remove ${partial}`, () => rm(partial, { force: true }));
    await writeFile(partial, content);
    await rename(partial, path);
  });
}

export async function writeManifest(dir: string, manifest: Manifest): Promise<void> {
  const nodes = [...manifest.nodes].sort((a, b) => a.index - b.index);
  const text = `${JSON.stringify({ ...manifest, nodes }, null, 2)}\n`;
  await writeFileAtomic(`${dir}/manifest.json`, text);
  const sums = [
    ...nodes.flatMap((n) => n.artifacts.map((a) => [a.sha256, a.file])),
    ...(manifest.hostKit ? [[manifest.hostKit.sha256, manifest.hostKit.file]] : []),
    ...(manifest.imager ? [[manifest.imager.sha256, manifest.imager.file]] : []),
    [createHash('sha256').update(text).digest('hex'), 'manifest.json'],
  ];
  // The format `sha256sum -c` reads: hash, two spaces, file name.
  await writeFileAtomic(`${dir}/SHA256SUMS`, sums.map(([sum, file]) => `${sum}  ${file}\n`).join(''));
}

/** A built node's entry: what the plan says about it, its base's release, its file's facts. */
export function manifestNode(
  node: NodePlan,
  base: Pick<ImageReport, 'release' | 'arch'>,
  file: { sha256: string; size: number },
  artifacts: Artifact[],
): ManifestNode {
  const secrets = secretsIn(node.edits);
  return {
    index: node.index,
    hostname: node.hostname,
    role: node.role,
    board: node.board,
    file: node.file,
    sha256: file.sha256,
    size: file.size,
    artifacts,
    diskId: node.diskId,
    release: base.release.codename,
    arch: base.arch.arch,
    interfaces: node.interfaces.map((i) => ({
      name: i.name,
      address: i.address,
      ...(i.gateway ? { gateway: i.gateway } : {}),
      ...(i.mac ? { mac: i.mac } : {}),
    })),
    ...(node.gadget ? { gadget: node.gadget } : {}),
    overlays: node.overlays.map((o) => o.id),
    ...(secrets.length > 0 ? { secrets } : {}),
  };
}

/**
 * The manifest a previous build left in `dir`, or undefined when there is none; a UserError when
 * it is not one (`--only` keeps its other entries, so it must be readable before anything is built).
 */
export async function readPreviousManifest(dir: string): Promise<Manifest | undefined> {
  const file = join(dir, 'manifest.json');
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  const nodes = (data as { nodes?: unknown } | undefined)?.nodes;
  if (typeof data !== 'object' || data === null || !Array.isArray(nodes) || nodes.some((n) => typeof n !== 'object'))
    throw new UserError(
      `${file} is not a swarmcard manifest, and --only keeps the other nodes' entries from it; ` +
        'rebuild without --only, or move that folder away.',
    );
  return data as Manifest;
}

/** Entries of a previous manifest for nodes this run did not rebuild (`--only`), all files present. */
export async function carriedOver(dir: string, plan: ClusterPlan, built: ManifestNode[]): Promise<ManifestNode[]> {
  const previous = await readPreviousManifest(dir);
  if (!previous || previous.cluster !== plan.cluster) return [];
  const rebuilt = new Set(built.map((n) => n.index));
  const planned = new Map(plan.nodes.map((n) => [n.index, n.file]));
  const kept: ManifestNode[] = [];
  for (const n of previous.nodes) {
    if (rebuilt.has(n.index) || planned.get(n.index) !== n.file || !Array.isArray(n.artifacts)) continue;
    const present = await Promise.all(
      n.artifacts.map((a) =>
        stat(join(dir, a.file)).then(
          (s) => s.size === a.size,
          () => false,
        ),
      ),
    );
    if (present.every(Boolean)) kept.push(n);
  }
  return kept;
}

/** The manifest of a build: its inputs (profile, bases, tool), its nodes and its host kit. */
export async function assembleManifest(build: {
  plan: ClusterPlan;
  toolVersion: string;
  epoch: number;
  bases: { spec: BaseData; sha256?: string; report: Pick<ImageReport, 'release' | 'arch'> }[];
  nodes: ManifestNode[];
  hostKit?: Manifest['hostKit'];
  tools: Record<string, string>;
  builder?: Manifest['builder'];
}): Promise<Manifest> {
  const { plan, hostKit } = build;
  return {
    cluster: plan.cluster,
    tool: { name: 'swarmcard', version: build.toolVersion },
    profile: {
      file: plan.profile.split('/').at(-1)!,
      sha256: createHash('sha256')
        .update(await readFile(plan.profile))
        .digest('hex'),
    },
    sourceDateEpoch: build.epoch,
    bases: build.bases.map((b) => ({
      image: b.spec.image.split('/').at(-1)!,
      ...(b.sha256 ? { sha256: b.sha256 } : {}),
      release: b.report.release.codename,
      arch: b.report.arch.arch,
    })),
    tools: build.tools,
    ...(build.builder ? { builder: build.builder } : {}),
    nodes: build.nodes,
    ...(hostKit ? { hostKit } : {}),
  };
}
