/**
 * shard.json: what a shard's cluster folder holds besides a release, for `swarmcard merge`. The
 * shard's own manifest.json is a release of its nodes only; shard.json adds what a single build of
 * every node would have known: the whole plan's node files, every base with its place in the plan
 * (a shard resolves only the bases its nodes use, a single build lists them in plan order), the
 * Imager settings and fingerprints of the cluster-wide secrets (never the secrets: see
 * docs/release.md "Sharded builds").
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import type { Shard } from '../plan/shard.js';
import type { ReleaseSettings } from '../release/settings.js';
import type { SecretValues } from '../secrets/for-build.js';
import type { Manifest } from './manifest.js';

export const SHARD_FILE = 'shard.json';

export interface ShardInfo {
  format: 1;
  shard: Shard;
  cluster: string;
  /** Every node image of the whole plan: index and file, in index order. */
  plan: { index: number; file: string }[];
  /** The indices this shard built. */
  nodes: number[];
  /** The manifest's bases of this shard, each with the plan position of the first node using it. */
  bases: { first: number; base: Manifest['bases'][number] }[];
  /** What the build releases (formats, levels, raw kept, URL, icon): the same in every shard. */
  release: ReleaseSettings;
  /** sha256 of the cluster public key and of the admin password's crypt hash (salted), when used. */
  secrets: Record<string, string>;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Fingerprints of the secrets a build generates once (shards must share them); nothing reversible. */
export function secretFingerprints(secrets: SecretValues): Record<string, string> {
  return {
    ...(secrets['cluster-public-key'] ? { clusterKey: sha256(secrets['cluster-public-key']) } : {}),
    ...(secrets['admin-password'] ? { adminPassword: sha256(secrets['admin-password']) } : {}),
  };
}

export const shardName = (info: Pick<ShardInfo, 'shard'>) => `shard ${info.shard.index}/${info.shard.count}`;

/** A shard folder's shard.json and manifest.json; a UserError naming the folder when it is not a shard. */
export async function readShard(dir: string): Promise<{ info: ShardInfo; manifest: Manifest }> {
  const read = async (name: string): Promise<unknown> => {
    const text = await readFile(join(dir, name), 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
      throw error;
    });
    if (text === undefined)
      throw new UserError(
        `${dir} holds no ${name}, so it is not a finished shard; give the cluster folders that ` +
          '"swarmcard build … --shard I/N" wrote (OUT/<cluster>), after each shard succeeded.',
      );
    try {
      return JSON.parse(text);
    } catch {
      throw new UserError(`${join(dir, name)} is not JSON; build that shard again.`);
    }
  };
  const info = (await read(SHARD_FILE)) as ShardInfo;
  const manifest = (await read('manifest.json')) as Manifest;
  const ok =
    info?.format === 1 &&
    Number.isInteger(info.shard?.index) &&
    Number.isInteger(info.shard?.count) &&
    Array.isArray(info.plan) &&
    Array.isArray(info.nodes) &&
    Array.isArray(info.bases) &&
    typeof info.release === 'object' &&
    Array.isArray(manifest?.nodes);
  if (!ok)
    throw new UserError(`${dir}: shard.json or manifest.json is not one swarmcard wrote; build that shard again.`);
  return { info, manifest };
}
