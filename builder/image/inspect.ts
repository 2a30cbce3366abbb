/**
 * Everything swarmcard needs to know about a base image before planning edits for it, read
 * without root: release, architecture, partitions, boot settings, network stack, first-boot
 * mechanism, SSH/user state, identity leftovers and ext4 features. Reading is separate from
 * judging: `imageWarnings()` turns a report into the problems it shows (clone hygiene from
 * `render/hygiene.ts`, whose rules also fix them on every clone).
 */
import { UserError } from '../errors.js';
import { type Arch, bootableModels, parseElf } from '../formats/elf.js';
import { unsupportedFeatures } from '../formats/ext4-superblock.js';
import { formatDiskId, partUuid } from '../formats/mbr.js';
import { FileNotFoundError, type FsEditor } from '../fs/editor.js';
import { e2fsprogsVersion, withPartition } from '../fs/partition.js';
import { hygieneProblems } from '../render/hygiene.js';
import { getToken, parseCmdline } from '../text/cmdline.js';
import { configSettings, parseConfigTxt } from '../text/config-txt.js';
import { parseFstab, parseOsRelease } from '../text/etc-files.js';
import { type ImageLayout, readLayout } from './layout.js';
import type { FirstBoot, ImageReport, MachineIdState, NetworkStack } from './report.js';

export type { FirstBoot, ImageReport, MachineIdState, NetworkStack } from './report.js';

async function readOptional(fs: FsEditor, path: string): Promise<string | undefined> {
  try {
    return await fs.readText(path);
  } catch (error) {
    if (error instanceof FileNotFoundError) return undefined;
    throw error;
  }
}

async function listOptional(fs: FsEditor, path: string): Promise<string[]> {
  const st = await fs.stat(path);
  if (st?.type !== 'dir') return [];
  return (await fs.list(path)).map((e) => e.name);
}

function releaseOf(osRelease: Record<string, string>): string {
  // Debian 8 (jessie) has no VERSION_CODENAME; the codename is only inside VERSION="8 (jessie)".
  return osRelease.VERSION_CODENAME ?? /\(([a-z]+)\)/.exec(osRelease.VERSION ?? '')?.[1] ?? 'unknown';
}

async function readBoot(fs: FsEditor, path: string) {
  const cmdlineText = await readOptional(fs, '/cmdline.txt');
  const configText = await readOptional(fs, '/config.txt');
  if (cmdlineText === undefined || configText === undefined) {
    throw new UserError(
      `${path} is not a Raspberry Pi OS image: its boot partition has no ` +
        `${cmdlineText === undefined ? 'cmdline.txt' : 'config.txt'}.`,
    );
  }
  const rootEntries = await fs.list('/');
  const has = (name: string) => rootEntries.some((e) => e.name.toLowerCase() === name);
  return {
    cmdline: parseCmdline(cmdlineText),
    config: configSettings(parseConfigTxt(configText)),
    sshFlag: has('ssh') ? 'ssh' : has('ssh.txt') ? 'ssh.txt' : undefined,
    userconf: has('userconf.txt') || has('userconf'),
    cloudUserData: has('user-data'),
  };
}

