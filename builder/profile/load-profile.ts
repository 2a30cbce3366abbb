/**
 * Loading a profile (changesets style), one stage per module: parse the YAML keeping positions and
 * check it against the schema → expand pattern groups → run the cross-field rules → bind overlays →
 * resolve the files it names. Every problem is collected with its field and YAML line and reported
 * at once; a stage whose input has problems is not run.
 */
import { readFile } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { bindOverlays } from './bind-overlays.js';
import { expandNodes } from './expand.js';
import { parseProfile } from './parse.js';
import { profileError } from './problems.js';
import { resolveFiles } from './resolve-files.js';
import { checkCluster, checkRules } from './rules.js';
import { checkSwarm } from './swarm-rules.js';
import type { LoadedProfile, LoadOptions, NodeSpec, Problem } from './types.js';

export async function loadProfile(file: string, options: LoadOptions = {}): Promise<LoadedProfile> {
  const { profile, lineOf } = parseProfile(file, await readProfileText(file));
  const stopOn = (problems: Problem[]) => {
    if (problems.length > 0) throw profileError(file, problems, lineOf);
  };
  const { nodes, problems: expansion } = expandNodes(file, profile, options);
  stopOn(expansion);
  const rules = [...checkRules(nodes), ...checkCluster(profile, nodes)];
  const { overlays, problems: binding } = await bindOverlays(file, profile, nodes);
  const swarmRules = profile.swarm ? checkSwarm(profile.swarm, nodes) : [];
  const { swarm, admin, problems: files } = await resolveFiles(file, profile);
  stopOn([...rules, ...binding, ...swarmRules, ...files]);
  return {
    file,
    cluster: profile.cluster,
    ...(swarm ? { swarm } : {}),
    ...(admin ? { admin } : {}),
    etcHosts: profile.etcHosts ?? false,
    ...(profile.nfs ? { nfs: profile.nfs } : {}),
    ...(profile.output ? { output: profile.output } : {}),
    description: profile.description,
    sourceDateEpoch: profile.sourceDateEpoch,
    nodes: withBase(nodes, options.base).sort((a, b) => a.index - b.index),
    overlays,
  };
}

async function readProfileText(file: string): Promise<string> {
  return readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    const example = 'give the path of a profile such as profiles/pizero-otg.yaml';
    throw new UserError(
      error.code === 'ENOENT'
        ? `${file} does not exist; ${example}.`
        : error.code === 'EISDIR'
          ? `${file} is a folder, not a profile; ${example}.`
          : `${file} cannot be read: ${error.message}.`,
    );
  });
}

/**
 * `--base` replaces every imaged node's base image once the profile is valid: the rules still ask
 * the profile to name its own, so a profile validates the same with and without it.
 */
function withBase(nodes: NodeSpec[], image: string | undefined): NodeSpec[] {
  if (!image) return nodes;
  return nodes.map((node) => (node.board === 'pc' ? node : { ...node, base: { image } }));
}
