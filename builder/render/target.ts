/**
 * What the renderers need to know about the system an image will boot, decided once per base
 * image from its inspection report (pure). Every release-aware choice reads a Target, never the
 * release name: the host kit renders for a laptop or PC through the same renderers.
 */
import type { ImageReport } from '../image/report.js';

/** How the image configures its network (docs/raspios.md #1). */
export type NetworkStack = 'dhcpcd' | 'networkmanager';

export interface Target {
  /** The stack that runs: NetworkManager when enabled (bookworm+), else dhcpcd; neither: undefined. */
  network: NetworkStack | undefined;
  /** How the release creates a user: cloud-init (trixie), userconf.txt (bullseye 2022-04+, bookworm). */
  users: 'userconf' | 'cloud-init' | undefined;
  /** cloud-init runs at boot: it must keep swarmcard's host name and network, and gets a per-node id. */
  cloudInit: boolean;
  /** /etc/machine-id in a clean clone: `uninitialized` on trixie, where an empty one skips the resize. */
  machineId: '' | 'uninitialized\n';
}

/** The release traits of a base image (docs/raspios.md #1, #4, #6, #10). */
export function targetOf(report: ImageReport): Target {
  const { codename } = report.release;
  const { networkManager, dhcpcd, cloudInit } = report.network;
  return {
    network: networkManager.enabled ? 'networkmanager' : dhcpcd.enabled ? 'dhcpcd' : undefined,
    users: cloudInit.enabled
      ? 'cloud-init'
      : ['bullseye', 'bookworm', 'trixie'].includes(codename)
        ? 'userconf'
        : undefined,
    cloudInit: cloudInit.enabled,
    machineId: codename === 'trixie' || cloudInit.installed ? 'uninitialized\n' : '',
  };
}

/** A laptop or PC host (the host kit): NetworkManager, no cloud-init, no user of ours. */
export const PC_TARGET: Target = { network: 'networkmanager', users: undefined, cloudInit: false, machineId: '' };
