/**
 * swarmcard merge SHARD_DIR… [--out DIR] [--json]
 * The cluster folders of `swarmcard build … --shard I/N` for every I → DIR/<cluster>/, a release
 * byte-identical to one build of every node (builder/pipeline/merge-shards.ts).
 */
import { log } from '../log.js';
import { mergeShards } from '../pipeline/merge-shards.js';

export async function mergeCommand(shardDirs: string[], options: { out: string; json: boolean }): Promise<void> {
  const { dir, manifest } = await mergeShards(shardDirs, options.out);
  if (options.json) {
    process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
    return;
  }
  for (const n of manifest.nodes) for (const a of n.artifacts) process.stdout.write(`${dir}/${a.file}\n`);
  if (manifest.hostKit) process.stdout.write(`${dir}/${manifest.hostKit.file}\n`);
  process.stdout.write(`${dir}/imager.json\n${dir}/manifest.json\n${dir}/SHA256SUMS\n`);
  log.step(
    `merged ${manifest.nodes.length} node image(s) into ${dir}; check them with: cd ${dir} && sha256sum -c SHA256SUMS`,
  );
}
