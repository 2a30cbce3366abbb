/**
 * Release-aware network configuration, rendered as concrete edits (pure):
 * - dhcpcd (≤ bullseye): one marked block in /etc/dhcpcd.conf.
 * - NetworkManager (bookworm+; dhcpcd.conf is ignored there): one keyfile per interface in
 *   /etc/NetworkManager/system-connections, root-owned mode 0600 (NM skips keyfiles others can read),
 *   and for USB gadgets a udev rule undoing NM's default NM_UNMANAGED=1 for DEVTYPE=gadget.
 * - cloud-init (trixie): told to leave the network and the host name alone, so it agrees with the
 *   keyfiles and /etc/hostname swarmcard wrote (raspios-facts.md #1, #2, #4).
 */
import { createHash } from 'node:crypto';
import type { Edit, PlannedInterface } from '../plan/edits.js';

export type NetworkStack = 'dhcpcd' | 'networkmanager';

/** A stable UUID for a connection: a hash of cluster, node and interface, never random. */
export function connectionUuid(cluster: string, index: number, iface: string): string {
  const h = createHash('sha256').update(`swarmcard nm-connection\0${cluster}\0${index}\0${iface}`).digest('hex');
  // Shaped as a version 4 (random) UUID so NetworkManager accepts it; the bits come from the hash.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((Number.parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function dhcpcdBlock(interfaces: PlannedInterface[]): string[] {
  return interfaces.flatMap((i, n) => [
    ...(n > 0 ? [''] : []),
    `interface ${i.name}`,
    `static ip_address=${i.address}`,
    ...(i.gateway ? [`static routers=${i.gateway}`] : []),
    ...(i.dns.length > 0 ? [`static domain_name_servers=${i.dns.join(' ')}`] : []),
  ]);
}

export function nmKeyfile(cluster: string, index: number, i: PlannedInterface): string {
  return [
    '[connection]',
    `id=swarmcard-${i.name}`,
    `uuid=${connectionUuid(cluster, index, i.name)}`,
    'type=ethernet',
    `interface-name=${i.name}`,
    'autoconnect=true',
    '',
    '[ethernet]',
    '',
    '[ipv4]',
    'method=manual',
    `address1=${i.address}${i.gateway ? `,${i.gateway}` : ''}`,
    ...(i.dns.length > 0 ? [`dns=${i.dns.join(';')};`] : []),
    // A link without a gateway must never become the default route.
    ...(i.gateway ? [] : ['never-default=true']),
    '',
    '[ipv6]',
    'method=disabled',
    '',
  ].join('\n');
}

export const NM_GADGET_RULE_PATH = '/etc/udev/rules.d/90-swarmcard-nm-gadget.rules';
export const NM_GADGET_RULE =
  '# swarmcard: let NetworkManager manage USB gadget links (its 85-nm-unmanaged.rules leaves them unmanaged)\n' +
  'ENV{DEVTYPE}=="gadget", ENV{NM_UNMANAGED}="0"\n';

export function renderNetwork(stack: NetworkStack, interfaces: PlannedInterface[], ids: { cluster: string; index: number }): Edit[] {
  const origin = 'core';
  if (stack === 'dhcpcd') {
    return [{ origin, op: 'block', partition: 'root', path: '/etc/dhcpcd.conf', block: 'network', lines: dhcpcdBlock(interfaces), comment: '#' }];
  }
  const edits: Edit[] = interfaces.map((i) => ({
    origin,
    op: 'write',
    partition: 'root',
    path: `/etc/NetworkManager/system-connections/swarmcard-${i.name}.nmconnection`,
    content: nmKeyfile(ids.cluster, ids.index, i),
    mode: 0o600,
    uid: 0,
    gid: 0,
  }));
  if (interfaces.some((i) => i.kind === 'usb-gadget')) edits.push({ origin, op: 'write', partition: 'root', path: NM_GADGET_RULE_PATH, content: NM_GADGET_RULE, mode: 0o644 });
  return edits;
}

export const CLOUD_INIT_DROPIN = '/etc/cloud/cloud.cfg.d/90-swarmcard.cfg';

/** cloud-init on trixie: keep the host name and network swarmcard wrote; a per-node instance id. */
export function renderCloudInit(ids: { cluster: string; index: number; hostname: string }): Edit[] {
  return [
    {
      origin: 'core',
      op: 'write',
      partition: 'root',
      path: CLOUD_INIT_DROPIN,
      content: [
        '# swarmcard: this image carries its own host name, /etc/hosts and NetworkManager keyfiles.',
        'preserve_hostname: true',
        'manage_etc_hosts: false',
        'network:',
        '  config: disabled',
        '',
      ].join('\n'),
      mode: 0o644,
    },
    {
      origin: 'core',
      op: 'write',
      partition: 'boot',
      path: '/meta-data',
      content: `instance-id: swarmcard-${ids.cluster}-${ids.index}\nlocal-hostname: ${ids.hostname}\n`,
    },
  ];
}
