/**
 * Planning is pure: profile (+ loaded overlays) in, every node's derived values and edits out, no
 * image touched. Node k's values come from the profile and k only, so growing the cluster leaves
 * the others unchanged — except the host, which lists every gadget link plugged into it, the
 * manager, which lists every node, and every node when the profile asks for an /etc/hosts block.
 */
import { UserError } from '../errors.js';
import { formatDiskId } from '../formats/mbr.js';
import { planOperation } from '../overlay/operations/index.js';
import { parseCidr } from '../profile/ipv4.js';
import type { BaseData, Board, LoadedProfile, NodeSpec, Role } from '../profile/types.js';
import type { PlannedEdit, PlannedInterface } from './edits.js';
import { deriveDiskId, type GadgetMacs, gadgetMacs } from './ids.js';
import { managerAddressOf, managerEdits, managerOf, memberEdits, type NodeSwarm, nodeSwarm } from './swarm-plan.js';
import { adminEdits, daemonJsonEdits, gpioEdits, hostsEdits, nfsEdits } from './system-plan.js';

export interface NodePlan {
  index: number;
  hostname: string;
  role: Role;
  board: Board;
  /** Output file name: NN-hostname.img (NN zero-padded; wider when the cluster needs it). */
  file: string;
  /** MBR disk identifier (8 hex digits), derived from the cluster name and the index. */
  diskId: string;
  base?: BaseData;
  gadget?: GadgetMacs;
  interfaces: PlannedInterface[];
  overlays: { id: string; params: Record<string, unknown> }[];
  swarm?: NodeSwarm;
  edits: PlannedEdit[];
}

export interface ClusterPlan {
  cluster: string;
  description?: string;
  profile: string;
  sourceDateEpoch: number;
  nodes: NodePlan[];
}

/**
 * The config.txt overlay that makes this board's OTG port a USB gadget: Pi 5 and CM5 need
 * dr_mode=peripheral, plain dwc2 leaves them a host (docs/raspios.md #11).
 */
export function gadgetOverlayOf(board: string): string {
  return board === 'pi5' || board === 'cm5' ? 'dwc2,dr_mode=peripheral' : 'dwc2';
}

function interfacesOf(node: NodeSpec, gadget: GadgetMacs | undefined, all: NodeSpec[]): PlannedInterface[] {
  const own: PlannedInterface[] = node.interfaces.map((i) => ({
    name: i.name,
    kind: i.kind,
    address: i.address,
    ...(i.gateway ? { gateway: i.gateway } : {}),
    dns: i.dns ?? [],
    ...(i.country ? { country: i.country } : {}),
    ...(i.kind === 'usb-gadget' && gadget ? { mac: gadget.devMac } : {}),
  }));
  if (node.role !== 'host') return own;
  // The host end of every gadget link: named ethusbK by the gadget's host MAC, addressed with the
  // worker's gateway.
  const links = all.flatMap((peer) =>
    peer.interfaces
      .filter((i) => i.kind === 'usb-gadget' && i.gateway)
      .map(
        (i): PlannedInterface => ({
          name: `ethusb${peer.index}`,
          kind: 'usb-host-link',
          address: `${i.gateway}/${parseCidr(i.address)!.prefix}`,
          dns: [],
          mac: gadgetMacs(peer.index).hostMac,
          peer: peer.hostname,
        }),
      ),
  );
  return [...own, ...links];
}

