/**
 * Planning is pure: profile (+ loaded overlays) in, every node's derived values and edits out, no
 * image touched. Node k's values come from the profile and k only, so growing the cluster leaves
 * the others unchanged — except the host, which lists every gadget link plugged into it, the
 * manager, which lists every node, and every node when the profile asks for an /etc/hosts block.
 */
import { UserError } from '../errors.js';
import { deriveDiskId } from '../image/identity.js';
import { formatDiskId } from '../image/mbr.js';
import type { OperationData, Overlay } from '../overlay/manifest.js';
import { render } from '../overlay/template.js';
import { parseCidr } from '../profile/ipv4.js';
import type { BaseData, Board, LoadedProfile, NodeSpec, Role } from '../profile/types.js';
import type { Edit, PlannedInterface } from './edits.js';
import { type GadgetMacs, gadgetMacs } from './gadget-mac.js';
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
  edits: Edit[];
}

export interface ClusterPlan {
  cluster: string;
  description?: string;
  profile: string;
  sourceDateEpoch: number;
  nodes: NodePlan[];
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

const modeOf = (mode?: string) => (mode === undefined ? undefined : Number.parseInt(mode, 8));

/** Turn one overlay operation into edits for a node (templates rendered, `when` applied). */
function overlayEdits(
  overlay: Overlay,
  op: OperationData,
  context: { params: Record<string, unknown> } & object,
): Edit[] {
  const t = (text: string) => render(text, context);
  const origin = overlay.id;
  const when = Object.values(op)[0]!.when;
  if (when) {
    const negate = when.startsWith('!');
    if (Boolean(context.params[when.replace(/^!/, '')]) === negate) return [];
  }
  if ('file' in op) {
    const o = op.file;
    return [
      {
        origin,
        op: 'write',
        partition: o.partition ?? 'root',
        path: t(o.path),
        content: overlay.files.get(o.source)!.toString('utf8'),
        mode: modeOf(o.mode),
        uid: o.uid,
        gid: o.gid,
      },
    ];
  }
  if ('template' in op) {
    const o = op.template;
    return [
      {
        origin,
        op: 'write',
        partition: o.partition ?? 'root',
        path: t(o.path),
        content: t(overlay.files.get(o.source)!.toString('utf8')),
        mode: modeOf(o.mode),
        uid: o.uid,
        gid: o.gid,
      },
    ];
  }
  if ('cmdline' in op) {
    const o = op.cmdline;
    return [
      {
        origin,
        op: 'cmdline',
        set: Object.fromEntries(Object.entries(o.set ?? {}).map(([k, v]) => [k, t(v)])),
        addToList: Object.fromEntries(Object.entries(o.addToList ?? {}).map(([k, v]) => [k, v.map(t)])),
        remove: o.remove ?? [],
      },
    ];
  }
  if ('configTxt' in op)
    return [
      {
        origin,
        op: 'configTxt',
        block: op.configTxt.block,
        section: op.configTxt.section,
        lines: op.configTxt.lines.map(t),
      },
    ];
  if ('block' in op) {
    const o = op.block;
    return [
      {
        origin,
        op: 'block',
        partition: o.partition ?? 'root',
        path: t(o.path),
        block: o.block,
        lines: o.lines.map(t).flatMap((l) => l.split('\n')),
        comment: o.comment ?? '#',
        mode: modeOf(o.mode),
      },
    ];
  }
  if ('enableUnit' in op) {
    const o = op.enableUnit;
    // systemd enables a unit with a symlink in <target>.wants; no chroot or systemctl needed.
    const ownUnit = overlay.operations.some(
      (other) =>
        ('file' in other && other.file.path.endsWith(`/${o.unit}`)) ||
        ('template' in other && other.template.path.endsWith(`/${o.unit}`)),
    );
    const target = o.target ?? 'multi-user.target';
    return [
      {
        origin,
        op: 'symlink',
        partition: 'root',
        path: `/etc/systemd/system/${target}.wants/${o.unit}`,
        target: ownUnit ? `/etc/systemd/system/${o.unit}` : `/lib/systemd/system/${o.unit}`,
      },
    ];
  }
  const o = op.remove;
  return [{ origin, op: 'remove', partition: o.partition ?? 'root', path: t(o.path), recursive: o.recursive ?? false }];
}

/** Two overlays may ask for the same thing (both enable ssh.service): keep the first. */
function withoutRepeats(edits: Edit[]): Edit[] {
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
    const edits: Edit[] = [{ origin: 'core', op: 'hostname', hostname: spec.hostname }];
    if (interfaces.length > 0) edits.push({ origin: 'core', op: 'network', interfaces });
    for (const use of spec.overlays) {
      const overlay = profile.overlays.get(use.id)!;
      const context = {
        cluster: { name: profile.cluster, nodes: summary },
        node,
        params: use.params,
        links: interfaces.filter((i) => i.kind === 'usb-host-link'),
      };
      try {
        for (const op of overlay.operations) edits.push(...overlayEdits(overlay, op, context));
      } catch (error) {
        throw new UserError(`overlay ${use.id} failed to render for ${spec.hostname}: ${(error as Error).message}`);
      }
    }
    if (swarm && nodeSwarmPlan) {
      if (nodeSwarmPlan.role === 'manager') {
        edits.push(...managerEdits(swarm, members));
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
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new UserError(`--only "${text}" is not a list of node indices such as 2,4-6.`);
    const [from, to] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (to < from) throw new UserError(`--only range ${part.trim()} runs backwards; write ${to}-${from}.`);
    for (let i = from; i <= to; i++) wanted.add(i);
  }
  const known = new Set(plan.nodes.map((n) => n.index));
  const missing = [...wanted].filter((i) => !known.has(i));
  if (missing.length > 0)
    throw new UserError(
      `--only names node ${missing.join(', ')}, which the plan does not have; it has ${[...known].join(', ')}.`,
    );
  return wanted;
}
