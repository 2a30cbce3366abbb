/**
 * Every external program swarmcard runs, with the Debian package that provides it. Any path can be
 * overridden by an environment variable (SWARMCARD_MCOPY=/opt/mtools/bin/mcopy), as genimage does.
 */
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
  xz: 'xz-utils',
  zstd: 'zstd',
  gzip: 'gzip',
  unzip: 'unzip',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
} as const;

export type Tool = keyof typeof tools;

const binaryNames: Partial<Record<Tool, string>> = { mkfs_ext4: 'mkfs.ext4', mkfs_vfat: 'mkfs.vfat' };

export function toolPath(tool: Tool): string {
  return process.env[`SWARMCARD_${tool.toUpperCase()}`] ?? binaryNames[tool] ?? tool;
}
