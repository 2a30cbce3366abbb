/**
 * Bind overlays: the overlays each node uses (its own, plus swarm-node in a swarm and admin-user
 * with an admin), each loaded once, its parameters checked against the overlay's manifest and its
 * defaults filled in.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import { checkParam, loadOverlay, type Overlay } from '../overlay/manifest.js';
import { uniqueBy } from '../util/unique.js';
import { formatPath } from './problems.js';
import type { FieldPath, NodeSpec, OverlayBinding, Problem, ProfileData } from './types.js';

/** Built-in overlays ship with swarmcard; a profile may add its own in <profile dir>/overlays. */
export function overlaySearchPath(profileFile: string): string[] {
  const builtIn = fileURLToPath(new URL('../../../overlays', import.meta.url));
  return [join(dirname(resolve(profileFile)), 'overlays'), builtIn];
}

/** Loads every overlay the nodes use; adds the implied ones to `nodes` and fills in parameter defaults. */
export async function bindOverlays(
  file: string,
  profile: ProfileData,
  nodes: NodeSpec[],
): Promise<{ overlays: Map<string, Overlay>; problems: Problem[] }> {
  addImpliedOverlays(profile, nodes);
  const overlays = new Map<string, Overlay>();
  /** Why an overlay cannot be used, by id. */
  const unusable = new Map<string, string>();
  const search = overlaySearchPath(file);
  for (const id of new Set(nodes.flatMap((n) => n.overlays.map((o) => o.id)))) {
    try {
      overlays.set(id, await loadOverlay(id, search));
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      unusable.set(id, error.message);
    }
  }
  // A pattern group's nodes share their overlay uses: check them once, on the group's first node.
  const problems = uniqueBy(nodes, (n) => formatPath(n.source)).flatMap((node) =>
    node.overlays.flatMap((use, j) => {
      const path: FieldPath = [...node.source, 'overlays', j];
      const overlay = overlays.get(use.id);
      return overlay ? paramProblems(use, overlay, path) : [{ path: [...path, 'id'], message: unusable.get(use.id)! }];
    }),
  );
  for (const node of nodes)
    for (const use of node.overlays)
      for (const [key, spec] of Object.entries(overlays.get(use.id)?.params ?? {}))
        if (use.params[key] === undefined && spec.default !== undefined) use.params[key] = spec.default;
  return { overlays, problems };
}

/** Every node of a swarm gets the first-boot programs; with an admin, the unit that installs the admin's keys. */
function addImpliedOverlays(profile: ProfileData, nodes: NodeSpec[]): void {
  const implied = [
    ...(profile.swarm ? [{ id: 'swarm-node', params: {} }] : []),
    ...(profile.admin ? [{ id: 'admin-user', params: { user: profile.admin.user } }] : []),
  ];
  for (const { id, params } of implied)
    for (const node of nodes)
      if (node.board !== 'pc' && !node.overlays.some((o) => o.id === id))
        node.overlays.push({ id, params: { ...params } });
}

function paramProblems(use: OverlayBinding, overlay: Overlay, path: FieldPath): Problem[] {
  const problems: Problem[] = [];
  const takes = Object.keys(overlay.params).join(', ') || 'none';
  for (const key of Object.keys(use.params)) {
    if (!(key in overlay.params))
      problems.push({
        path: [...path, 'params', key],
        message: `is not a parameter of overlay ${use.id}; it takes ${takes}`,
      });
  }
  for (const [key, spec] of Object.entries(overlay.params)) {
    const value = use.params[key] === undefined ? spec.default : use.params[key];
    if (value === undefined) {
      problems.push({
        path: [...path, 'params'],
        message: `overlay ${use.id} needs the parameter ${key} (${spec.description})`,
      });
      continue;
    }
    const problem = checkParam(key, spec, value);
    if (problem) problems.push({ path: [...path, 'params', key], message: problem });
  }
  return problems;
}
