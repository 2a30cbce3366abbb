/**
 * What `inspectImage()` finds in a base image (types only, so renderers and hygiene rules can read
 * a report without importing the code that reads images).
 */
import type { Arch } from '../formats/elf.js';

export type NetworkStack = 'dhcpcd' | 'networkmanager' | 'none';
export type FirstBoot = 'init_resize' | 'raspberrypi-sys-mods' | 'rpi-resize' | 'none';
export type MachineIdState = 'empty' | 'uninitialized' | 'set' | 'missing';

export interface ImageReport {
  path: string;
  size: number;
  diskId: string;
  partitions: {
    number: number;
    type: string;
    role: 'boot' | 'root' | 'other';
    start: number;
    size: number;
    label?: string;
    filesystem?: string;
  }[];
  release: { codename: string; versionId: string; prettyName: string; id: string };
  arch: { arch: Arch; detectedFrom: string; bootableModels: string[] };
  bootMount: string;
  cmdline: { tokens: string[]; root?: string; init?: string };
  config: { filter: string; settings: string[] }[];
  hostname: string;
  network: {
    active: NetworkStack;
    dhcpcd: { installed: boolean; enabled: boolean };
    networkManager: { installed: boolean; enabled: boolean };
    cloudInit: { installed: boolean; enabled: boolean };
  };
  firstBoot: { mechanism: FirstBoot; imagerCustomisation?: string };
  ssh: {
    installed: boolean;
    enabledAtBoot: boolean;
    bootFlag?: string;
    hostKeys: string[];
    hostKeyRegeneration?: string;
  };
  users: { userconf: boolean; cloudInitUserData: boolean; passwd: string[] };
  identity: {
    machineId: MachineIdState;
    dbusMachineId: 'absent' | 'file' | 'symlink';
    dockerEngineId: boolean;
    dockerKeyJson: boolean;
    dockerSwarmState: boolean;
    cloudState: string[];
    /** swarmcard built this image (its folders, units or udev rules are in it): a node, not a base. */
    swarmcardNode: boolean;
  };
  ext4: {
    uuid: string;
    label: string;
    features: string[];
    e2fsprogs: string;
    unsupported: string[];
    needsRecovery: boolean;
  };
  warnings: string[];
}
