/**
 * The drives a card could be written to, from `lsblk --json` (through the tool door, so
 * SWARMCARD_LSBLK can replay a recording) plus what the running kernel says is mounted
 * (/proc/self/mountinfo, /proc/swaps). Classification is pure (`classifyDrives`): which disk holds
 * the running system (/, /boot, /usr, /var, /home, swap, an EFI system partition) and why a drive
 * cannot be written. The sysfs facts relied on are in docs/flashing.md.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { run } from '../exec/run.js';
import { formatBytes } from '../log.js';

/** One node of lsblk's tree (a disk, a partition, a device-mapper or md device…), normalised. */
export interface LsblkNode {
  name: string;
  kname: string;
  path: string;
  majMin: string;
  type: string;
  size: number;
  rm: boolean;
  ro: boolean;
  hotplug: boolean;
  tran?: string;
  subsystems?: string;
  vendor?: string;
  model?: string;
  serial?: string;
  fstype?: string;
  label?: string;
  parttype?: string;
  logSec?: number;
  mountpoints: string[];
  children: LsblkNode[];
}

export interface Partition {
  path: string;
  name: string;
  size: number;
  fstype?: string;
  label?: string;
  mountpoints: string[];
}

export interface Drive {
  path: string;
  name: string;
  type: 'disk' | 'loop';
  majMin: string;
  /** Bytes; 0 for a card reader without a card. */
  size: number;
  model?: string;
  vendor?: string;
  serial?: string;
  transport?: string;
  /** The kernel's removable flag (sysfs `removable`, lsblk RM). */
  removableFlag: boolean;
  /** A card in an SD/MMC slot: the kernel reports such a card as not removable (docs/flashing.md). */
  sdCard: boolean;
  /** What flash treats as removable: the flag, or a card in an SD slot. */
  removable: boolean;
  readOnly: boolean;
  hotplug: boolean;
  logicalSectorSize: number;
  /** The file behind a loop device, when the kernel says. */
  backingFile?: string;
  partitions: Partition[];
  /** Everything mounted from this drive: itself, its partitions, device-mapper devices on them. */
  mounts: { device: string; mountpoint: string }[];
  /** Devices stacked on this drive other than partitions (dm-crypt, LVM, md): they hold it open. */
  holders: string[];
  /** Why this drive holds the running system (empty when it does not). */
  system: string[];
  /** `major:minor` of the drive and of everything on it (partitions, dm devices). */
  members: string[];
}

/** What the running kernel says beyond lsblk; empty for a recording. */
export interface LiveFacts {
  /** Mount points (and "[SWAP]") by `major:minor`. */
  mounts: Map<string, string[]>;
  /** sysfs `device/type` of a disk by kernel name ("SD", "MMC"). */
  deviceType?: Map<string, string>;
  backingFile?: Map<string, string>;
}

export const noLiveFacts: LiveFacts = { mounts: new Map() };

const COLUMNS =
  'NAME,KNAME,PATH,MAJ:MIN,TYPE,SIZE,RM,RO,HOTPLUG,TRAN,SUBSYSTEMS,VENDOR,MODEL,SERIAL,FSTYPE,LABEL,PARTTYPE,LOG-SEC';

/** EFI system partition: the GPT type GUID, or MBR type 0xef. */
const ESP_TYPES = new Set(['c12a7328-f81f-11d2-ba4b-00a0c93ec93b', '0xef']);

/** Mount points that belong to the running system: these, and everything below the last four. */
const SYSTEM_MOUNTS = ['/', '/home', '/opt', '/srv', '/root', '/boot', '/efi', '/usr', '/var'];
const SYSTEM_TREES = ['/boot/', '/efi/', '/usr/', '/var/'];
export const isSystemMount = (m: string) => SYSTEM_MOUNTS.includes(m) || SYSTEM_TREES.some((t) => m.startsWith(t));

