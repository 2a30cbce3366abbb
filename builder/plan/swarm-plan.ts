/**
 * Who does what in the swarm (pure): the manager inits and advertises its cluster address; every
 * other node waits for the manager to push the token over SSH (or, in join mode, joins an existing
 * swarm itself). A worker's part depends only on the profile and its own index.
 */

import type { LoadedProfile, LoadedSwarm, NfsData, NodeSpec } from '../profile/types.js';
import { shellQuote } from '../text/shell.js';
import { firstStaticAddress, type PlannedEdit, type PlannedInterface } from './edits.js';
import { builtInStacks } from './system-plan.js';

export interface NodeSwarm {
  /** manager: runs swarm init; worker: joins when the manager pushes; join: joins an existing swarm. */
  role: 'manager' | 'worker' | 'join';
  /** What it joins as. */
  joinAs: 'manager' | 'worker';
  /** --advertise-addr: its cluster address, or an interface name when it has no static address. */
  address: string;
  /** Where the manager reaches it over SSH. */
  sshAddress: string;
  /** The manager's cluster address (host[:port]). */
  manager: string;
  labels: Record<string, string>;
  epoch: number;
  docker: { method: string; version: string };
  interval: number;
  /** Seconds after swarm init at which the manager deploys without the nodes still missing. */
  deployAfter: number;
}

/** The default grace period before the stacks are deployed without a node that never came. */
export const DEPLOY_AFTER = 600;

export function managerOf(profile: LoadedProfile): NodeSpec | undefined {
  return profile.swarm?.manager ? profile.nodes.find((n) => n.hostname === profile.swarm!.manager) : undefined;
}

export function nodeSwarm(
  spec: NodeSpec,
  interfaces: PlannedInterface[],
  swarm: LoadedSwarm,
  managerAddress: string,
  epoch: number,
): NodeSwarm {
  const isManager = swarm.manager === spec.hostname;
  const own = (isManager ? swarm.advertise : undefined) ?? firstStaticAddress(interfaces);
  return {
    role: swarm.join ? 'join' : isManager ? 'manager' : 'worker',
    joinAs: spec.role === 'manager' ? 'manager' : 'worker',
    // Without a static address Docker takes the interface's address when it starts (DHCP).
    address: own ?? interfaces[0]?.name ?? 'eth0',
    // Without a static address, Raspberry Pi OS announces <hostname>.local over mDNS (avahi).
    sshAddress: own ?? `${spec.hostname}.local`,
    manager: swarm.join ? swarm.join.manager : managerAddress,
    labels: Object.fromEntries(
      Object.entries({
        role: spec.role,
        board: spec.board,
        ...(spec.gpio ? { gpio: 'true' } : {}),
        ...spec.labels,
      }).sort(([a], [b]) => a.localeCompare(b)),
    ),
    epoch,
    docker: { method: swarm.docker.method, version: swarm.docker.version ?? '' },
    interval: swarm.interval ?? 30,
    deployAfter: swarm.deployAfter ?? DEPLOY_AFTER,
  };
}

/**
 * The manager's address as the others know it: `advertise`, else its first static address (a
 * host: its first gadget link), else its mDNS name (DHCP; the manager then tells each worker its
 * real address when it pushes the token).
 */
export function managerAddressOf(
  swarm: LoadedSwarm,
  manager: { hostname: string; interfaces: PlannedInterface[] } | undefined,
): string {
  return swarm.advertise ?? (manager && (firstStaticAddress(manager.interfaces) ?? `${manager.hostname}.local`)) ?? '';
}

