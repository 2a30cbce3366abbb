/**
 * swarmcard build PROFILE [--base IMAGE] [--nodes N] [--only LIST] [--out DIR] [--json]
 *   [--compress FORMAT[:LEVEL]]... [--keep-raw] [--release-url URL]
 * Writes dist/<cluster>/NN-<hostname>.img (or .img.xz / .img.zst) and .img.bmap for every node,
 * imager.json, manifest.json and SHA256SUMS.
 */

import { join } from 'node:path';
import type { Ext4Backend } from '../fs/partition.js';
import { formatBytes, log } from '../log.js';
import { readPreviousManifest } from '../output/manifest.js';
import { buildCluster } from '../pipeline/build-cluster.js';
import { parseOnly, planCluster } from '../plan/plan.js';
import { loadProfile } from '../profile/load-profile.js';
import { type ReleaseFlags, releaseSettings } from '../release/settings.js';
import { buildEpoch } from '../util/epoch.js';

export interface BuildCommandOptions {
  base?: string;
  nodes?: number;
  only?: string;
  out: string;
  json: boolean;
  ext4Backend?: Ext4Backend;
  version: string;
  release: ReleaseFlags;
}

export async function buildCommand(profileFile: string, options: BuildCommandOptions): Promise<void> {
  const profile = await loadProfile(profileFile, { nodes: options.nodes, base: options.base });
  const epoch = buildEpoch(profile.sourceDateEpoch);
  const plan = planCluster(profile, { epoch });
  const only = options.only !== undefined ? parseOnly(options.only, plan) : undefined;
  // --only keeps the previous manifest's other entries: it must be readable before anything is built.
  if (only) await readPreviousManifest(join(options.out, plan.cluster));
  const manifest = await buildCluster(plan, {
    out: options.out,
    only,
    epoch,
    secrets: { profileFile, joinTokenFile: profile.swarm?.join?.tokenFile, admin: profile.admin },
    ext4Backend: options.ext4Backend,
    toolVersion: options.version,
    release: releaseSettings(profile.output, options.release),
  });
  if (options.json) {
    process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
    return;
  }
  const dir = `${options.out}/${plan.cluster}`;
  for (const n of manifest.nodes) {
    const holds = n.secrets ? `  holds ${n.secrets.join(', ')}` : '';
    const what = `${n.hostname} (${n.role}, ${n.board}, ${n.release} ${n.arch}) ${formatBytes(n.size)}`;
    const image = n.artifacts.find((a) => a.kind !== 'bmap')!;
    process.stdout.write(`${dir}/${image.file}  ${what}${holds}\n`);
    for (const a of n.artifacts.filter((a) => a !== image))
      process.stdout.write(`${dir}/${a.file}  ${formatBytes(a.size)}\n`);
  }
  if (manifest.hostKit) process.stdout.write(`${dir}/${manifest.hostKit.file}\n`);
  process.stdout.write(`${dir}/imager.json\n${dir}/manifest.json\n${dir}/SHA256SUMS\n`);
  log.step(
    `built ${manifest.nodes.length} image(s) in ${dir}; ` +
      `flash node N with: sudo swarmcard flash ${dir} --node N --device /dev/sdX (swarmcard drives lists ` +
      `the cards), or open the cluster in Raspberry Pi Imager: rpi-imager --repo ${dir}/imager.json`,
  );
}