/** Two overlays may ask for the same thing (both enable ssh.service): keep the first. */
function withoutRepeats(edits: PlannedEdit[]): PlannedEdit[] {
  const seen = new Set<string>();
  return edits.filter((e) => {
    const { origin: _origin, ...what } = e;
    const key = JSON.stringify(what);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function planCluster(profile: LoadedProfile, options: { epoch?: number } = {}): ClusterPlan {
  const epoch = options.epoch ?? profile.sourceDateEpoch;
  const swarm = profile.swarm;
  // Derived once per node: its gadget MACs, its interfaces and then (needing the manager's
  // address) its part in the swarm; the manager's node list reuses them.
  const derived = new Map(
    profile.nodes.map((spec) => {
      const gadget = spec.interfaces.some((i) => i.kind === 'usb-gadget') ? gadgetMacs(spec.index) : undefined;
      return [
        spec,
        { gadget, interfaces: interfacesOf(spec, gadget, profile.nodes), swarm: undefined as NodeSwarm | undefined },
      ];
    }),
  );
  let managerAddress = '';
  if (swarm) {
    const manager = managerOf(profile);
    managerAddress = managerAddressOf(
      swarm,
      manager && { hostname: manager.hostname, interfaces: derived.get(manager)!.interfaces },
    );
    for (const [spec, d] of derived)
      if (spec.board !== 'pc') d.swarm = nodeSwarm(spec, d.interfaces, swarm, managerAddress, epoch);
  }
  const hostEntries = profile.etcHosts
    ? [...derived].map(([spec, d]) => ({ hostname: spec.hostname, interfaces: d.interfaces }))
    : [];
  const members = [...derived].flatMap(([spec, d]) => (d.swarm ? [{ hostname: spec.hostname, swarm: d.swarm }] : []));
  const maxIndex = Math.max(...profile.nodes.map((n) => n.index));
  const width = Math.max(2, String(maxIndex).length);
  const summary = profile.nodes.map((n) => ({ index: n.index, hostname: n.hostname, role: n.role, board: n.board }));
  const nodes = profile.nodes.map((spec): NodePlan => {
    const { gadget, interfaces, swarm: nodeSwarmPlan } = derived.get(spec)!;
    const node = {
      index: spec.index,
      hostname: spec.hostname,
      role: spec.role,
      board: spec.board,
      file: `${String(spec.index).padStart(width, '0')}-${spec.hostname}.img`,
      diskId: formatDiskId(deriveDiskId(profile.cluster, spec.index)),
      ...(spec.base ? { base: spec.base } : {}),
      ...(gadget ? { gadget } : {}),
      interfaces,
      overlays: spec.overlays,
      ...(nodeSwarmPlan ? { swarm: nodeSwarmPlan } : {}),
    };
    const edits: PlannedEdit[] = [{ origin: 'core', op: 'hostname', hostname: spec.hostname }];
    if (interfaces.length > 0) edits.push({ origin: 'core', op: 'network', interfaces });
    for (const use of spec.overlays) {
      const overlay = profile.overlays.get(use.id)!;
      const context = {
        cluster: { name: profile.cluster, nodes: summary },
        node,
        params: use.params,
        board: { gadgetOverlay: gadgetOverlayOf(spec.board) },
        links: interfaces.filter((i) => i.kind === 'usb-host-link'),
      };
      try {
        for (const op of overlay.operations) edits.push(...planOperation(overlay, op, context));
      } catch (error) {
        throw new UserError(`overlay ${use.id} failed to render for ${spec.hostname}: ${(error as Error).message}`);
      }
    }
    if (swarm && nodeSwarmPlan) {
      if (nodeSwarmPlan.role === 'manager') {
        edits.push(...managerEdits(swarm, members, profile.overlays.get('swarm-node')!.files, profile.nfs));
      } else {
        edits.push(...memberEdits(swarm));
      }
    }
    if (swarm && nodeSwarmPlan) edits.push(...daemonJsonEdits(swarm, managerAddress));
    if (profile.admin) edits.push(...adminEdits(profile.admin));
    if (profile.etcHosts) edits.push(...hostsEdits(hostEntries));
    if (profile.nfs) edits.push(...nfsEdits(profile.nfs));
    if (spec.gpio) edits.push(...gpioEdits());
    return { ...node, edits: withoutRepeats(edits) };
  });
  return {
    cluster: profile.cluster,
    ...(profile.description ? { description: profile.description } : {}),
    profile: profile.file,
    sourceDateEpoch: epoch,
    nodes,
  };
}

/** `--only 2,4-6`: the indices to build; every one must be in the plan. */
export function parseOnly(text: string, plan: ClusterPlan): Set<number> {
  const wanted = new Set<number>();
  const known = new Set(plan.nodes.map((n) => n.index));
  const last = Math.max(...known);
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new UserError(`--only "${text}" is not a list of node indices such as 2,4-6.`);
    const [from, to] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (to < from) throw new UserError(`--only range ${part.trim()} runs backwards; write ${to}-${from}.`);
    // No index is above the plan's last, so a range need not be walked past it.
    for (let i = from; i <= to && (i === from || i <= last + 1); i++) wanted.add(i);
  }
  const missing = [...wanted].filter((i) => !known.has(i));
  if (missing.length > 0)
    throw new UserError(
      `--only names node ${missing.join(', ')}, which the plan does not have; it has ${[...known].join(', ')}.`,
    );
  return wanted;
}
