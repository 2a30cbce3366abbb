/**
 * swarmcard plan PROFILE [--nodes N] [--json]
 * Every node's derived values (index, hostname, file, disk id, MACs, addresses) and its edits,
 * without touching an image. Network edits are shown abstractly: the renderer (dhcpcd or
 * NetworkManager, cloud-init on trixie) is chosen at build time from the image's release.
 */
import { describeEdit } from '../plan/edits.js';
import { type ClusterPlan, planCluster } from '../plan/plan.js';
import { loadProfile } from '../profile/load-profile.js';
import { buildEpoch } from '../util/epoch.js';

export async function planCommand(profileFile: string, options: { nodes?: number; json: boolean }): Promise<void> {
  const profile = await loadProfile(profileFile, { nodes: options.nodes });
  const plan = planCluster(profile, { epoch: buildEpoch(profile.sourceDateEpoch) });
  process.stdout.write(options.json ? `${JSON.stringify(plan, null, 2)}\n` : renderPlan(plan));
}

export function renderPlan(plan: ClusterPlan): string {
  const lines = [
    `cluster ${plan.cluster}: ${plan.nodes.length} nodes, sourceDateEpoch ${plan.sourceDateEpoch} (${plan.profile})`,
  ];
  for (const n of plan.nodes) {
    const base = n.base ? `, base ${n.base.image.split('/').at(-1)}` : '';
    lines.push('', `${n.file}  ${n.role} on ${n.board}, disk id 0x${n.diskId}${base}`);
    if (n.gadget) lines.push(`  gadget MACs: host ${n.gadget.hostMac}, device ${n.gadget.devMac}`);
    if (n.swarm) {
      const s = n.swarm;
      const what =
        s.role === 'manager'
          ? `inits the swarm advertising ${s.address}; pushes the join token to every other node over SSH`
          : s.role === 'join'
            ? `joins the existing swarm at ${s.manager} as ${s.joinAs}`
            : `joins as ${s.joinAs} when the manager (${s.manager}) pushes the token to ${s.sshAddress}`;
      lines.push(
        `  swarm: ${what}; labels ${Object.entries(s.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',')}; Docker ${s.docker.method}${s.docker.version ? ` ${s.docker.version}` : ''}`,
      );
    }
    for (const i of n.interfaces) {
      const via = i.gateway ? ` via ${i.gateway}` : '';
      const dns = i.dns.length ? ` dns ${i.dns.join(',')}` : '';
      const link = i.kind === 'usb-host-link' ? ` (link to ${i.peer}, MAC ${i.mac})` : '';
      lines.push(`  ${i.name.padEnd(8)} ${i.address}${via}${dns}${link}`);
    }
    for (const e of n.edits) lines.push(`  - ${describeEdit(e)} [${e.origin}]`);
  }
  return `${lines.join('\n')}\n`;
}
