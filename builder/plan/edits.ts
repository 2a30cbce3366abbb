/**
 * The edits a plan lists per node, from a closed set. Overlay operations and core steps both become
 * these; `build/apply-edits.ts` has one handler per kind. `hostname` and `network` stay abstract
 * in the plan and are rendered at build time for the release found in the image.
 */
export type Partition = 'boot' | 'root';

export type SecretKind = 'cluster-key' | 'authorized-key' | 'join-token';
export const secretNames: Record<SecretKind, string> = {
  'cluster-key': 'the cluster SSH private key',
  'authorized-key': 'the cluster public key (not a secret)',
  'join-token': 'the swarm join token',
};

export interface PlannedInterface {
  name: string;
  kind: 'usb-gadget' | 'ethernet' | 'usb-host-link';
  /** Address with prefix, e.g. 10.0.11.2/24. */
  address: string;
  gateway?: string;
  dns: string[];
  /** usb-host-link: the gadget's host-side MAC, which names the interface on the host. */
  mac?: string;
  /** usb-host-link: the worker at the other end. */
  peer?: string;
}

interface Base {
  /** `core` or the overlay id that asked for it. */
  origin: string;
}

export type Edit = Base &
  (
    | { op: 'write'; partition: Partition; path: string; content: string; mode?: number; uid?: number; gid?: number }
    | { op: 'cmdline'; set: Record<string, string>; addToList: Record<string, string[]>; remove: string[] }
    | { op: 'configTxt'; block: string; section: string; lines: string[] }
    | { op: 'block'; partition: Partition; path: string; block: string; lines: string[]; comment: string; mode?: number }
    | { op: 'symlink'; partition: 'root'; path: string; target: string }
    | { op: 'mkdir'; path: string; mode: number }
    | { op: 'remove'; partition: Partition; path: string; recursive: boolean }
    | { op: 'hostname'; hostname: string }
    /** A file whose content is a secret: filled in at build time from the secrets file, never planned. */
    | { op: 'secret'; partition: 'root'; path: string; secret: SecretKind; mode: number }
    | { op: 'network'; interfaces: PlannedInterface[] }
  );

/** One line per edit, for `swarmcard plan` and build logs. */
export function describeEdit(edit: Edit): string {
  const mode = (m?: number) => (m === undefined ? '' : ` (${m.toString(8).padStart(4, '0')})`);
  switch (edit.op) {
    case 'write':
      return `${edit.partition}: write ${edit.path}${mode(edit.mode)}`;
    case 'cmdline':
      return `boot: cmdline.txt ${[...Object.entries(edit.set).map(([k, v]) => `${k}=${v}`), ...Object.entries(edit.addToList).map(([k, v]) => `${k}+=${v.join(',')}`), ...edit.remove.map((k) => `-${k}`)].join(' ')}`;
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
      return `root: network ${edit.interfaces.map((i) => `${i.name} ${i.address}${i.gateway ? ` via ${i.gateway}` : ''}`).join(', ')} (dhcpcd or NetworkManager by release)`;
  }
}
