/**
 * Expand: explicit nodes and pattern groups become one node list, in YAML order. A pattern group
 * makes nodes first … first+count-1 (`--nodes N` sets its count), its strings interpolated with
 * `{k}`. Base image paths are made absolute (relative to the profile); URLs are kept.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { ExpressionError, interpolate } from './expr.js';
import type { BaseData, FieldPath, LoadOptions, NodeSpec, Problem, ProfileData } from './types.js';

export function expandNodes(
  file: string,
  profile: ProfileData,
  options: LoadOptions,
): { nodes: NodeSpec[]; problems: Problem[] } {
  const groups = profile.nodes.filter((g) => 'pattern' in g).length;
  if (options.nodes !== undefined && groups !== 1) {
    throw new UserError(
      `--nodes sets the count of the profile's pattern group, but ${file} has ${groups === 0 ? 'none' : groups}; ` +
        'edit the profile instead.',
    );
  }
  const profileDir = dirname(resolve(file));
  const resolveBase = (base?: BaseData): BaseData | undefined =>
    base && {
      ...base,
      image: /^[a-z]+:\/\//i.test(base.image) || isAbsolute(base.image) ? base.image : resolve(profileDir, base.image),
    };
  const nodes: NodeSpec[] = [];
  const problems: Problem[] = [];
  for (const [i, group] of profile.nodes.entries()) {
    const common = {
      role: group.role,
      board: group.board,
      base: resolveBase(group.base ?? profile.base),
      source: ['nodes', i] as FieldPath,
      labels: group.labels ?? {},
      gpio: group.gpio ?? false,
    };
    // Every node gets its own copy: binding fills in each node's parameter defaults.
    const overlays = () => (group.overlays ?? []).map((o) => ({ id: o.id, params: { ...(o.params ?? {}) } }));
    if (!('pattern' in group)) {
      nodes.push({
        ...common,
        fromPattern: false,
        index: group.index,
        hostname: group.hostname,
        interfaces: group.interfaces ?? [],
        overlays: overlays(),
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
        overlays: overlays(),
      });
    }
  }
  return { nodes, problems };
}
