/**
 * A lab of cluster nodes on this machine for the swarm end-to-end test: each node is a network
 * namespace with the node's planned addresses, plus a private mount and UTS namespace (its own
 * hostname, /run, cgroups, and the files extracted from its image bind-mounted where the image has
 * them), running one Docker engine and one sshd. Everything started is recorded and torn down.
 */

import { mkdir, readdir, readFile, readlink, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { partitionOffsets } from './independent.js';

export interface LabNode {
  name: string;
  netns: string;
  dir: string;
  /** PID (here) of the process holding the node's mount, UTS and PID namespaces: that namespace's init. */
  holder: number;
  /** The node's PID namespace (`pid:[inode]`), to prove at teardown that nothing in it survives. */
  pidNamespace: string;
}

/** Where the image keeps the files the first-boot programs use. */
export const imageDirs = ['/etc/swarmcard', '/usr/local/lib/swarmcard', '/root/.ssh'];

/**
 * Extract the exact directories from a node's image (debugfs rdump) into `dir`, plus an empty
 * state folder: the mounts (local → in the image) that make them the node's own. A directory the
 * image does not have (the manager has no /root/.ssh) is left out.
 */
export async function extractNodeFiles(
  image: string,
  dir: string,
  inImage: string[] = imageDirs,
): Promise<Record<string, string>> {
  const { root: offset } = await partitionOffsets(image);
  const mounts: Record<string, string> = {};
  for (const path of inImage) {
    const local = join(dir, path.slice(1).replaceAll('/', '-'));
    await mkdir(local, { recursive: true });
    const result = await execa('debugfs', ['-R', `rdump ${path} ${local}`, `${image}?offset=${offset}`], {
      reject: false,
    });
    if ((await readdir(local)).length === 0) continue;
    if (result.exitCode !== 0) throw new Error(`debugfs could not extract ${path} from ${image}: ${result.stderr}`);
    mounts[join(local, path.split('/').at(-1)!)] = path;
  }
  await mkdir(join(dir, 'state'), { recursive: true });
  mounts[join(dir, 'state')] = '/var/lib/swarmcard';
  return mounts;
}

const holderScript = `
set -eu
hostname "$1"
mount -t tmpfs tmpfs /sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
  mkdir -p /sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
done
mkdir -p /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t tmpfs tmpfs /run
mkdir -p /run/sshd
shift
while [ $# -gt 1 ]; do mount --bind "$1" "$2"; shift 2; done
echo ready
exec sleep 100000
`;

export class SwarmLab {
  readonly nodes = new Map<string, LabNode>();
  private readonly processes: ResultPromise[] = [];
  private readonly createdDirs: string[] = [];
  private readonly links: string[] = [];
  private readonly switches: string[] = [];

  constructor(
    private readonly root: string,
    private readonly prefix: string,
  ) {}

  async addNode(name: string, mounts: Record<string, string>): Promise<LabNode> {
    const netns = `${this.prefix}${name}`;
    const dir = join(this.root, name);
    await mkdir(dir, { recursive: true });
    await execa('ip', ['netns', 'add', netns]);
    await execa('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    for (const target of Object.values(mounts)) {
      if (
        !(await stat(target).then(
          () => true,
          () => false,
        ))
      ) {
        await mkdir(target, { recursive: true });
        this.createdDirs.push(target);
      }
    }
    // A PID namespace too: its init is the holder, and every process of the node — dockerd, the
    // containerd shims that daemonise away from it, the containers they start (busybox httpd, the
    // registry), sshd — is inside it, so killing the holder kills them all (the kernel does it).
    // --kill-child: the holder dies with unshare; setpriv --pdeathsig: unshare dies with this test
    // worker, however it ends (a timeout, a crash, SIGKILL).
    this.spawn(
      'setpriv',
      [
        '--pdeathsig',
        'KILL',
        'ip',
        'netns',
        'exec',
        netns,
        'unshare',
        '--mount',
        '--uts',
        '--pid',
        '--kill-child',
        '--mount-proc',
        '--propagation',
        'private',
        'sh',
        '-c',
        holderScript,
        'holder',
        name,
        ...Object.entries(mounts).flat(),
      ],
      join(dir, 'holder.log'),
    );
    await waitFor(
      async () => (await readText(join(dir, 'holder.log'))).includes('ready'),
      10_000,
      `${name}'s namespaces`,
    );
    // The holder is the `sleep` the shell exec'd into: PID 1 of the node's PID namespace.
    const holder = await namespaceInit(netns);
    const node = { name, netns, dir, holder, pidNamespace: await readlink(`/proc/${holder}/ns/pid`) };
    this.nodes.set(name, node);
    return node;
  }

  /** A point-to-point link: a veth pair with one end in each node, named and addressed. */
  async link(a: string, aName: string, aAddress: string, b: string, bName: string, bAddress: string): Promise<void> {
    const [x, y] = [`${this.prefix}${this.links.length}a`, `${this.prefix}${this.links.length}b`];
    this.links.push(x);
    await execa('ip', ['link', 'add', x, 'type', 'veth', 'peer', 'name', y]);
    for (const [end, node, name, address] of [
      [x, a, aName, aAddress],
      [y, b, bName, bAddress],
    ] as const) {
      const ns = this.nodes.get(node)!.netns;
      await execa('ip', ['link', 'set', end, 'netns', ns]);
      await execa('ip', ['-n', ns, 'link', 'set', end, 'name', name]);
      await execa('ip', ['-n', ns, 'addr', 'add', address, 'dev', name]);
      await execa('ip', ['-n', ns, 'link', 'set', name, 'up']);
    }
  }

  /** One LAN: a bridge in a namespace of its own, with a port (veth) to each member. */
  async switch(members: [node: string, ifname: string, address: string][]): Promise<void> {
    const ns = `${this.prefix}sw`;
    await execa('ip', ['netns', 'add', ns]);
    this.switches.push(ns);
    await execa('ip', ['-n', ns, 'link', 'add', 'br0', 'type', 'bridge']);
    await execa('ip', ['-n', ns, 'link', 'set', 'br0', 'up']);
    for (const [i, [node, ifname, address]] of members.entries()) {
      const [x, y] = [`${this.prefix}p${i}`, `${this.prefix}q${i}`];
      await execa('ip', ['link', 'add', x, 'type', 'veth', 'peer', 'name', y]);
      await execa('ip', ['link', 'set', x, 'netns', ns]);
      await execa('ip', ['-n', ns, 'link', 'set', x, 'master', 'br0', 'up']);
      const nodeNs = this.nodes.get(node)!.netns;
      await execa('ip', ['link', 'set', y, 'netns', nodeNs]);
      await execa('ip', ['-n', nodeNs, 'link', 'set', y, 'name', ifname]);
      await execa('ip', ['-n', nodeNs, 'addr', 'add', address, 'dev', ifname]);
      await execa('ip', ['-n', nodeNs, 'link', 'set', ifname, 'up']);
    }
  }

  /** Run a command inside a node (its network, mount and UTS namespaces). */
  exec(node: string, argv: string[], options: { input?: string; env?: Record<string, string> } = {}) {
    const n = this.nodes.get(node)!;
    return execa('nsenter', ['-t', String(n.holder), '-m', '-n', '-u', '-p', ...argv], {
      reject: false,
      input: options.input,
      env: options.env,
    });
  }

  /** Start a long-running process inside a node, its output in a log file; stopped at teardown. */
  start(node: string, argv: string[], log: string, env?: Record<string, string>): ResultPromise {
    const n = this.nodes.get(node)!;
    return this.spawn('nsenter', ['-t', String(n.holder), '-m', '-n', '-u', '-p', ...argv], join(n.dir, log), env);
  }

  private spawn(file: string, args: string[], log: string, env?: Record<string, string>): ResultPromise {
    const child = execa(file, args, {
      reject: false,
      stdin: 'ignore',
      stdout: { file: log },
      stderr: { file: log },
      env,
      cleanup: true,
    });
    this.processes.push(child);
    return child;
  }

  // Returns nothing: an execa child is itself a promise, and returning it would await its exit.
  // configFile: the node's /etc/docker/daemon.json, as the image has it.
  async startDocker(node: string, configFile?: string): Promise<void> {
    const n = this.nodes.get(node)!;
    // A temp directory of the node's own: when dockerd finds its containerd unresponsive (a loaded
    // machine) it asks it for a stack dump (containerd.PID.stacks.log) before killing it.
    const tmp = join(n.dir, 'tmp');
    await mkdir(tmp, { recursive: true });
    this.start(
      node,
      [
        'dockerd',
        '--data-root',
        join(n.dir, 'docker'),
        '--exec-root',
        '/run/d',
        '--pidfile',
        '/run/docker.pid',
        '-H',
        'unix:///run/docker.sock',
        '--bridge=none',
        '--iptables=false',
        '--ip-forward=false',
        ...(configFile ? ['--config-file', configFile] : []),
      ],
      'dockerd.log',
      { TMPDIR: tmp },
    );
    await waitFor(
      async () => (await this.exec(node, ['docker', 'info'])).exitCode === 0,
      30_000,
      `${node}'s Docker engine`,
    );
  }

  /**
   * Bind-mount a local folder into a running node (the NAS coming up later): the mount point is
   * made (and removed at teardown) when missing; the mount lives in the node's namespace only.
   */
  async bind(node: string, source: string, target: string): Promise<void> {
    if (
      !(await stat(target).then(
        () => true,
        () => false,
      ))
    ) {
      await mkdir(target, { recursive: true });
      this.createdDirs.push(target);
    }
    const mounted = await this.exec(node, ['mount', '--bind', source, target]);
    if (mounted.exitCode !== 0) throw new Error(`could not mount ${source} at ${target} in ${node}: ${mounted.stderr}`);
  }

  /** Kill a node's Docker engine at once (as a power cut would), leaving its state on disk. */
  async killDocker(node: string): Promise<void> {
    // dockerd and the containerd it started, and /run (a tmpfs), as a power cut would take them.
    await this.exec(node, [
      'sh',
      '-c',
      'pid=$(cat /run/docker.pid); pkill -9 -P "$pid"; kill -9 "$pid"; sleep 0.2; ' +
        'rm -rf /run/d /run/docker.pid /run/docker.sock',
    ]);
    await new Promise((r) => setTimeout(r, 500));
  }

  async startSshd(node: string, listen: string): Promise<void> {
    const n = this.nodes.get(node)!;
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(n.dir, 'host_key')]);
    await writeFile(
      join(n.dir, 'sshd_config'),
      [
        'Port 22',
        `ListenAddress ${listen}`,
        `HostKey ${join(n.dir, 'host_key')}`,
        'PidFile /run/sshd.pid',
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'AuthorizedKeysFile .ssh/authorized_keys',
        'StrictModes no',
        '',
      ].join('\n'),
    );
    this.start(node, ['/usr/sbin/sshd', '-D', '-e', '-f', join(n.dir, 'sshd_config')], 'sshd.log');
    await waitFor(
      async () =>
        (await this.exec(node, ['sh', '-c', `exec 3<>/dev/tcp/${listen}/22`])).exitCode === 0 ||
        (await readText(join(n.dir, 'sshd.log'))).includes('listening'),
      10_000,
      `${node}'s sshd`,
    );
  }

  /** The last lines of every node's logs, for a failed test's report. */
  async logTails(): Promise<string> {
    const out: string[] = [];
    for (const n of this.nodes.values()) {
      for (const log of ['firstboot.log', 'dockerd.log', 'sshd.log']) {
        const text = (await readText(join(n.dir, log))).trim().split('\n').slice(-15).join('\n');
        if (text) out.push(`--- ${n.name} ${log}\n${text}`);
      }
    }
    return out.join('\n');
  }

  /**
   * Stop everything, also after a failure: each node's PID namespace (killing its init kills every
   * process in it and in the containers' namespaces below it), anything else left in its network
   * namespace, then the namespaces. Throws, naming them, if processes of a node outlive this.
   */
  async teardown(): Promise<void> {
    for (const n of this.nodes.values()) {
      try {
        process.kill(n.holder, 'SIGKILL');
      } catch {
        // Already gone (ESRCH): the check below still proves nothing of it is left.
      }
    }
    for (const n of this.nodes.values()) {
      const { stdout } = await execa('ip', ['netns', 'pids', n.netns], { reject: false });
      for (const pid of stdout.split('\n').filter(Boolean)) await execa('kill', ['-9', pid], { reject: false });
    }
    for (const child of this.processes) child.kill('SIGKILL');
    await Promise.all(this.processes);
    const namespaces = new Set([...this.nodes.values()].map((n) => n.pidNamespace));
    let left: string[] = [];
    await waitFor(
      async () => {
        left = await processesIn(namespaces);
        return left.length === 0;
      },
      10_000,
      "the nodes' processes to end",
    ).catch(() => undefined);
    for (const n of this.nodes.values()) {
      // Engine state may hold mounts (overlay layers) created inside the node's namespace; they go with it.
      await execa('ip', ['netns', 'del', n.netns], { reject: false });
    }
    for (const ns of this.switches) await execa('ip', ['netns', 'del', ns], { reject: false });
    for (const dir of this.createdDirs.reverse()) await rmdir(dir).catch(() => undefined);
    await rm(this.root, { recursive: true, force: true }).catch(() => undefined);
    if (left.length > 0) throw new Error(`processes of the lab outlived its teardown:\n${left.join('\n')}`);
  }
}

