/**
 * Profile pipeline (changesets style): parse the YAML keeping positions → check it against the
 * schema → expand pattern groups → run the cross-field rules → load the overlays and check their
 * parameters. Every problem is collected with its field and YAML line and reported at once.
 */

import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { type Document, isNode, LineCounter, parseDocument } from 'yaml';
import { UserError } from '../errors.js';
import { checkParam, loadOverlay, type Overlay } from '../overlay/manifest.js';
import { ExpressionError, interpolate } from './expr.js';
import { type FieldPath, formatPath, type Problem, ProfileError } from './problems.js';
import { checkCluster, checkRules } from './rules.js';
import {
  type AdminData,
  type BaseData,
  type Board,
  ExplicitNode,
  type InterfaceData,
  type NfsData,
  PatternGroup,
  Profile,
  type ProfileData,
  type Role,
  type SwarmData,
} from './schema.js';
import { checkSwarm } from './swarm-rules.js';

export interface NodeSpec {
  index: number;
  hostname: string;
  role: Role;
  board: Board;
  base?: BaseData;
  interfaces: InterfaceData[];
  overlays: { id: string; params: Record<string, unknown> }[];
  /** Where the node (or its pattern group) is in the YAML, for error messages. */
  source: FieldPath;
  fromPattern: boolean;
  labels: Record<string, string>;
  gpio: boolean;
}

export interface LoadedAdmin extends Omit<AdminData, 'passwordFile'> {
  /** Absolute path of the plain password file (read and hashed at build). */
  passwordFile?: string;
}

export interface LoadedSwarm extends Omit<SwarmData, 'stacks' | 'join'> {
  stacks: { name: string; compose: string; env: Record<string, string> }[];
  /** Join mode: the existing manager and the absolute path of the token file (read at build). */
  join?: { manager: string; tokenFile: string };
}

export interface LoadedProfile {
  file: string;
  cluster: string;
  description?: string;
  sourceDateEpoch: number;
  nodes: NodeSpec[];
  overlays: Map<string, Overlay>;
  swarm?: LoadedSwarm;
  admin?: LoadedAdmin;
  etcHosts: boolean;
  nfs?: NfsData;
}

export interface LoadOptions {
  /** `--nodes N`: the count of the profile's pattern group. */
  nodes?: number;
}

/** Built-in overlays ship with swarmcard; a profile may add its own in <profile dir>/overlays. */
export function overlaySearchPath(profileFile: string): string[] {
  const builtIn = fileURLToPath(new URL('../../../overlays', import.meta.url));
  return [join(dirname(resolve(profileFile)), 'overlays'), builtIn];
}

function lineOf(doc: Document, counter: LineCounter, path: FieldPath): number | undefined {
  for (let p = path; ; p = p.slice(0, -1)) {
    const node = p.length === 0 ? doc.contents : doc.getIn(p, true);
    if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
    if (p.length === 0) return undefined;
  }
}

const toPath = (pointer: string): FieldPath =>
  pointer
    .split('/')
    .slice(1)
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replaceAll('~1', '/').replaceAll('~0', '~')));