const flag = (v: unknown): boolean => v === true || v === 1 || v === '1' || v === 'true';
const text = (v: unknown): string | undefined => {
  if (typeof v !== 'string' && typeof v !== 'number') return undefined;
  const s = String(v).trim();
  return s === '' ? undefined : s;
};
const bytes = (v: unknown): number => {
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) && n >= 0 ? n : 0;
};

function normalise(raw: Record<string, unknown>, source: string): LsblkNode {
  const name = text(raw.name);
  if (!name) throw new UserError(`${source} printed a device without a name; it is not lsblk --json output.`);
  const mountpoints = Array.isArray(raw.mountpoints) ? raw.mountpoints : [raw.mountpoint];
  return {
    name,
    kname: text(raw.kname) ?? name,
    path: text(raw.path) ?? `/dev/${name}`,
    majMin: text(raw['maj:min']) ?? '',
    type: text(raw.type) ?? 'disk',
    size: bytes(raw.size),
    rm: flag(raw.rm),
    ro: flag(raw.ro),
    hotplug: flag(raw.hotplug),
    tran: text(raw.tran),
    subsystems: text(raw.subsystems),
    vendor: text(raw.vendor),
    model: text(raw.model),
    serial: text(raw.serial),
    fstype: text(raw.fstype),
    label: text(raw.label),
    parttype: text(raw.parttype)?.toLowerCase(),
    logSec: raw['log-sec'] === undefined ? undefined : bytes(raw['log-sec']),
    mountpoints: mountpoints.map(text).filter((m): m is string => m !== undefined),
    children: Array.isArray(raw.children)
      ? raw.children.map((c) => normalise(c as Record<string, unknown>, source))
      : [],
  };
}

/** Parse `lsblk --json --bytes --tree` output (util-linux 2.33 and later, booleans or "0"/"1"). */
export function parseLsblk(json: string, source = 'lsblk'): LsblkNode[] {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    data = undefined;
  }
  const devices = (data as { blockdevices?: unknown } | undefined)?.blockdevices;
  if (!Array.isArray(devices)) throw new UserError(`${source} did not print lsblk --json output (no "blockdevices").`);
  return devices.map((d) => normalise(d as Record<string, unknown>, source));
}

function* walk(node: LsblkNode): Generator<LsblkNode> {
  yield node;
  for (const child of node.children) yield* walk(child);
}

const isDrive = (n: LsblkNode) =>
  (n.type === 'disk' || n.type === 'loop') && !/^(zram|ram)\d/.test(n.kname) && !(n.type === 'loop' && n.size === 0);

/** Turn lsblk's tree into drives, each with what is mounted from it and whether it holds the system. */
export function classifyDrives(nodes: LsblkNode[], live: LiveFacts = noLiveFacts): Drive[] {
  return nodes.filter(isDrive).map((disk) => {
    const mounts: Drive['mounts'] = [];
    const system = new Set<string>();
    const holders: string[] = [];
    for (const node of walk(disk)) {
      const points = new Set([...node.mountpoints, ...(live.mounts.get(node.majMin) ?? [])]);
      for (const mountpoint of points) {
        mounts.push({ device: node.path, mountpoint });
        if (mountpoint === '[SWAP]') system.add('swap');
        else if (isSystemMount(mountpoint)) system.add(mountpoint);
      }
      if (node !== disk && node.type !== 'part') holders.push(`${node.name} (${node.type})`);
    }
    const sdCard = (disk.subsystems?.split(':').includes('mmc') ?? false) && live.deviceType?.get(disk.kname) !== 'MMC';
    const removable = disk.rm || sdCard;
    // The EFI system partition this machine boots from sits on an internal disk; one on a card is just a card's.
    for (const node of walk(disk))
      if (node.parttype && ESP_TYPES.has(node.parttype) && !removable) system.add('EFI system partition');
    return {
      path: disk.path,
      name: disk.name,
      type: disk.type as Drive['type'],
      majMin: disk.majMin,
      size: disk.size,
      model: disk.model,
      vendor: disk.vendor,
      serial: disk.serial,
      transport: disk.tran,
      removableFlag: disk.rm,
      sdCard,
      removable,
      readOnly: disk.ro,
      hotplug: disk.hotplug,
      logicalSectorSize: disk.logSec && disk.logSec >= 512 ? disk.logSec : 512,
      backingFile: live.backingFile?.get(disk.kname),
      partitions: disk.children
        .filter((c) => c.type === 'part')
        .map((p) => ({
          path: p.path,
          name: p.name,
          size: p.size,
          fstype: p.fstype,
          label: p.label,
          mountpoints: [...new Set([...p.mountpoints, ...(live.mounts.get(p.majMin) ?? [])])],
        })),
      mounts,
      holders: [...new Set(holders)],
      members: [...new Set([...walk(disk)].map((n) => n.majMin).filter(Boolean))],
      system: [...system].sort((a, b) => (a === 'swap' ? 1 : b === 'swap' ? -1 : a.localeCompare(b))),
    };
  });
}

