/**
 * swarmcard build PROFILE [--base IMAGE] [--nodes N] [--only LIST] [--out DIR] [--json]
 *   [--compress FORMAT[:LEVEL]]... [--keep-raw] [--release-url URL] [--shard I/N]
 * Writes dist/<cluster>/NN-<hostname>.img (or .img.xz / .img.zst) and .img.bmap for every node,
 * imager.json, manifest.json and SHA256SUMS; with --shard only shard I of N and shard.json, for
 * `swarmcard merge`.
 */

import { join } from 'node:path';
import { UserError } from '../errors.js';
import type { Ext4Backend } from '../fs/partition.js';
import { formatBytes, log } from '../log.js';
import { readPreviousManifest } from '../output/manifest.js';
import { buildCluster } from '../pipeline/build-cluster.js';
import { parseOnly, planCluster } from '../plan/plan.js';
import { parseShard, shardIndices } from '../plan/shard.js';
import { loadProfile } from '../profile/load-profile.js';
import { MAX_NODES } from '../profile/schema.js';
import { type ReleaseFlags, releaseSettings } from '../release/settings.js';
import { buildEpoch } from '../util/epoch.js';

export interface BuildCommandOptions {
  base?: string;
  nodes?: number;
  only?: string;
  shard?: string;
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
  if (options.shard !== undefined && options.only !== undefined)
    throw new UserError('--shard and --only do not go together: a shard builds the nodes its I/N gives it.');
  const shard = options.shard !== undefined ? parseShard(options.shard, MAX_NODES) : undefined;
  const only = shard
    ? shardIndices(plan, shard)
    : options.only !== undefined
      ? parseOnly(options.only, plan)
      : undefined;
  // --only keeps the previous manifest's other entries: it must be readable before anything is built.
  if (only && !shard) await readPreviousManifest(join(options.out, plan.cluster));
  if (shard) log.step(`shard ${shard.index}/${shard.count}: nodes ${[...only!].join(', ') || 'none'}`);
  const release = releaseSettings(profile.output, options.release);
  if (options.release.keepRaw && release.compress.length === 0)
    log.warn('--keep-raw changes nothing here: no compression is asked for, so raw images are what the build writes.');
  const manifest = await buildCluster(plan, {
    out: options.out,
    only,
    shard,
    epoch,
    secrets: {
      profileFile,
      joinTokenFile: profile.swarm?.join?.tokenFile,
      admin: profile.admin,
      // Shards on separate CI runners would each make different ones: they must all read the same.
      ...(shard
        ? {
            refuseToCreate:
              'and a shard must not make secrets the other shards would not share; make them once with ' +
              `"swarmcard secrets ${profileFile}" and give every shard the same files (see docs/release.md).`,
          }
        : {}),
    },
    ext4Backend: options.ext4Backend,
    toolVersion: options.version,
    release,
  });
  if (options.json) {
    process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
    return;
  }
  const dir = `${options.out}/${plan.cluster}`;
  // --only: the nodes carried over come first in the manifest; the list is in node order.
  for (const n of [...manifest.nodes].sort((a, b) => a.index - b.index)) {
    const holds = n.secrets ? `  holds ${n.secrets.join(', ')}` : '';
    const image = n.artifacts.find((a) => a.kind !== 'bmap')!;
    const size = image.kind === 'raw' ? formatBytes(n.size) : `${formatBytes(image.size)}, ${formatBytes(n.size)} raw`;
    const what = `${n.hostname} (${n.role}, ${n.board}, ${n.release} ${n.arch}) ${size}`;
    process.stdout.write(`${dir}/${image.file}  ${what}${holds}\n`);
    for (const a of n.artifacts.filter((a) => a !== image))
      process.stdout.write(`${dir}/${a.file}  ${formatBytes(a.size)}\n`);
  }
  if (manifest.hostKit) process.stdout.write(`${dir}/${manifest.hostKit.file}\n`);
  process.stdout.write(`${dir}/imager.json\n${dir}/manifest.json\n${dir}/SHA256SUMS\n`);
  if (shard) {
    process.stdout.write(`${dir}/shard.json\n`);
    log.step(
      `built shard ${shard.index}/${shard.count}; once every shard is built: swarmcard merge SHARD_DIR… --out DIR`,
    );
    return;
  }
  // --only counts the images it made (a pc node in the list has none).
  const made = only ? manifest.nodes.filter((n) => only.has(n.index)).length : manifest.nodes.length;
  log.step(
    `built ${only ? `${made} of ${manifest.nodes.length}` : made} image(s) in ${dir}; ` +
      `flash node N with: sudo swarmcard flash ${dir} --node N --device /dev/sdX (swarmcard drives lists ` +
      `the cards), or open the cluster in Raspberry Pi Imager: rpi-imager --repo ${dir}/imager.json`,
  );
}
