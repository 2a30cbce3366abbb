/**
 * Cluster-wide system setup (pure): the admin user and its keys, /etc/hosts, NFS mounts, GPIO,
 * and the private registry and Portainer the manager runs. Each function returns the edits for
 * one node; secrets stay abstract (`secret`, `admin`) and are filled in at build.
 */

import { render } from '../overlay/template.js';
import type { LoadedAdmin, LoadedSwarm, NfsData } from '../profile/types.js';
import { firstStaticAddress, type PlannedEdit, type PlannedInterface } from './edits.js';

/** Where the admin-user overlay's first-boot unit finds the keys it installs into the admin's ~/.ssh. */
export const ADMIN_DIR = '/etc/swarmcard/admin';

export function adminEdits(admin: LoadedAdmin): PlannedEdit[] {
  const origin = 'admin';
  const edits: PlannedEdit[] = [
    { origin, op: 'admin', user: admin.user, authorizedKeys: admin.authorizedKeys ?? [] },
    {
      origin,
      op: 'write',
      partition: 'root',
      path: `${ADMIN_DIR}/authorized_keys`,
      content: (admin.authorizedKeys ?? []).map((k) => `${k}\n`).join(''),
      mode: 0o644,
    },
    // The official switch: sshd enabled at first boot (also on images without the swarm overlay).
    { origin, op: 'write', partition: 'boot', path: '/ssh', content: '' },
  ];
  if (admin.clusterKey) {
    edits.push(
      { origin, op: 'secret', partition: 'root', path: `${ADMIN_DIR}/id_ed25519`, secret: 'cluster-key', mode: 0o600 },
      {
        origin,
        op: 'secret',
        partition: 'root',
        path: `${ADMIN_DIR}/id_ed25519.pub`,
        secret: 'cluster-public-key',
        mode: 0o644,
      },
    );
  }
  return edits;
}

export interface HostEntry {
  hostname: string;
  interfaces: PlannedInterface[];
}

/** Every node with a static address, by its first one: `ADDRESS<TAB>NAME`. */
export function hostsEdits(nodes: HostEntry[]): PlannedEdit[] {
  const lines = nodes.flatMap((n) => {
    const address = firstStaticAddress(n.interfaces);
    return address ? [`${address}\t${n.hostname}`] : [];
  });
  return [
    { origin: 'hosts', op: 'block', partition: 'root', path: '/etc/hosts', block: 'cluster', lines, comment: '#' },
  ];
}

// nofail: a NAS that is down or not there yet must not fail remote-fs.target at boot; first boot waits for
// the mounts only where shared storage is needed.
export const NFS_OPTIONS = 'rw,nofail,_netdev,x-systemd.mount-timeout=60';

/** /etc/fstab lines, the mount points, /shared, and a boot that waits for the network. */
export function nfsEdits(nfs: NfsData): PlannedEdit[] {
  const origin = 'nfs';
  const lines = nfs.mounts.map((m) => `${nfs.server}:${m.export}\t${m.path}\tnfs4\t${m.options ?? NFS_OPTIONS}\t0\t0`);
  const edits: PlannedEdit[] = [
    { origin, op: 'block', partition: 'root', path: '/etc/fstab', block: 'nfs', lines, comment: '#' },
    ...nfs.mounts.map((m): PlannedEdit => ({ origin, op: 'mkdir', path: m.path, mode: 0o755 })),
    { origin, op: 'waitOnline' },
    // The first-boot script waits for these before anything uses shared storage.
    {
      origin,
      op: 'write',
      partition: 'root',
      path: '/etc/swarmcard/mounts',
      content: nfs.mounts.map((m) => `${m.path}\n`).join(''),
      mode: 0o644,
    },
  ];
  if (nfs.shared) edits.push({ origin, op: 'symlink', partition: 'root', path: '/shared', target: nfs.shared });
  return edits;
}

export const GPIO_RULE_PATH = '/etc/udev/rules.d/90-swarmcard-gpio.rules';

/** /dev/gpiomem for the gpio group, as Raspberry Pi OS sets it, stated here so the node does not depend on it. */
export function gpioEdits(): PlannedEdit[] {
  return [
    {
      origin: 'gpio',
      op: 'write',
      partition: 'root',
      path: GPIO_RULE_PATH,
      content: [
        '# swarmcard: containers on this node drive GPIO through /dev/gpiomem (group gpio)',
        'SUBSYSTEM=="bcm2835-gpiomem", KERNEL=="gpiomem", GROUP="gpio", MODE="0660"',
        'SUBSYSTEM=="rpi-gpiomem", KERNEL=="gpiomem*", GROUP="gpio", MODE="0660"',
        '',
      ].join('\n'),
      mode: 0o644,
    },
  ];
}

/** The registry's addresses as nodes pull from it: the manager's address and name, on its port. */
export function registryAddresses(swarm: LoadedSwarm, managerAddress: string): string[] {
  const port = swarm.registry?.port ?? 5000;
  return [...new Set([`${managerAddress}:${port}`, `${swarm.manager}:${port}`])];
}

/** Every node trusts the private registry over plain HTTP. */
export function daemonJsonEdits(swarm: LoadedSwarm, managerAddress: string): PlannedEdit[] {
  if (!swarm.registry) return [];
  return [
    {
      origin: 'registry',
      op: 'json',
      partition: 'root',
      path: '/etc/docker/daemon.json',
      set: { 'insecure-registries': registryAddresses(swarm, managerAddress) },
      mode: 0o644,
    },
  ];
}

/** The swarm-node overlay's files holding the built-in stacks' compose templates. */
export const STACK_TEMPLATES = { registry: 'stacks/registry.yml.hbs', portainer: 'stacks/portainer.yml.hbs' };

/**
 * Stacks swarmcard writes itself: the registry and Portainer, pinned to the manager (host-mode
 * ports). Their compose files are templates of the swarm-node overlay, loaded with it.
 */
export function builtInStacks(
  swarm: LoadedSwarm,
  overlayFiles: ReadonlyMap<string, Buffer>,
): { name: string; compose: string; env: Record<string, string>; dirs: string[] }[] {
  const stacks = [];
  const pin = `node.hostname == ${swarm.manager}`;
  const compose = (name: keyof typeof STACK_TEMPLATES, context: object) => {
    const template = overlayFiles.get(STACK_TEMPLATES[name]);
    if (!template) throw new Error(`the swarm-node overlay has no ${STACK_TEMPLATES[name]}`);
    return render(template.toString('utf8'), context);
  };
  if (swarm.registry) {
    const r = swarm.registry;
    stacks.push({
      name: 'registry',
      env: {},
      dirs: [r.storage],
      compose: compose('registry', { storage: r.storage, image: r.image ?? 'registry:2', port: r.port ?? 5000, pin }),
    });
  }
  if (swarm.portainer) {
    const p = swarm.portainer;
    stacks.push({
      name: 'portainer',
      env: {},
      dirs: [],
      compose: compose('portainer', {
        agentImage: p.agentImage ?? 'portainer/agent:lts',
        image: p.image ?? 'portainer/portainer-ce:lts',
        port: p.port ?? 9443,
        pin,
      }),
    });
  }
  return stacks;
}
