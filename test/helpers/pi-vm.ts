/**
 * Emulated Raspberry Pis for the boot proof: each node image boots under `qemu-system-aarch64 -M
 * virt` (TCG) with the kernel, initramfs and command line its own boot partition names (config.txt's
 * `kernel=` and `initramfs … followkernel`, cmdline.txt; read with mtools: this kernel cannot mount
 * FAT). Every VM has one NIC on a bridge (the LAN switch) inside a network namespace the lab owns,
 * where the test's side of the LAN lives too; serial consoles go to files. The namespace has no
 * name: a holder process keeps it, and it dies with the holder, which dies with this test worker
 * (`setpriv --pdeathsig`), as every VM does — nothing is left even when the run is interrupted.
 * The teardown proves no VM outlives it.
 */

import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { MTOOLS_ENV, partitionOffsets } from './independent.js';
import { namespaceHolder } from './namespace.js';

export interface PiVm {
  name: string;
  image: string;
  dir: string;
  serialLog: string;
  process: ResultPromise;
}

/** The kernel and initramfs file names config.txt gives (sections other than [all]/[pi4] are skipped). */
export function bootFiles(configTxt: string): { kernel: string; initramfs?: string } {
  let section = 'all';
  let kernel = 'kernel8.img';
  let initramfs: string | undefined;
  for (const raw of configTxt.split('\n')) {
    const line = raw.trim();
    const header = /^\[(.+)\]$/.exec(line);
    if (header) section = header[1]!;
    if (section !== 'all' && section !== 'pi4') continue;
    const value = /^kernel=(\S+)$/.exec(line);
    if (value) kernel = value[1]!;
    const ramfs = /^initramfs\s+(\S+)/.exec(line);
    if (ramfs) initramfs = ramfs[1]!;
  }
  return { kernel, initramfs };
}

/**
 * The image's cmdline.txt for the emulated board: its consoles become the virt machine's serial
 * port, and the journal is copied to it (the only log that survives a node that never reaches the
 * network). `apparmor=0`: Debian's kernel enables AppArmor, Raspberry Pi OS's kernel does not, and
 * Docker refuses to start containers on an AppArmor system without apparmor_parser (the base, like
 * Pi OS, has none). Every other token is the image's own.
 */
export function kernelCommandLine(cmdline: string): string {
  const tokens = cmdline
    .trim()
    .split(/\s+/)
    .filter((token) => !token.startsWith('console='));
  // An emulated Pi is many times slower than a real one, more so on a loaded machine: systemd's
  // 90 s for a device or a unit to start is not enough there (the boot would end in emergency mode).
  const slow = 'systemd.default_timeout_start_sec=900';
  return [...tokens, 'console=ttyAMA0', 'systemd.journald.forward_to_console=1', 'apparmor=0', slow].join(' ');
}

export class PiLab {
  readonly vms = new Map<string, PiVm>();
  private readonly processes: ResultPromise[] = [];
  private holder: number | undefined;

  constructor(private readonly root: string) {}

  /** Run a program in the lab's network namespace. */
  private inLab(argv: string[]): string[] {
    if (this.holder === undefined) throw new Error('the lab has no switch yet');
    return ['nsenter', '-t', String(this.holder), '-n', ...argv];
  }

  private ip(...args: string[]) {
    const [file, ...rest] = this.inLab(['ip', ...args]);
    return execa(file!, rest);
  }

  /** The LAN: a bridge in the lab's namespace, with the test's own address on it. */
  async switch(address: string): Promise<void> {
    const holder = await namespaceHolder('net');
    this.processes.push(holder.process);
    this.holder = holder.pid;
    await this.ip('link', 'set', 'lo', 'up');
    await this.ip('link', 'add', 'br0', 'type', 'bridge');
    await this.ip('addr', 'add', address, 'dev', 'br0');
    await this.ip('link', 'set', 'br0', 'up');
  }

