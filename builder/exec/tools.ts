/**
 * Every external program swarmcard runs, with the Debian package that provides it. Any path can be
 * overridden by an environment variable (SWARMCARD_MCOPY=/opt/mtools/bin/mcopy), as genimage does.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export const tools = {
  mcopy: 'mtools',
  mtype: 'mtools',
  mmd: 'mtools',
  mdel: 'mtools',
  mdeltree: 'mtools',
  mdir: 'mtools',
  mattrib: 'mtools',
  minfo: 'mtools',
  debugfs: 'e2fsprogs',
  dumpe2fs: 'e2fsprogs',
  mkfs_ext4: 'e2fsprogs',
  mkfs_vfat: 'dosfstools',
  sfdisk: 'fdisk',
  cp: 'coreutils',
  sync: 'coreutils',
  dd: 'coreutils',
  xz: 'xz-utils',
  zstd: 'zstd',
  gzip: 'gzip',
  unzip: 'unzip',
  losetup: 'mount',
  ssh_keygen: 'openssh-client',
  mount: 'mount',
  umount: 'mount',
  lsblk: 'util-linux',
  // --in-docker: the container engine that runs the builder image.
  docker: 'docker.io',
  podman: 'podman',
} as const;

export type Tool = keyof typeof tools;

const binaryNames: Partial<Record<Tool, string>> = {
  mkfs_ext4: 'mkfs.ext4',
  mkfs_vfat: 'mkfs.vfat',
  ssh_keygen: 'ssh-keygen',
};

const found = new Map<Tool, string | undefined>();

/**
 * The program to run: an override, else the name found on PATH or in the sbin directories that
 * Debian leaves off a normal user's PATH (debugfs, mkfs.vfat, sfdisk live there).
 */
export function toolPath(tool: Tool): string {
  return locateTool(tool) ?? binaryNames[tool] ?? tool;
}

/** The program's path (an override, else on PATH or in sbin), or undefined when it is not installed. */
export function locateTool(tool: Tool): string | undefined {
  const override = process.env[`SWARMCARD_${tool.toUpperCase()}`];
  if (override) return override;
  if (found.has(tool)) return found.get(tool);
  const name = binaryNames[tool] ?? tool;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];
  const hit = dirs
    .map((dir) => join(dir, name))
    .find((candidate) => {
      try {
        accessSync(candidate, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  found.set(tool, hit);
  return hit;
}