async function readRoot(fs: FsEditor, path: string, layout: ImageLayout) {
  const osReleaseText = (await readOptional(fs, '/etc/os-release')) ?? (await readOptional(fs, '/usr/lib/os-release'));
  if (osReleaseText === undefined)
    throw new UserError(`${path} is not a Raspberry Pi OS image: its root filesystem has no /etc/os-release.`);
  const osRelease = parseOsRelease(osReleaseText);

  let arch: Arch = 'unknown';
  let detectedFrom = '';
  for (const candidate of ['/bin/sh', '/usr/bin/dash', '/bin/bash', '/usr/bin/env']) {
    const elf = parseElf((await fs.read(candidate).catch(() => Buffer.alloc(0))).subarray(0, 64));
    if (elf) {
      arch = elf.arch;
      detectedFrom = candidate;
      break;
    }
  }

  const fstab = parseFstab((await readOptional(fs, '/etc/fstab')) ?? '');
  const bootSpecs = [
    `PARTUUID=${partUuid(layout.mbr.diskId, layout.boot.number)}`,
    `/dev/mmcblk0p${layout.boot.number}`,
    `LABEL=${layout.bootLabel}`,
  ];
  const bootMount =
    fstab.find((e) => bootSpecs.includes(e.spec) && e.vfstype === 'vfat')?.file ??
    ((await fs.stat('/boot/firmware'))?.type === 'dir' ? '/boot/firmware' : '/boot');

  const wants = await listOptional(fs, '/etc/systemd/system/multi-user.target.wants');
  const enabled = (unit: string) => wants.includes(unit);
  const anyExists = async (...paths: string[]) => (await Promise.all(paths.map((p) => fs.exists(p)))).some(Boolean);

  const dhcpcd = { installed: await anyExists('/usr/sbin/dhcpcd', '/sbin/dhcpcd'), enabled: enabled('dhcpcd.service') };
  const networkManager = {
    installed: await anyExists('/usr/sbin/NetworkManager'),
    enabled: enabled('NetworkManager.service'),
  };
  const cloudInitInstalled = await anyExists('/usr/bin/cloud-init');
  const cloudInit = {
    installed: cloudInitInstalled,
    enabled: cloudInitInstalled && !(await fs.exists('/etc/cloud/cloud-init.disabled')),
  };

  const sshFiles = await listOptional(fs, '/etc/ssh');
  const machineIdText = await readOptional(fs, '/etc/machine-id');
  const machineId: MachineIdState =
    machineIdText === undefined
      ? 'missing'
      : machineIdText.trim() === ''
        ? 'empty'
        : machineIdText.trim() === 'uninitialized'
          ? 'uninitialized'
          : 'set';
  const dbus = await fs.stat('/var/lib/dbus/machine-id');
  const passwd = ((await readOptional(fs, '/etc/passwd')) ?? '')
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 7 && Number(f[2]) >= 1000 && Number(f[2]) < 65534)
    .map((f) => f[0]!);

  return {
    osRelease,
    arch,
    detectedFrom,
    bootMount,
    hostname: ((await readOptional(fs, '/etc/hostname')) ?? '').trim(),
    network: {
      dhcpcd,
      networkManager,
      cloudInit,
      active: (networkManager.enabled ? 'networkmanager' : dhcpcd.enabled ? 'dhcpcd' : 'none') as NetworkStack,
    },
    ssh: {
      installed: await anyExists('/usr/sbin/sshd'),
      serviceEnabled: enabled('ssh.service') || enabled('sshd.service'),
      hostKeys: sshFiles.filter((n) => n.startsWith('ssh_host_')),
      // Raspberry Pi OS's own unit, swarmcard's fallback, or the common sshd-keygen unit.
      regenerationUnit: [
        'regenerate_ssh_host_keys.service',
        'swarmcard-ssh-keygen.service',
        'sshd-keygen.service',
      ].find(enabled),
    },
    passwd,
    identity: {
      machineId,
      dbusMachineId: (dbus === undefined ? 'absent' : dbus.type === 'symlink' ? 'symlink' : 'file') as
        | 'absent'
        | 'file'
        | 'symlink',
      dockerEngineId: await fs.exists('/var/lib/docker/engine-id'),
      dockerKeyJson: await fs.exists('/etc/docker/key.json'),
      dockerSwarmState: await fs.exists('/var/lib/docker/swarm'),
      cloudState: await listOptional(fs, '/var/lib/cloud'),
      // Its folders, or a unit or udev rule of its own (swarmcard-*, NN-swarmcard-*).
      swarmcardNode:
        (await anyExists('/etc/swarmcard', '/usr/local/lib/swarmcard')) ||
        (await listOptional(fs, '/etc/systemd/system')).some((n) => n.startsWith('swarmcard-')) ||
        (await listOptional(fs, '/etc/udev/rules.d')).some((n) => n.includes('-swarmcard-')),
    },
    rpiResize: await anyExists('/usr/lib/systemd/system/rpi-resize.service', '/lib/systemd/system/rpi-resize.service'),
  };
}

