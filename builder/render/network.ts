/**
 * Release-aware network configuration, rendered as concrete edits (pure):
 * - dhcpcd (≤ bullseye): one marked block in /etc/dhcpcd.conf.
 * - NetworkManager (bookworm+; dhcpcd.conf is ignored there): one keyfile per interface in
 *   /etc/NetworkManager/system-connections, root-owned mode 0600 (NM skips keyfiles others can read),
 *   and for USB gadgets a udev rule undoing NM's default NM_UNMANAGED=1 for DEVTYPE=gadget.
 * - cloud-init (trixie): told to leave the network and the host name alone, so it agrees with the
 *   keyfiles and /etc/hostname swarmcard wrote (docs/raspios.md #1, #2, #4).
 */
import { pbkdf2Sync } from 'node:crypto';
import type { ImageEdit, PlannedInterface } from '../plan/edits.js';
import { connectionUuid } from '../plan/ids.js';
import type { Target } from './target.js';

export interface WifiSecret {
  ssid: string;
  passphrase: string;
}

/**
 * The 256-bit WPA key wpa_passphrase derives (PBKDF2-SHA1, SSID as salt): the image never holds
 * the passphrase itself.
 */
export function wpaPsk(wifi: WifiSecret): string {
  return pbkdf2Sync(wifi.passphrase, wifi.ssid, 4096, 32, 'sha1').toString('hex');
}

/** dhcpcd configures every interface by DHCP unless told otherwise: only static ones get lines. */
export function dhcpcdBlock(interfaces: PlannedInterface[]): string[] {
  return interfaces
    .filter((i) => i.address !== 'dhcp')
    .flatMap((i, n) => [
      ...(n > 0 ? [''] : []),
      `interface ${i.name}`,
      `static ip_address=${i.address}`,
      ...(i.gateway ? [`static routers=${i.gateway}`] : []),
      ...(i.dns.length > 0 ? [`static domain_name_servers=${i.dns.join(' ')}`] : []),
    ]);
}

/** GKeyFile string escaping (NetworkManager keyfiles). */
const keyfileString = (text: string) => text.replaceAll('\\', '\\\\').replace(/^ /, '\\s');