/** Files only the manager carries: the planned nodes, networks, stacks and the cluster key. */
export function managerEdits(
  swarm: LoadedSwarm,
  members: { hostname: string; swarm: NodeSwarm }[],
  overlayFiles: ReadonlyMap<string, Buffer>,
  nfs?: NfsData,
): PlannedEdit[] {
  const origin = 'swarm';
  const nodes = members.map(
    (m) =>
      `${m.hostname} ${m.swarm.sshAddress} ${m.swarm.joinAs} ${Object.entries(m.swarm.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')}`,
  );
  const edits: PlannedEdit[] = [
    {
      origin,
      op: 'write',
      partition: 'root',
      path: '/etc/swarmcard/nodes',
      content: `# hostname ssh-address joins-as labels\n${nodes.join('\n')}\n`,
      mode: 0o644,
    },
    { origin, op: 'secret', partition: 'root', path: '/etc/swarmcard/cluster_key', secret: 'cluster-key', mode: 0o600 },
  ];
  if (swarm.networks?.length)
    edits.push({
      origin,
      op: 'write',
      partition: 'root',
      path: '/etc/swarmcard/networks',
      content: `${swarm.networks.map((n) => n.name).join('\n')}\n`,
      mode: 0o644,
    });
  // Built-in stacks first: user stacks may push to the registry.
  for (const stack of [
    ...builtInStacks(swarm, overlayFiles),
    ...swarm.stacks.map((st) => ({ ...st, dirs: [] as string[] })),
  ]) {
    edits.push({
      origin,
      op: 'write',
      partition: 'root',
      path: `/etc/swarmcard/stacks/${stack.name}.yml`,
      content: stack.compose,
      mode: 0o644,
    });
    // Bind-mount sources a stack needs (swarm refuses a missing one).
    if (stack.dirs.length > 0)
      edits.push({
        origin,
        op: 'write',
        partition: 'root',
        path: `/etc/swarmcard/stacks/${stack.name}.dirs`,
        content: stack.dirs.map((d) => `${d}\n`).join(''),
        mode: 0o644,
      });
    // The shared mounts it stores data on: the manager deploys it only once they are mounted.
    const mounts = sharedMountsOf([...stack.dirs, stack.compose], nfs);
    if (mounts.length > 0)
      edits.push({
        origin,
        op: 'write',
        partition: 'root',
        path: `/etc/swarmcard/stacks/${stack.name}.mounts`,
        content: mounts.map((m) => `${m}\n`).join(''),
        mode: 0o644,
      });
    const env = Object.entries(stack.env);
    if (env.length > 0)
      edits.push({
        origin,
        op: 'write',
        partition: 'root',
        path: `/etc/swarmcard/stacks/${stack.name}.env`,
        content: env.map(([k, v]) => `${k}=${shellQuote(v)}\n`).join(''),
        mode: 0o644,
      });
  }
  return edits;
}

/**
 * The NFS mount points that paths or compose files use (a path under one, or under /shared, which
 * links into one), in the profile's order. Nothing else in swarm formation waits for them.
 */
export function sharedMountsOf(texts: string[], nfs: NfsData | undefined): string[] {
  if (!nfs) return [];
  const escapeRegExp = (path: string) => path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const uses = (path: string) =>
    texts.some((text) => new RegExp(`(^|[\\s"'\\[:,=])${escapeRegExp(path)}(?=$|[\\s"'/:,\\]}])`, 'm').test(text));
  const under = (path: string, mount: string) => path === mount || path.startsWith(`${mount}/`);
  return nfs.mounts
    .map((m) => m.path)
    .filter((mount) => uses(mount) || (nfs.shared !== undefined && uses('/shared') && under(nfs.shared, mount)));
}

export function memberEdits(swarm: LoadedSwarm): PlannedEdit[] {
  const origin = 'swarm';
  if (swarm.join)
    return [
      { origin, op: 'secret', partition: 'root', path: '/etc/swarmcard/join-token', secret: 'join-token', mode: 0o600 },
    ];
  return [
    {
      origin,
      op: 'secret',
      partition: 'root',
      path: '/root/.ssh/authorized_keys',
      secret: 'authorized-key',
      mode: 0o600,
    },
  ];
}