/** "Generic STORAGE DEVICE, 29.7 GiB, serial 000000000039, usb" — for prompts and messages. */
export function describeDrive(d: Drive): string {
  const what = [d.vendor, d.model].filter(Boolean).join(' ') || (d.type === 'loop' ? 'loop device' : 'disk');
  return [
    what,
    formatBytes(d.size),
    ...(d.serial ? [`serial ${d.serial}`] : []),
    ...(d.transport ? [d.transport] : d.sdCard ? ['SD slot'] : []),
    ...(d.backingFile ? [`backed by ${d.backingFile}`] : []),
  ].join(', ');
}

const mountList = (d: Drive) => d.mounts.map((m) => `${m.device.split('/').at(-1)} at ${m.mountpoint}`).join(', ');

/**
 * Why flash must not write this drive, in one sentence (undefined when it may). The system disk is
 * refused always; a non-removable disk and mounted partitions only unless the user said so.
 */
export function driveRefusal(d: Drive, options: { unmount: boolean; forceNonRemovable: boolean }): string | undefined {
  if (d.system.length > 0)
    return `${d.path} holds the running system (${d.system.join(', ')}); swarmcard never writes to it.`;
  if (d.size === 0) return `${d.path} has no card in it (its size is 0); insert a card and try again.`;
  if (d.readOnly)
    return (
      `${d.path} is read-only (is the card's write-protect switch on?); ` +
      'slide the switch to unlock, insert the card again and retry.'
    );
  if (d.holders.length > 0) return `${d.path} is in use by ${d.holders.join(', ')}; close or stop those and try again.`;
  if (!d.removable && !options.forceNonRemovable)
    return (
      `${d.path} (${describeDrive(d)}) is not a removable disk; ` +
      'add --force-non-removable if you really mean to overwrite it.'
    );
  if (d.mounts.length > 0 && !options.unmount)
    return `${d.path} has mounted filesystems (${mountList(d)}); add --unmount to unmount them first.`;
  return undefined;
}

/** One line of `swarmcard drives`: what the drive is ready for, or why not. */
export function driveStatus(d: Drive): string {
  if (d.system.length > 0) return `system disk (${d.system.join(', ')}): never written`;
  if (d.size === 0) return 'no card';
  if (d.readOnly) return 'read-only (write-protect switch?)';
  if (d.holders.length > 0) return `in use by ${d.holders.join(', ')}`;
  const notes = [
    ...(d.removable ? [] : ['not removable: flash needs --force-non-removable']),
    ...(d.mounts.length > 0 ? [`mounted (${mountList(d)}): flash needs --unmount`] : []),
  ];
  return notes.length > 0 ? notes.join('; ') : 'ready';
}

