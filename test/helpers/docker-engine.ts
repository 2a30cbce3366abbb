/**
 * A private Docker engine for the builder tests: its own data root, exec root, pidfile and unix
 * socket under one folder, no bridge, no iptables, no forwarding (the host's network is left as it
 * was). It runs in the host's network namespace so that `docker build --network host` reaches the
 * Debian archive, the one thing the builder image's Dockerfile downloads. Stopped on every path:
 * dockerd gets SIGTERM (it stops its containers and its containerd), whatever still names the
 * engine's folder after that is killed, and the folder goes.
 */
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { fixtureDir } from './fixtures.js';
import { waitFor } from './swarm-lab.js';

export interface Engine {
  root: string;
  /** DOCKER_HOST for clients. */
  host: string;
  docker: (args: string[]) => Promise<{ exitCode: number; stdout: string; stderr: string }>;
  stop: () => Promise<void>;
}

export async function startEngine(): Promise<Engine> {
  const root = await mkdtemp(join(tmpdir(), 'swarmcard-engine-'));
  // A non-root caller (the ownership test) must reach the socket.
  await chmod(root, 0o755);
  await mkdir(join(root, 'tmp'));
  const socket = join(root, 'docker.sock');
  const host = `unix://${socket}`;
  // --pdeathsig: dockerd dies with this test worker, however the worker ends.
  const daemon: ResultPromise = execa(
    'setpriv',
    [
      '--pdeathsig',
      'KILL',
      'dockerd',
      '--data-root',
      join(root, 'data'),
      '--exec-root',
      join(root, 'x'),
      '--pidfile',
      join(root, 'docker.pid'),
      '-H',
      host,
      '--bridge=none',
      '--iptables=false',
      '--ip-forward=false',
      '--ip-masq=false',
    ],
    // containerd writes a stack dump to TMPDIR when dockerd finds it slow: keep it in the engine's folder.
    {
      reject: false,
      stdin: 'ignore',
      stdout: { file: join(root, 'dockerd.log') },
      stderr: { file: join(root, 'dockerd.log') },
      env: { TMPDIR: join(root, 'tmp') },
      cleanup: true,
    },
  );
  const docker = async (args: string[]) => {
    const result = await execa('docker', args, { reject: false, env: { DOCKER_HOST: host } });
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
  };
  const stop = async () => {
    daemon.kill('SIGTERM');
    const stopped = await Promise.race([
      daemon.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 30_000)),
    ]);
    if (!stopped) daemon.kill('SIGKILL');
    await daemon;
    // containerd and its shims outlive a dockerd that was killed: they name the engine's folder.
    for (const pid of await processesNaming(root)) await execa('kill', ['-9', pid], { reject: false });
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((p) => p.startsWith(`${root}/`))
      .sort()
      .reverse();
    for (const point of mounts) await execa('umount', ['--lazy', point], { reject: false });
    await rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  };
  try {
    await waitFor(async () => (await docker(['info'])).exitCode === 0, 60_000, 'the test Docker engine');
    await chmod(socket, 0o666);
  } catch (error) {
    await stop();
    throw new Error(
      `${(error as Error).message}\n${await readFile(join(root, 'dockerd.log'), 'utf8').catch(() => '')}`,
    );
  }
  return { root, host, docker, stop };
}

async function processesNaming(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(text) && Number(pid) !== process.pid) found.push(pid);
  }
  return found;
}

/** The FROM image the repository's Dockerfile names by default (its `ARG BASE=`). */
export async function dockerfileBase(dockerfile: string): Promise<string> {
  const match = /^ARG BASE=(\S+)$/m.exec(await readFile(dockerfile, 'utf8'));
  if (!match) throw new Error(`${dockerfile} has no "ARG BASE=…" line`);
  return match[1]!;
}

/**
 * No registry is reachable here: when the engine lacks the Dockerfile's base image, make it from
 * Debian packages under that same tag (mmdebstrap --variant=minbase SUITE | docker import), the
 * root filesystem's tar kept in the fixture cache for the next run (docs/docker.md "Offline").
 */
export async function ensureBaseImage(engine: Engine, tag: string): Promise<void> {
  if ((await engine.docker(['image', 'inspect', tag])).exitCode === 0) return;
  const suite = /^debian:([a-z]+)(?:-slim)?$/.exec(tag)?.[1];
  if (!suite) throw new Error(`cannot make ${tag} from Debian packages: not a debian:SUITE[-slim] tag`);
  const tar = join(fixtureDir, `docker-base-${suite}-minbase-${process.arch}.tar`);
  const cached = await stat(tar).then(
    (s) => s.size > 0,
    () => false,
  );
  if (!cached) {
    await mkdir(fixtureDir, { recursive: true });
    const partial = `${tar}.${process.pid}.partial`;
    // mmdebstrap leaves its gpg home (mmdebstrap.gpghome.*) in TMPDIR: a private one, removed after.
    const temp = await mkdtemp(join(tmpdir(), 'swarmcard-mmdebstrap-'));
    try {
      // --format: mmdebstrap otherwise guesses it from the name's extension (and makes a folder).
      await execa('mmdebstrap', ['--variant=minbase', '--format=tar', '--quiet', suite, partial], {
        env: { TMPDIR: temp },
      });
      await rename(partial, tar);
    } finally {
      await rm(partial, { recursive: true, force: true });
      await rm(temp, { recursive: true, force: true });
    }
  }
  const imported = await engine.docker(['import', tar, tag]);
  if (imported.exitCode !== 0) throw new Error(`docker import ${tar} ${tag} failed: ${imported.stderr}`);
}