/** PID 1 of the PID namespace whose init runs in this network namespace, as a PID here. */
async function namespaceInit(netns: string): Promise<number> {
  const { stdout } = await execa('ip', ['netns', 'pids', netns]);
  for (const pid of stdout.split('\n').filter(Boolean)) {
    const status = await readText(`/proc/${pid}/status`);
    // NSpid: <pid here> <pid in each nested namespace>; the holder is 1 in its own.
    if (/^NSpid:\s+\d+\s+1$/m.test(status)) return Number(pid);
  }
  throw new Error(`no PID namespace init in ${netns}: ${stdout}`);
}

/**
 * Processes (`pid command`) in any of these PID namespaces or in one nested below them: a
 * nested process's NSpid has more than one entry and its parent chain reaches one of them.
 */
async function processesIn(namespaces: Set<string>): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
    if (await inNamespaces(pid, namespaces)) {
      const command = (await readText(`/proc/${pid}/cmdline`)).replaceAll('\0', ' ').trim();
      found.push(`${pid} ${command}`);
    }
  }
  return found;
}

async function inNamespaces(pid: string, namespaces: Set<string>): Promise<boolean> {
  for (let current = pid, depth = 0; current !== '0' && depth < 64; depth++) {
    const ns = await readlink(`/proc/${current}/ns/pid`).catch(() => '');
    if (namespaces.has(ns)) return true;
    const status = await readText(`/proc/${current}/status`);
    current = /^PPid:\s+(\d+)$/m.exec(status)?.[1] ?? '0';
  }
  return false;
}

export async function readText(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => '');
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