  /** Power on a node: a tap on the switch, qemu with the boot partition's kernel, initramfs and cmdline. */
  async boot(name: string, image: string, mac: string, options: { cpus: number; memoryMiB: number }): Promise<PiVm> {
    const dir = join(this.root, name);
    await mkdir(dir, { recursive: true });
    const { boot } = await partitionOffsets(image);
    const fat = `${image}@@${boot}`;
    const mtype = async (path: string) =>
      (await execa('mtype', ['-i', fat, `::/${path}`], { env: MTOOLS_ENV, stripFinalNewline: false })).stdout;
    const files = bootFiles(await mtype('config.txt'));
    const append = kernelCommandLine(await mtype('cmdline.txt'));
    const kernel = join(dir, 'kernel');
    await execa('mcopy', ['-n', '-i', fat, `::/${files.kernel}`, kernel], { env: MTOOLS_ENV });
    const initrd = join(dir, 'initramfs');
    if (files.initramfs) await execa('mcopy', ['-n', '-i', fat, `::/${files.initramfs}`, initrd], { env: MTOOLS_ENV });

    const tap = `tap${this.vms.size}`;
    await this.ip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
    await this.ip('link', 'set', tap, 'master', 'br0', 'up');
    const serialLog = join(dir, 'serial.log');
    const qemuLog = join(dir, 'qemu.log');
    // setpriv --pdeathsig: qemu (nsenter execs it) dies with this test worker, however it ends.
    const process = execa(
      'setpriv',
      [
        '--pdeathsig',
        'KILL',
        ...this.inLab(['qemu-system-aarch64']),
        ...['-M', 'virt', '-cpu', 'cortex-a72', '-smp', String(options.cpus), '-m', String(options.memoryMiB)],
        ...['-display', 'none', '-monitor', 'none', '-no-reboot', '-serial', `file:${serialLog}`],
        ...['-kernel', kernel, ...(files.initramfs ? ['-initrd', initrd] : []), '-append', append],
        ...['-drive', `if=none,id=disk,format=raw,cache=unsafe,file=${image}`, '-device', 'virtio-blk-pci,drive=disk'],
        ...['-netdev', `tap,id=lan,ifname=${tap},script=no,downscript=no`],
        // romfile=: no PXE option ROM (ipxe-qemu is only a recommendation of qemu-system-arm).
        ...['-device', `virtio-net-pci,netdev=lan,mac=${mac},romfile=`],
        // Entropy for the guest (host keys, TLS) without waiting on TCG's slow jitter.
        ...['-device', 'virtio-rng-pci'],
      ],
      { reject: false, stdin: 'ignore', stdout: { file: qemuLog }, stderr: { file: qemuLog }, cleanup: true },
    );
    this.processes.push(process);
    const vm = { name, image, dir, serialLog, process };
    this.vms.set(name, vm);
    return vm;
  }

  /** Run a program on the test's side of the LAN. */
  exec(argv: string[], options: { timeout?: number } = {}) {
    const [file, ...rest] = this.inLab(argv);
    return execa(file!, rest, { reject: false, timeout: options.timeout });
  }

  /** A command over SSH on a node, as `user` with `key`; never asks, never remembers host keys. */
  ssh(address: string, user: string, key: string, command: string) {
    return this.exec(
      [
        'ssh',
        ...['-i', key, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10'],
        ...['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'],
        `${user}@${address}`,
        command,
      ],
      { timeout: 120_000 },
    );
  }

  async serial(name: string): Promise<string> {
    const vm = this.vms.get(name);
    return vm ? readFile(vm.serialLog, 'utf8').catch(() => '') : '';
  }

  /** Power every VM off (SIGKILL: a power cut) and end the holder: the switch goes with it. */
  async teardown(): Promise<void> {
    for (const child of this.processes) child.kill('SIGKILL');
    await Promise.all(this.processes);
    const alive = this.processes.filter((child) => child.pid !== undefined && isAlive(child.pid));
    if (alive.length > 0) throw new Error(`VMs outlived the teardown: ${alive.map((c) => c.pid).join(' ')}`);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