export function nmKeyfile(cluster: string, index: number, i: PlannedInterface, wifi?: WifiSecret): string {
  const ipv4 =
    i.address === 'dhcp'
      ? ['method=auto']
      : [
          'method=manual',
          `address1=${i.address}${i.gateway ? `,${i.gateway}` : ''}`,
          ...(i.dns.length > 0 ? [`dns=${i.dns.join(';')};`] : []),
          // A link without a gateway must never become the default route.
          ...(i.gateway ? [] : ['never-default=true']),
        ];
  const medium =
    i.kind === 'wifi'
      ? [
          '[wifi]',
          'mode=infrastructure',
          `ssid=${keyfileString(wifi!.ssid)}`,
          '',
          '[wifi-security]',
          'key-mgmt=wpa-psk',
          `psk=${wpaPsk(wifi!)}`,
        ]
      : ['[ethernet]'];
  return [
    '[connection]',
    `id=swarmcard-${i.name}`,
    `uuid=${connectionUuid(cluster, index, i.name)}`,
    `type=${i.kind === 'wifi' ? 'wifi' : 'ethernet'}`,
    `interface-name=${i.name}`,
    'autoconnect=true',
    '',
    ...medium,
    '',
    '[ipv4]',
    ...ipv4,
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

/**
 * Before bookworm, Raspberry Pi OS moves wpa_supplicant.conf from the boot partition into
 * /etc/wpa_supplicant at first boot. The SSID is written in hex and the key as its derived PSK, so
 * no quoting can break the file and the passphrase itself is not on the card.
 */
export function wpaSupplicantConf(country: string, wifi: WifiSecret): string {
  return [
    'ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev',
    'update_config=1',
    `country=${country}`,
    '',
    'network={',
    `\tssid=${Buffer.from(wifi.ssid, 'utf8').toString('hex')}`,
    `\tpsk=${wpaPsk(wifi)}`,
    '}',
    '',
  ].join('\n');
}

/**
 * Wi-Fi stays blocked until a country is set: the regulatory domain on the kernel command line
 * (as raspi-config does), and the rfkill soft-block pi-gen writes for the 5 GHz boards undone.
 */
function wifiCountryEdits(country: string): ImageEdit[] {
  const origin = 'core';
  return [
    { origin, op: 'cmdline', set: { 'cfg80211.ieee80211_regdom': country }, addToList: {}, remove: [] },
    ...['platform-3f300000.mmcnr:wlan', 'platform-fe300000.mmcnr:wlan'].map(
      (name): ImageEdit => ({
        origin,
        op: 'write',
        partition: 'root',
        path: `/var/lib/systemd/rfkill/${name}`,
        content: '0\n',
        mode: 0o644,
      }),
    ),
  ];
}

export function renderNetwork(
  target: Target,
  interfaces: PlannedInterface[],
  ids: { cluster: string; index: number },
  wifi?: WifiSecret,
): ImageEdit[] {
  const origin = 'core';
  // No stack at all is refused before a build when there are interfaces to configure.
  const stack = target.network ?? 'networkmanager';
  const wireless = interfaces.find((i) => i.kind === 'wifi');
  if (wireless && !wifi) throw new Error('a wifi interface needs the Wi-Fi secret');
  const country = wireless ? wifiCountryEdits(wireless.country!) : [];
  if (stack === 'dhcpcd') {
    const block = dhcpcdBlock(interfaces);
    return [
      ...(block.length > 0
        ? [
            {
              origin,
              op: 'block',
              partition: 'root',
              path: '/etc/dhcpcd.conf',
              block: 'network',
              lines: block,
              comment: '#',
            } as ImageEdit,
          ]
        : []),
      ...(wireless
        ? [
            {
              origin,
              op: 'write',
              partition: 'boot',
              path: '/wpa_supplicant.conf',
              content: wpaSupplicantConf(wireless.country!, wifi!),
            } as ImageEdit,
          ]
        : []),
      ...country,
    ];
  }
  const edits: ImageEdit[] = interfaces.map((i) => ({
    origin,
    op: 'write',
    partition: 'root',
    path: `/etc/NetworkManager/system-connections/swarmcard-${i.name}.nmconnection`,
    content: nmKeyfile(ids.cluster, ids.index, i, wifi),
    mode: 0o600,
    uid: 0,
    gid: 0,
  }));
  if (interfaces.some((i) => i.kind === 'usb-gadget'))
    edits.push({
      origin,
      op: 'write',
      partition: 'root',
      path: NM_GADGET_RULE_PATH,
      content: NM_GADGET_RULE,
      mode: 0o644,
    });
  return [...edits, ...country];
}

/** network-online.target means online: what raspi-config's "wait for network at boot" does. */
export function renderWaitOnline(target: Target): ImageEdit[] {
  const origin = 'core';
  if (target.network === 'dhcpcd') {
    return [
      {
        origin,
        op: 'write',
        partition: 'root',
        path: '/etc/systemd/system/dhcpcd.service.d/wait.conf',
        content: '[Service]\nExecStart=\nExecStart=/usr/lib/dhcpcd5/dhcpcd -q -w\n',
        mode: 0o644,
      },
    ];
  }
  return [
    {
      origin,
      op: 'symlink',
      partition: 'root',
      path: '/etc/systemd/system/network-online.target.wants/NetworkManager-wait-online.service',
      target: '/lib/systemd/system/NetworkManager-wait-online.service',
    },
  ];
}

export const CLOUD_INIT_DROPIN = '/etc/cloud/cloud.cfg.d/90-swarmcard.cfg';

/** cloud-init on trixie: keep the host name and network swarmcard wrote; a per-node instance id. */
export function renderCloudInit(ids: { cluster: string; index: number; hostname: string }): ImageEdit[] {
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