function schemaProblems(schema: Parameters<typeof Value.Errors>[0], value: unknown, at: FieldPath): Problem[] {
  const problems: Problem[] = [];
  for (const error of Value.Errors(schema, value)) {
    const path = [...at, ...toPath(error.path)];
    if (error.message === 'Expected required property')
      problems.push({ path, message: `is missing; add ${String(path.at(-1))}` });
    else if (error.message === 'Unexpected property')
      problems.push({
        path,
        message: `is not a known field; remove it or fix its spelling (see profiles/schema.json)`,
      });
    else if (/^Expected union value/.test(error.message)) {
      const allowed = (error.schema as { anyOf?: { const?: unknown }[] }).anyOf
        ?.map((s) => s.const)
        .filter((c) => c !== undefined);
      problems.push({
        path,
        message: allowed?.length
          ? `must be one of ${allowed.join(', ')}, not ${JSON.stringify(error.value)}`
          : error.message,
      });
    } else {
      // A field may carry a `hint` in the schema that says the rule in words.
      const { hint, secret } = error.schema as { hint?: string; secret?: boolean };
      // A secret field's value is never echoed (it may be a plain password put in the wrong place).
      problems.push({
        path,
        message: `${hint ?? error.message.replace(/^Expected/, 'expected')}${secret ? '' : `, got ${JSON.stringify(error.value)}`}`,
      });
    }
  }
  // Nested union mismatches repeat the same field; keep the first word on each field.
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = formatPath(p.path);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export async function loadProfile(file: string, options: LoadOptions = {}): Promise<LoadedProfile> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new UserError(
      error.code === 'ENOENT'
        ? `${file} does not exist; give the path of a profile such as profiles/pizero-otg.yaml.`
        : `${file} cannot be read: ${error.message}.`,
    );
  });
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ProfileError(
      file,
      doc.errors.map((e) => ({
        line: e.linePos?.[0].line,
        path: [],
        message: `YAML syntax: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
      })),
    );
  }
  const data: unknown = doc.toJS();
  const problems: Problem[] = [];
  const fail = () => {
    // A pattern group repeats its problem for every node it makes: report each one once.
    const unique = [...new Map(problems.map((p) => [`${formatPath(p.path)}\0${p.message}`, p])).values()];
    return new ProfileError(
      file,
      unique.map((p) => ({ ...p, line: lineOf(doc, counter, p.path) })),
    );
  };

  // The top level first, with nodes checked one by one against their own kind for exact messages.
  const { nodes: _nodes, ...topLevel } = (data && typeof data === 'object' ? data : {}) as Record<string, unknown>;
  problems.push(...schemaProblems(Type.Omit(Profile, ['nodes']), topLevel, []));
  const rawNodes = (data as { nodes?: unknown }).nodes;
  if (!Array.isArray(rawNodes) || rawNodes.length === 0)
    problems.push({ path: ['nodes'], message: 'must list at least one node or pattern group' });
  else
    for (const [i, n] of rawNodes.entries()) {
      const kind = n && typeof n === 'object' && 'pattern' in n ? PatternGroup : ExplicitNode;
      problems.push(...schemaProblems(kind, n, ['nodes', i]));
    }
  if (problems.length > 0) throw fail();
  const profile = data as ProfileData;

  // Expand pattern groups.
  const groups = profile.nodes.map((g, i) => ({ g, i })).filter(({ g }) => 'pattern' in g);
  if (options.nodes !== undefined && groups.length !== 1) {
    throw new UserError(
      `--nodes sets the count of the profile's pattern group, but ${file} has ${groups.length === 0 ? 'none' : groups.length}; edit the profile instead.`,
    );
  }
  const profileDir = dirname(resolve(file));
  const resolveBase = (base?: BaseData): BaseData | undefined =>
    base && {
      ...base,
      image: /^[a-z]+:\/\//i.test(base.image) || isAbsolute(base.image) ? base.image : resolve(profileDir, base.image),
    };
  const nodes: NodeSpec[] = [];
  for (const [i, group] of profile.nodes.entries()) {
    const common = {
      role: group.role,
      board: group.board,
      base: resolveBase(group.base ?? profile.base),
      source: ['nodes', i] as FieldPath,
      labels: group.labels ?? {},
      gpio: group.gpio ?? false,
    };
    const overlaysOf = () => (group.overlays ?? []).map((o) => ({ id: o.id, params: { ...(o.params ?? {}) } }));
    if (!('pattern' in group)) {
      nodes.push({
        ...common,
        fromPattern: false,
        index: group.index,
        hostname: group.hostname,
        interfaces: group.interfaces ?? [],
        overlays: overlaysOf(),
      });
      continue;
    }
    const first = group.first ?? 1;
    const count = options.nodes ?? group.count;
    for (let k = first; k < first + count; k++) {
      const at = (field: FieldPath, template: string): string => {
        try {
          return interpolate(template, k);
        } catch (error) {
          if (!(error instanceof ExpressionError)) throw error;
          problems.push({ path: ['nodes', i, ...field], message: error.message });
          return template;
        }
      };
      nodes.push({
        ...common,
        fromPattern: true,
        index: k,
        hostname: at(['pattern'], group.pattern),
        interfaces: (group.interfaces ?? []).map((iface, j) => ({
          ...iface,
          address: at(['interfaces', j, 'address'], iface.address),
          ...(iface.gateway ? { gateway: at(['interfaces', j, 'gateway'], iface.gateway) } : {}),
        })),
        overlays: overlaysOf(),
      });
    }
  }
  if (problems.length > 0) throw fail();
  problems.push(...checkRules(nodes), ...checkCluster(profile, nodes));

  // Every node of a swarm gets the first-boot programs.
  if (profile.swarm)
    for (const node of nodes)
      if (node.board !== 'pc' && !node.overlays.some((o) => o.id === 'swarm-node'))
        node.overlays.push({ id: 'swarm-node', params: {} });
  // …and with an admin, the unit that installs the admin's keys.
  if (profile.admin)
    for (const node of nodes)
      if (node.board !== 'pc' && !node.overlays.some((o) => o.id === 'admin-user'))
        node.overlays.push({ id: 'admin-user', params: { user: profile.admin.user } });

  // Overlays: each must exist and get valid parameters; defaults are filled in.
  const overlays = new Map<string, Overlay>();
  const search = overlaySearchPath(file);
  // A pattern group's nodes share their overlay uses: report a problem once, for its first node.
  const groupsSeen = new Set<string>();
  for (const node of nodes) {
    const group = node.source.join();
    const firstOfGroup = !groupsSeen.has(group);
    groupsSeen.add(group);
    for (const [j, use] of node.overlays.entries()) {
      const path: FieldPath = [...node.source, 'overlays', j];
      let overlay = overlays.get(use.id);
      if (!overlay) {
        try {
          overlay = await loadOverlay(use.id, search);
          overlays.set(use.id, overlay);
        } catch (error) {
          if (!(error instanceof UserError)) throw error;
          if (firstOfGroup)
            problems.push({
              path: [...path, 'id'],
              message: `${error.message}; use one of the directories under overlays/`,
            });
          continue;
        }
      }
      for (const key of Object.keys(use.params)) {
        if (!(key in overlay.params) && firstOfGroup)
          problems.push({
            path: [...path, 'params', key],
            message: `is not a parameter of overlay ${use.id}; it takes ${Object.keys(overlay.params).join(', ') || 'none'}`,
          });
      }
      for (const [key, spec] of Object.entries(overlay.params)) {
        if (use.params[key] === undefined) {
          if (spec.default === undefined) {
            if (firstOfGroup)
              problems.push({
                path: [...path, 'params'],
                message: `overlay ${use.id} needs the parameter ${key} (${spec.description})`,
              });
            continue;
          }
          use.params[key] = spec.default;
        }
        const problem = checkParam(key, spec, use.params[key]);
        if (problem && firstOfGroup) problems.push({ path: [...path, 'params', key], message: problem });
      }
    }
  }
  // The swarm: stacks are read now (they go into the manager's image), the join token at build.
  let swarm: LoadedSwarm | undefined;
  if (profile.swarm) {
    problems.push(...checkSwarm(profile.swarm, nodes));
    const stacks: LoadedSwarm['stacks'] = [];
    for (const [j, stack] of (profile.swarm.stacks ?? []).entries()) {
      const compose = await readFile(resolve(profileDir, stack.compose), 'utf8').catch(() => undefined);
      if (compose === undefined)
        problems.push({
          path: ['swarm', 'stacks', j, 'compose'],
          message: `${stack.compose} does not exist next to the profile; give the path of a compose file`,
        });
      else stacks.push({ name: stack.name, compose, env: stack.env ?? {} });
    }
    const join = profile.swarm.join && {
      manager: profile.swarm.join.manager,
      tokenFile: resolve(profileDir, profile.swarm.join.tokenFile),
    };
    if (
      join &&
      !(await readFile(join.tokenFile).then(
        () => true,
        () => false,
      ))
    ) {
      problems.push({
        path: ['swarm', 'join', 'tokenFile'],
        message: `${profile.swarm.join!.tokenFile} does not exist next to the profile; put the worker join token (docker swarm join-token -q worker) in it`,
      });
    }
    swarm = { ...profile.swarm, stacks, ...(join ? { join } : {}) };
  }
  let admin: LoadedAdmin | undefined;
  if (profile.admin) {
    // A missing password file is made at the first build, with a fresh random password.
    const passwordFile = profile.admin.passwordFile && resolve(profileDir, profile.admin.passwordFile);
    admin = { ...profile.admin, ...(passwordFile ? { passwordFile } : {}) };
  }
  if (problems.length > 0) throw fail();
  return {
    file,
    cluster: profile.cluster,
    ...(swarm ? { swarm } : {}),
    ...(admin ? { admin } : {}),
    etcHosts: profile.etcHosts ?? false,
    ...(profile.nfs ? { nfs: profile.nfs } : {}),
    description: profile.description,
    sourceDateEpoch: profile.sourceDateEpoch,
    nodes: nodes.sort((a, b) => a.index - b.index),
    overlays,
  };
}
