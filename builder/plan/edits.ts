/**
 * The edits a plan lists per node, from a closed set. Overlay operations and core steps both become
 * these. A plan's edits (`PlannedEdit`) may be abstract (network, admin, waitOnline, secret): they
 * are rendered at build time for the release found in the image (`render/for-release.ts`) into
 * `ImageEdit`s, which `pipeline/apply-edits.ts` applies with one handler per kind.
 */
export type Partition = 'boot' | 'root';

export type SecretKind =
  | 'cluster-key'
  | 'cluster-public-key'
  | 'authorized-key'
  | 'join-token'
  | 'admin-password'
  | 'wifi';
export const secretNames: Record<SecretKind, string> = {
  'cluster-key': 'the cluster SSH private key',
  'cluster-public-key': 'the cluster public key (not a secret)',
  'authorized-key': 'the cluster public key (not a secret)',
  'join-token': 'the swarm join token',
  'admin-password': "the admin's password hash",
  wifi: 'the Wi-Fi passphrase',
};

/** Secrets that fill a whole file (the others are rendered into files: password hash, Wi-Fi). */
export type FileSecret = Exclude<SecretKind, 'admin-password' | 'wifi'>;

export interface PlannedInterface {
  name: string;
  kind: 'usb-gadget' | 'ethernet' | 'wifi' | 'usb-host-link';
  /** Address with prefix, e.g. 10.0.11.2/24, or dhcp. */
  address: string;
  /** wifi: the regulatory country (ISO 3166 alpha-2). */
  country?: string;
  gateway?: string;
  dns: string[];
  /** usb-host-link: the gadget's host-side MAC, which names the interface on the host. */
  mac?: string;
  /** usb-host-link: the worker at the other end. */
  peer?: string;
}

/**
 * The first static address (without prefix): own interfaces come before a host's links; undefined
 * when all use DHCP.
 */
export function firstStaticAddress(interfaces: PlannedInterface[]): string | undefined {
  return interfaces.find((i) => i.address !== 'dhcp')?.address.split('/')[0];
}

interface Base {
  /** `core` or the overlay id that asked for it. */
  origin: string;
}

/** Edits an image takes as they are: the same in the plan and at build. */
type ConcreteEdit =
  | { op: 'write'; partition: Partition; path: string; content: string; mode?: number; uid?: number; gid?: number }
  | { op: 'cmdline'; set: Record<string, string>; addToList: Record<string, string[]>; remove: string[] }
  | { op: 'configTxt'; block: string; section: string; lines: string[] }
  | {
      op: 'block';
      partition: Partition;
      path: string;
      block: string;
      lines: string[];
      comment: string;
      mode?: number;
    }
  | { op: 'symlink'; partition: 'root'; path: string; target: string }
  | { op: 'mkdir'; path: string; mode: number }
  | { op: 'remove'; partition: Partition; path: string; recursive: boolean }
  | { op: 'hostname'; hostname: string }
  /** Set top-level keys of a JSON file, keeping the others (e.g. /etc/docker/daemon.json). */
  | { op: 'json'; partition: 'root'; path: string; set: Record<string, unknown>; mode: number };

/** Edits whose bytes depend on the image's release or on the secrets file: rendered at build. */
type AbstractEdit =
  /** A file whose content is a secret: filled in at build time from the secrets file, never planned. */
  | { op: 'secret'; partition: 'root'; path: string; secret: FileSecret; mode: number }
  | { op: 'network'; interfaces: PlannedInterface[] }
  /** The admin user: userconf.txt, or cloud-init user-data on trixie; the hash is a secret. */
  | { op: 'admin'; user: string; authorizedKeys: string[] }
  /** Boot waits for the network (network-online.target means online), for NFS mounts. */
  | { op: 'waitOnline' };

/** What the plan lists per node: concrete edits and the abstract ones rendering resolves. */
export type PlannedEdit = Base & (ConcreteEdit | AbstractEdit);

/**
 * What an image takes (`pipeline/apply-edits.ts`): concrete edits only, so the compiler proves
 * every abstract edit was rendered. `partUuids` (disk identity) never appears in a plan.
 */
export type ImageEdit = Base &
  (
    | ConcreteEdit
    /** Point every `PARTUUID=<from>-NN` in a file at the disk id `to` (docs/raspios.md #5). */
    | { op: 'partUuids'; partition: Partition; path: string; from: string; to: string }
  );

/** One line per edit, for `swarmcard plan` and build logs. */
export function describeEdit(edit: PlannedEdit): string {
  const mode = (m?: number) => (m === undefined ? '' : ` (${m.toString(8).padStart(4, '0')})`);
  switch (edit.op) {
    case 'write':
      return `${edit.partition}: write ${edit.path}${mode(edit.mode)}`;
    case 'cmdline':
      return `boot: cmdline.txt ${[
        ...Object.entries(edit.set).map(([k, v]) => `${k}=${v}`),
        ...Object.entries(edit.addToList).map(([k, v]) => `${k}+=${v.join(',')}`),
        ...edit.remove.map((k) => `-${k}`),
      ].join(' ')}`;
    case 'configTxt':
      return `boot: config.txt block ${edit.block} under [${edit.section}]: ${edit.lines.join('; ')}`;
    case 'block':
      return `${edit.partition}: block ${edit.block} in ${edit.path}`;
    case 'symlink':
      return `root: link ${edit.path} -> ${edit.target}`;
    case 'mkdir':
      return `root: directory ${edit.path}${mode(edit.mode)}`;
    case 'remove':
      return `${edit.partition}: remove ${edit.path}${edit.recursive ? ' (recursive)' : ''}`;
    case 'hostname':
      return `root: hostname ${edit.hostname} (/etc/hostname, /etc/hosts)`;
    case 'secret':
      return `root: write ${edit.path}${mode(edit.mode)} with ${secretNames[edit.secret]}, filled in at build`;
    case 'network':
      return `root: network ${edit.interfaces
        .map(
          (i) =>
            `${i.name}${i.kind === 'wifi' ? ` (Wi-Fi, ${i.country})` : ''} ${i.address}` +
            (i.gateway ? ` via ${i.gateway}` : ''),
        )
        .join(', ')} (dhcpcd or NetworkManager by release)`;
    case 'admin':
      return (
        `user ${edit.user} with sudo, password hash from the profile or secrets file, ` +
        `${edit.authorizedKeys.length} authorized key(s) (userconf.txt, or cloud-init user-data on trixie)`
      );
    case 'waitOnline':
      return 'root: boot waits for the network (NetworkManager-wait-online, or dhcpcd -w)';
    case 'json':
      return `root: set ${Object.keys(edit.set).join(', ')} in ${edit.path}${mode(edit.mode)}`;
  }
}