/** `major:minor` of a device number (Linux encoding). */
export function majMinOf(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** `\040` and friends in /proc/self/mountinfo. */
const unescapeOctal = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

/** What the kernel has mounted (by device number) and which swap devices are active. */
export async function liveFacts(): Promise<LiveFacts> {
  const mounts = new Map<string, string[]>();
  const add = (majMin: string, point: string) => mounts.set(majMin, [...(mounts.get(majMin) ?? []), point]);
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    if (fields.length > 4 && /^\d+:\d+$/.test(fields[2]!) && !fields[2]!.startsWith('0:'))
      add(fields[2]!, unescapeOctal(fields[4]!));
  }
  const swaps = await readFile('/proc/swaps', 'utf8').catch(() => '');
  for (const line of swaps.split('\n').slice(1)) {
    const device = unescapeOctal(line.split(/\s+/)[0] ?? '');
    if (!device.startsWith('/dev/')) continue;
    const st = await stat(device, { bigint: true }).catch(() => undefined);
    if (st?.isBlockDevice()) add(majMinOf(st.rdev), '[SWAP]');
  }
  return { mounts, deviceType: new Map(), backingFile: new Map() };
}

/** sysfs facts lsblk does not print, for the drives at hand (never for a recording: the names are not here). */
async function addSysfsFacts(nodes: LsblkNode[], live: LiveFacts): Promise<void> {
  for (const disk of nodes) {
    const sys = `/sys/block/${disk.kname}`;
    const type = await readFile(`${sys}/device/type`, 'utf8').catch(() => undefined);
    if (type) live.deviceType?.set(disk.kname, type.trim());
    const backing = await readFile(`${sys}/loop/backing_file`, 'utf8').catch(() => undefined);
    if (backing) live.backingFile?.set(disk.kname, backing.trim());
  }
}

/** Run lsblk (every block device, as a tree); util-linux before 2.37 has MOUNTPOINT only. */
async function lsblk(): Promise<LsblkNode[]> {
  for (const mountColumn of ['MOUNTPOINTS', 'MOUNTPOINT']) {
    const args = ['--json', '--bytes', '--tree', '--output', `${COLUMNS},${mountColumn}`];
    const result = await run('lsblk', args, { allowFailure: true });
    if (result.exitCode === 0) return parseLsblk(result.stdout);
    // 32: none of the devices asked for was found (there are none at all).
    if (result.exitCode === 32) return [];
    if (!/unknown column/i.test(result.stderr)) await run('lsblk', args);
  }
  return [];
}

/** Every drive on this machine, classified. */
export async function listDrives(): Promise<Drive[]> {
  const nodes = await lsblk();
  const live = await liveFacts();
  await addSysfsFacts(nodes, live);
  return classifyDrives(nodes, live);
}

/** A device named on the command line: the drive it is, or a one-sentence refusal. */
export async function findDrive(device: string): Promise<Drive> {
  const st = await stat(device, { bigint: true }).catch(() => undefined);
  if (st && !st.isBlockDevice())
    throw new UserError(`${device} is not a disk device; run "swarmcard drives" to see the cards you can write.`);
  const real = st ? await realpath(device) : device;
  const majMin = st ? majMinOf(st.rdev) : undefined;
  const nodes = await lsblk();
  const live = await liveFacts();
  await addSysfsFacts(nodes, live);
  const drives = classifyDrives(nodes, live);
  const hit =
    drives.find((d) => d.path === real || d.path === device) ??
    drives.find((d) => majMin !== undefined && d.majMin === majMin);
  if (hit) return hit;
  for (const disk of nodes)
    for (const node of walk(disk))
      if (node !== disk && (node.path === real || (majMin !== undefined && node.majMin === majMin)))
        throw new UserError(
          node.type === 'part'
            ? `${device} is a partition of ${disk.path}; give the whole card: --device ${disk.path}.`
            : `${device} is a ${node.type} device on ${disk.path}, not a card; run "swarmcard drives".`,
        );
  throw new UserError(
    `${device} is not there (no such disk, or the card or reader was removed); ` +
      'insert it and run "swarmcard drives" to see the cards.',
  );
}