export async function inspectImage(path: string): Promise<ImageReport> {
  const layout = await readLayout(path);
  const epoch = 0; // read-only: nothing is written
  const boot = await withPartition(layout, 'boot', { epoch, readOnly: true }, (fs) => readBoot(fs, path));
  const root = await withPartition(layout, 'root', { epoch, readOnly: true }, (fs) => readRoot(fs, path, layout));
  const version = await e2fsprogsVersion();
  const sb = layout.rootSuperblock;

  const init = getToken(boot.cmdline, 'init');
  const mechanism: FirstBoot = init?.includes('init_resize')
    ? 'init_resize'
    : init?.includes('raspberrypi-sys-mods/firstboot')
      ? 'raspberrypi-sys-mods'
      : boot.cmdline.includes('resize') || root.rpiResize
        ? 'rpi-resize'
        : 'none';
  const systemdRun = getToken(boot.cmdline, 'systemd.run');
  const hostKeyRegeneration =
    root.ssh.regenerationUnit ??
    (mechanism === 'raspberrypi-sys-mods'
      ? 'raspberrypi-sys-mods firstboot'
      : root.network.cloudInit.enabled
        ? 'cloud-init (ssh module)'
        : undefined);

  const report: ImageReport = {
    path,
    size: layout.size,
    diskId: formatDiskId(layout.mbr.diskId),
    partitions: layout.mbr.partitions.map((p) => ({
      number: p.number,
      type: `0x${p.type.toString(16).padStart(2, '0')}`,
      role: p === layout.boot ? 'boot' : p === layout.root ? 'root' : 'other',
      start: p.offset,
      size: p.size,
      ...(p === layout.boot ? { label: layout.bootLabel, filesystem: `fat${layout.bootFatBits}` } : {}),
      ...(p === layout.root ? { label: sb.label, filesystem: 'ext4' } : {}),
    })),
    release: {
      codename: releaseOf(root.osRelease),
      versionId: root.osRelease.VERSION_ID ?? '',
      prettyName: root.osRelease.PRETTY_NAME ?? '',
      id: root.osRelease.ID ?? '',
    },
    arch: { arch: root.arch, detectedFrom: root.detectedFrom, bootableModels: bootableModels[root.arch] },
    bootMount: root.bootMount,
    cmdline: { tokens: boot.cmdline, root: getToken(boot.cmdline, 'root'), init },
    config: boot.config,
    hostname: root.hostname,
    network: root.network,
    firstBoot: { mechanism, ...(systemdRun ? { imagerCustomisation: systemdRun } : {}) },
    ssh: {
      installed: root.ssh.installed,
      enabledAtBoot: root.ssh.serviceEnabled || boot.sshFlag !== undefined,
      ...(boot.sshFlag ? { bootFlag: boot.sshFlag } : {}),
      hostKeys: root.ssh.hostKeys,
      ...(hostKeyRegeneration ? { hostKeyRegeneration } : {}),
    },
    users: { userconf: boot.userconf, cloudInitUserData: boot.cloudUserData, passwd: root.passwd },
    identity: root.identity,
    ext4: {
      uuid: sb.uuid,
      label: sb.label,
      features: sb.features.map((f) => f.name),
      e2fsprogs: version,
      unsupported: unsupportedFeatures(sb, version).map((f) => f.name),
      needsRecovery: sb.needsRecovery,
    },
    warnings: [],
  };
  report.warnings = imageWarnings(report);
  return report;
}

/** What stops swarmcard from writing the root filesystem safely (docs/raspios.md #8). */
export function writeBlockers(r: ImageReport): string[] {
  const w: string[] = [];
  if (r.ext4.unsupported.length > 0)
    w.push(
      `e2fsprogs ${r.ext4.e2fsprogs} does not support the ext4 features ${r.ext4.unsupported.join(', ')}: ` +
        'swarmcard will refuse to write this image.',
    );
  if (r.ext4.needsRecovery)
    w.push('the root filesystem needs journal recovery (not cleanly unmounted): run "e2fsck -fy" on it first.');
  return w;
}

/** Clone-hygiene problems (docs/raspios.md #6), then anything that blocks writing or booting. */
export function imageWarnings(r: ImageReport): string[] {
  return [
    ...hygieneProblems(r),
    ...writeBlockers(r),
    ...(r.arch.arch !== 'armhf' && r.arch.arch !== 'arm64'
      ? [`the image's binaries are ${r.arch.arch}: no Raspberry Pi can boot it.`]
      : []),
  ];
}
