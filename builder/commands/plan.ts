/**
 * swarmcard plan PROFILE [--nodes N] [--json]
 * Every node's derived values (index, hostname, file, disk id, MACs, addresses) and its edits,
 * without touching an image. Network edits are shown abstractly: the renderer (dhcpcd or
 * NetworkManager, cloud-init on trixie) is chosen at build time from the image's release.
 */
import { describeEdit } from '../plan/edits.js';
import { planCluster, type ClusterPlan } from '../plan/plan.js';
import { loadProfile } from '../profile/load-profile.js';

export async function planCommand(profileFile: string, options: { nodes?: number; json: boolean }): Promise<void> {
  const plan = planCluster(await loadProfile(profileFile, { nodes: options.nodes }));
  process.stdout.write(options.json ? `${JSON.stringify(plan, null, 2)}\n` : renderPlan(plan));
}

export function renderPlan(plan: ClusterPlan): string {
  const lines = [`cluster ${plan.cluster}: ${plan.nodes.length} nodes, sourceDateEpoch ${plan.sourceDateEpoch} (${plan.profile})`];
  for (const n of plan.nodes) {
    lines.push('', `${n.file}  ${n.role} on ${n.board}, disk id 0x${n.diskId}${n.base ? `, base ${n.base.image.split('/').at(-1)}` : ''}`);
    if (n.gadget) lines.push(`  gadget MACs: host ${n.gadget.hostMac}, device ${n.gadget.devMac}`);
    for (const i of n.interfaces) lines.push(`  ${i.name.padEnd(8)} ${i.address}${i.gateway ? ` via ${i.gateway}` : ''}${i.dns.length ? ` dns ${i.dns.join(',')}` : ''}${i.kind === 'usb-host-link' ? ` (link to ${i.peer}, MAC ${i.mac})` : ''}`);
    for (const e of n.edits) lines.push(`  - ${describeEdit(e)} [${e.origin}]`);
  }
  return `${lines.join('\n')}\n`;
}
