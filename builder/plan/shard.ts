/**
 * Shards of a build (`--shard I/N`): the node images of a plan cut into N contiguous runs of
 * positions (by index order) whose sizes differ by at most one, so N CI jobs each build one run and
 * `swarmcard merge` puts them together. Contiguous rather than round-robin: groups of a profile
 * are contiguous, so a shard needs only the base images of its own run. Pure.
 */
import { UserError } from '../errors.js';
import type { ClusterPlan, NodePlan } from './plan.js';

export interface Shard {
  /** 1-based. */
  index: number;
  count: number;
}

/** `2/8` → { index: 2, count: 8 }; one sentence naming the value otherwise. */
export function parseShard(text: string, maxCount: number): Shard {
  const match = /^([1-9]\d*)\/([1-9]\d*)$/.exec(text.trim());
  const [index, count] = [Number(match?.[1]), Number(match?.[2])];
  if (!match || index > count || count > maxCount)
    throw new UserError(
      `--shard must be I/N with 1 <= I <= N <= ${maxCount} (shard I of N, such as 2/8), not "${text}".`,
    );
  return { index, count };
}

/** The node images a cluster directory gets: every node but a PC host, in index order. */
export const imageNodes = (plan: ClusterPlan): NodePlan[] =>
  plan.nodes.filter((n) => n.board !== 'pc').sort((a, b) => a.index - b.index);

/** The node indices shard `index` of `count` builds (possibly none, when there are fewer nodes). */
export function shardIndices(plan: ClusterPlan, shard: Shard): Set<number> {
  const nodes = imageNodes(plan);
  const from = Math.floor(((shard.index - 1) * nodes.length) / shard.count);
  const to = Math.floor((shard.index * nodes.length) / shard.count);
  return new Set(nodes.slice(from, to).map((n) => n.index));
}
