/**
 * The swarm forms by itself: images are built from a fixture, the exact first-boot files are
 * extracted from each image (debugfs), and run on this machine with one real Docker engine and one
 * sshd per node, each in its own network namespace with the node's planned addresses — the
 * pizero-otg topology: a host with one point-to-point link per worker.
 */

import { createReadStream } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { swarmcard } from './helpers/cli.js';
import { fixture } from './helpers/fixtures.js';
import { partitionOffsets } from './helpers/independent.js';
import { missingPrograms, missingRoot, testIf } from './helpers/requires.js';
import { extractNodeFiles, imageDirs, readText, SwarmLab, waitFor } from './helpers/swarm-lab.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The test's profile: pizero-otg's shape, 2 workers, a local image, and a fast manager loop. */
async function writeProfile(dir: string): Promise<string> {
  await mkdir(join(dir, 'stacks'));
  await writeFile(
    join(dir, 'stacks', 'guid.yml'),
    [
      'version: "3.8"',
      'services:',
      '  guid:',
      '    image: ${GUID_IMAGE}',
      '    networks: [armnet]',
      // This kernel has no IPVS: no service VIPs or ingress mesh, so DNS round robin and host ports.
      '    ports:',
      '      - { target: 9000, published: 9000, mode: host }',
      '    deploy:',
      '      endpoint_mode: dnsrr',
      '      replicas: 3',
      '      placement: { max_replicas_per_node: 1 }',
      'networks:',
      '  armnet:',
      '    external: true',
      '',
    ].join('\n'),
  );
  return profileVariant(
    'pizero-otg',
    dir,
    [
      ['compose: stacks/pizero-guid.yml', 'compose: stacks/guid.yml'],
      ['GUID_IMAGE: alexellis2/guid-generator-arm:0.1', 'GUID_IMAGE: swarmcard-test/httpd:1'],
      ['  docker:\n', '  interval: 2\n  docker:\n'],
      ['    count: 4\n', '    count: 2\n'],
      ['    method: apt ', '    method: preinstalled '],
    ],
    'swarm-e2e.yaml',
  );
}

/** A shipped profile with the test's changes (each `from` must be in it), written into `dir`. */
async function profileVariant(
  name: string,
  dir: string,
  changes: [from: string, to: string][],
  as = `${name}.yaml`,
): Promise<string> {
  let text = await readFile(join(root, 'profiles', `${name}.yaml`), 'utf8');
  for (const [from, to] of changes) {
    if (!text.includes(from))
      throw new Error(`profiles/${name}.yaml no longer has ${JSON.stringify(from)}; update the test`);
    text = text.replace(from, to);
  }
  const file = join(dir, as);
  await writeFile(file, text);
  return file;
}

/** Does the file contain the text anywhere? (streamed: images are large) */
async function fileContains(path: string, needle: string): Promise<boolean> {
  const pattern = Buffer.from(needle);
  let tail = Buffer.alloc(0);
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) {
    const window = Buffer.concat([tail, chunk as Buffer]);
    if (window.includes(pattern)) return true;
    tail = window.subarray(Math.max(0, window.length - pattern.length));
  }
  return false;
}

// Probed before any test is declared: ava wants every test declared in the module's first turn.
const missing =
  (missingRoot() && `${missingRoot()} (network namespaces, mounts)`) ??
  (await missingPrograms(['dockerd', 'sshd', 'ip', 'nsenter', 'unshare', 'setpriv', 'busybox', 'curl']));
const swarmTest = testIf(missing, { serial: true });

interface Lab {
  work: string;
  lab: SwarmLab;
}

/**
 * The lab as an ava macro: a private work directory and a SwarmLab, torn down on every path (pass,
 * failure, timeout): the lab's own teardown proves no process of a node survives, then the
 * namespaces and the work directory go. On failure the nodes' log tails are printed.
 */
const withLab = test.macro<[name: string, body: (t: ExecutionContext, lab: Lab) => Promise<void>]>(
  async (t, name, body) => {
    t.timeout(600_000);
    const work = await mkdtemp(join(tmpdir(), `swarmcard-${name}-`));
    const prefix = `sc${name.slice(0, 1)}${process.pid % 1000}-`;
    const lab = new SwarmLab(join(work, 'lab'), prefix);
    let passed = false;
    t.teardown(async () => {
      try {
        if (!passed) console.error(await lab.logTails());
        await lab.teardown();
        const { stdout: ns } = await execa('ip', ['netns', 'list']);
        if (ns.includes(prefix)) throw new Error(`network namespaces left behind: ${ns}`);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    });
    await body(t, { work, lab });
    passed = true;
  },
);

/** A tiny local image (no registry here): busybox, plus files; imported into a node's engine. */
async function busyboxImage(work: string, name: string, files: Record<string, string> = {}): Promise<string> {
  const rootfs = join(work, `${name}-rootfs`);
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await cp('/usr/bin/busybox', join(rootfs, 'bin', 'busybox'));
  await symlink('busybox', join(rootfs, 'bin', 'sh'));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(rootfs, path, '..'), { recursive: true });
    await writeFile(join(rootfs, path), text);
  }
  const tar = join(work, `${name}.tar`);
  await execa('tar', ['-C', rootfs, '-cf', tar, '.']);
  return tar;
}

async function dockerImport(t: ExecutionContext, lab: SwarmLab, node: string, tar: string, cmd: string, tag: string) {
  const imported = await lab.exec(node, ['sh', '-c', `docker import -c 'CMD ${cmd}' ${tar} ${tag}`]);
  t.is(imported.exitCode, 0, imported.stderr);
}

const otgImages = { otghost1: '00-otghost1.img', otg1: '01-otg1.img', otg2: '02-otg2.img' } as const;

/** 1–3. Build the pizero-otg images, extract each node's first-boot files, wire the nodes as planned. */
async function otgLab(t: ExecutionContext, { work, lab }: Lab) {
  const profile = await writeProfile(work);
  const dist = join(work, 'dist');
  const built = await swarmcard(['build', profile, '--base', await fixture('trixie-armhf'), '--out', dist], {
    env: { SWARMCARD_CACHE_DIR: join(work, 'cache') },
  });
  t.is(built.exitCode, 0, built.stderr);
  const extracted: Record<string, Record<string, string>> = {};
  for (const [name, file] of Object.entries(otgImages))
    extracted[name] = await extractNodeFiles(join(dist, 'pizero-otg', file), join(work, 'files', name));
  t.false(Object.values(extracted.otghost1!).includes('/root/.ssh'), 'the manager has no authorized_keys');
  const worker = join(dist, 'pizero-otg', otgImages.otg1);
  const unit = await execa('debugfs', [
    '-R',
    'cat /etc/systemd/system/swarmcard-firstboot.service',
    `${worker}?offset=${(await partitionOffsets(worker)).root}`,
  ]);
  t.regex(unit.stdout, /^ExecStart=\/usr\/local\/lib\/swarmcard\/firstboot$/m);
  t.regex(unit.stdout, /^After=network-online\.target/m);

  // The nodes, wired as the plan says: otg k ↔ host over 10.0.(10+k).0/24.
  for (const name of Object.keys(otgImages)) await lab.addNode(name, extracted[name]!);
  await lab.link('otghost1', 'ethusb1', '10.0.11.1/24', 'otg1', 'usb0', '10.0.11.2/24');
  await lab.link('otghost1', 'ethusb2', '10.0.12.1/24', 'otg2', 'usb0', '10.0.12.2/24');
  await execa('ip', ['-n', lab.nodes.get('otg1')!.netns, 'route', 'add', 'default', 'via', '10.0.11.1']);
  await execa('ip', ['-n', lab.nodes.get('otg2')!.netns, 'route', 'add', 'default', 'via', '10.0.12.1']);
  await execa('ip', ['netns', 'exec', lab.nodes.get('otghost1')!.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);

  const httpd = await busyboxImage(work, 'httpd', { 'www/index.html': 'guid answers\n' });
  for (const name of Object.keys(otgImages)) {
    await lab.startDocker(name);
    await dockerImport(
      t,
      lab,
      name,
      httpd,
      '["/bin/busybox","httpd","-f","-p","9000","-h","/www"]',
      'swarmcard-test/httpd:1',
    );
  }
  await lab.startSshd('otg1', '10.0.11.2');
  await lab.startSshd('otg2', '10.0.12.2');
  return { built, dist: join(dist, 'pizero-otg') };
}

const swarmState = async (lab: SwarmLab, node: string) =>
  (await lab.exec(node, ['docker', 'info', '--format', '{{.Swarm.LocalNodeState}}'])).stdout;

const nodeList = async (lab: SwarmLab, manager: string) =>
  (await lab.exec(manager, ['docker', 'node', 'ls', '--format', '{{.Hostname}} {{.Status}}'])).stdout
    .split('\n')
    .filter(Boolean)
    .sort();

/** 4–5. Workers boot first and wait; the manager comes up; otg2's engine dies mid-join and comes back. */
async function otgFormsSwarm(t: ExecutionContext, lab: SwarmLab) {
  for (const worker of ['otg1', 'otg2']) {
    const boot = await lab.exec(worker, ['/usr/local/lib/swarmcard/firstboot']);
    t.is(boot.exitCode, 0, boot.stderr + boot.stdout);
    t.regex(boot.stdout, /the manager at 10\.0\.11\.1 pushes the join token over SSH/);
  }
  t.is(await swarmState(lab, 'otg1'), 'inactive');
  lab.start('otghost1', ['/usr/local/lib/swarmcard/firstboot'], 'firstboot.log');
  await waitFor(
    async () => ['pending', 'active'].includes(await swarmState(lab, 'otg2')),
    60_000,
    'otg2 to start joining',
  );
  await lab.killDocker('otg2');
  await lab.startDocker('otg2');
  await waitFor(
    async () => (await nodeList(lab, 'otghost1')).join() === 'otg1 Ready,otg2 Ready,otghost1 Ready',
    120_000,
    'every node Ready exactly once',
  );
  t.deepEqual(await nodeList(lab, 'otghost1'), ['otg1 Ready', 'otg2 Ready', 'otghost1 Ready'], 'otg2 joined once');
  for (const [name, labels] of [
    ['otg1', { board: 'pi0', link: 'usb-otg', role: 'worker' }],
    ['otg2', { board: 'pi0', link: 'usb-otg', role: 'worker' }],
    ['otghost1', { board: 'pi3', role: 'host' }],
  ] as const) {
    const inspect = ['docker', 'node', 'inspect', name, '--format', '{{json .Spec.Labels}}'];
    await waitFor(
      async () => (await lab.exec('otghost1', inspect)).stdout === JSON.stringify(labels),
      30_000,
      `${name}'s labels`,
    );
  }
}

/** 6. The stack is deployed after the last join, and its tasks answer on every node. */
async function otgStackAnswers(t: ExecutionContext, lab: SwarmLab) {
  const firstbootLog = join(lab.nodes.get('otghost1')!.dir, 'firstboot.log');
  await waitFor(async () => (await readText(firstbootLog)).includes('stack guid deployed'), 60_000, 'the stack');
  const log = await readText(firstbootLog);
  const [network, stack] = [log.indexOf('network armnet ready'), log.indexOf('stack guid deployed')];
  t.true(network >= 0 && network < stack, 'the network is made before the stack is deployed');
  for (const address of ['10.0.11.1', '10.0.11.2', '10.0.12.2']) {
    await waitFor(
      async () =>
        (await lab.exec('otghost1', ['curl', '-s', '-m', '2', `http://${address}:9000/`])).stdout === 'guid answers',
      90_000,
      `a task answering on ${address}:9000`,
    );
  }
  const inspect = ['docker', 'network', 'inspect', 'armnet', '--format', '{{.Driver}} {{.Attachable}}'];
  t.is((await lab.exec('otghost1', inspect)).stdout, 'overlay true');
}

/** 7. Running the first-boot programs again changes nothing; a second join push is refused. */
async function otgFirstbootIsIdempotent(t: ExecutionContext, lab: SwarmLab) {
  const manager = (argv: string[]) => lab.exec('otghost1', argv);
  const snapshot = async () => [
    (await manager(['docker', 'node', 'ls', '--format', '{{.ID}} {{.Hostname}} {{.Status}}'])).stdout,
    (await manager(['docker', 'service', 'inspect', 'guid_guid', '--format', '{{.Version.Index}}'])).stdout,
    (await manager(['docker', 'network', 'inspect', 'armnet', '--format', '{{.ID}}'])).stdout,
  ];
  const before = await snapshot();
  for (const worker of ['otg1', 'otg2'])
    t.is((await lab.exec(worker, ['/usr/local/lib/swarmcard/firstboot'])).exitCode, 0);
  const again = await lab.exec('otghost1', ['/usr/local/lib/swarmcard/firstboot'], { env: { SWARMCARD_ONCE: '1' } });
  t.is(again.exitCode, 0, again.stderr);
  t.deepEqual(await snapshot(), before);
  const ssh = [
    'ssh -i /etc/swarmcard/cluster_key -o BatchMode=yes -o StrictHostKeyChecking=no',
    '-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR',
    "root@10.0.11.2 'ignored: the key only runs the join script'",
  ].join(' ');
  const push = `printf 'token %s\\nmanager 10.0.11.1\\n' "$(docker swarm join-token -q worker)" | ${ssh}`;
  t.is((await manager(['sh', '-c', push])).stdout.trim(), 'already in the swarm');
  return again;
}

/** 8. No secret in any log, in the manifest, or in a worker image; the scan finds the key where it is. */
async function otgKeepsSecrets(
  t: ExecutionContext,
  { work, lab }: Lab,
  dist: string,
  outputs: { stdout: string; stderr: string }[],
) {
  const logs = await Promise.all(
    ['otghost1', 'otg1', 'otg2'].flatMap((n) =>
      ['firstboot.log', 'sshd.log', 'dockerd.log'].map((f) => readText(join(lab.nodes.get(n)!.dir, f))),
    ),
  );
  const token = (await lab.exec('otghost1', ['docker', 'swarm', 'join-token', '-q', 'worker'])).stdout.trim();
  t.regex(token, /^SWMTKN-1-/);
  const manifest = await readFile(join(dist, 'manifest.json'), 'utf8');
  for (const text of [logs.join('\n'), ...outputs.flatMap((o) => [o.stdout, o.stderr]), manifest]) {
    t.false(text.includes(token), 'no join token');
    t.false(text.includes('PRIVATE KEY'), 'no private key');
  }
  const secrets = await readFile(join(work, 'pizero-otg.secrets.yaml'), 'utf8');
  const privateLine = secrets
    .split('\n')
    .find((l) => /^\s+[A-Za-z0-9+/]{60,}$/.test(l))!
    .trim();
  for (const worker of [otgImages.otg1, otgImages.otg2])
    t.false(await fileContains(join(dist, worker), privateLine), `${worker} holds no private key`);
  for (const image of Object.values(otgImages))
    t.false(await fileContains(join(dist, image), token), `${image} holds no join token`);
  t.true(await fileContains(join(dist, otgImages.otghost1), privateLine), 'the scan finds the key where it is');
}

swarmTest(
  'a manager and two workers form a swarm by themselves and deploy the stack',
  withLab,
  'swarm',
  async (t, lab) => {
    const { built, dist } = await otgLab(t, lab);
    await otgFormsSwarm(t, lab.lab);
    await otgStackAnswers(t, lab.lab);
    const again = await otgFirstbootIsIdempotent(t, lab.lab);
    await otgKeepsSecrets(t, lab, dist, [built, { stdout: again.stdout, stderr: '' }]);
  },
);

/** pi4-ethernet, 2 workers: the shipped profile with Docker preinstalled, a fast loop, no Portainer. */
async function writeEthernetProfile(dir: string): Promise<string> {
  return profileVariant('pi4-ethernet', dir, [
    ['    method: convenience ', '    method: preinstalled '],
    ['  docker:\n', '  interval: 2\n  docker:\n'],
    ['  portainer: {}\n', ''],
    ['    count: 7\n', '    count: 2\n'],
  ]);
}

/** A registry:2 stand-in from Debian's docker-registry (the same distribution registry, v2 API). */
async function registryImageTar(work: string): Promise<string> {
  const rootfs = join(work, 'registry-rootfs');
  for (const dir of ['bin', 'etc', 'lib/x86_64-linux-gnu', 'lib64', 'var/lib/registry'])
    await mkdir(join(rootfs, dir), { recursive: true });
  // The binary, its libc and its loader (these paths are links on Debian: copy what they point to).
  await cp('/usr/bin/docker-registry', join(rootfs, 'bin', 'registry'), { dereference: true });
  await cp('/lib/x86_64-linux-gnu/libc.so.6', join(rootfs, 'lib/x86_64-linux-gnu/libc.so.6'), { dereference: true });
  await cp('/lib64/ld-linux-x86-64.so.2', join(rootfs, 'lib64/ld-linux-x86-64.so.2'), { dereference: true });
  await writeFile(
    join(rootfs, 'etc', 'config.yml'),
    'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\n',
  );
  const tar = join(work, 'registry.tar');
  await execa('tar', ['-C', rootfs, '-cf', tar, '.']);
  return tar;
}

const lanNodes = [
  ['manager1', '00-manager1.img', '192.168.1.200'],
  ['worker1', '01-worker1.img', '192.168.1.201'],
  ['worker2', '02-worker2.img', '192.168.1.202'],
] as const;

/**
 * 1–2. Build pi4-ethernet; each node gets its first-boot files and its /etc/docker from its image.
 * The NAS export is a local folder bind-mounted at /mnt/cluster, and /shared (a link to it in the
 * image) the same folder, bound through a link to it. One LAN switch joins the nodes.
 */
async function lanLab(t: ExecutionContext, { work, lab }: Lab) {
  const profile = await writeEthernetProfile(work);
  const dist = join(work, 'dist', 'pi4-ethernet');
  const built = await swarmcard(
    ['build', profile, '--base', await fixture('bookworm-arm64'), '--out', join(work, 'dist')],
    { env: { SWARMCARD_CACHE_DIR: join(work, 'cache') } },
  );
  t.is(built.exitCode, 0, built.stderr);
  const nas = join(work, 'nas');
  await mkdir(nas);
  const sharedLink = join(work, 'nas-link');
  await symlink(nas, sharedLink);
  for (const [name, file] of lanNodes) {
    const mounts = await extractNodeFiles(join(dist, file), join(work, 'files', name), [...imageDirs, '/etc/docker']);
    mounts[nas] = '/mnt/cluster';
    mounts[sharedLink] = '/shared';
    await lab.addNode(name, mounts);
  }
  await lab.switch(lanNodes.map(([name, , address]) => [name, 'eth0', `${address}/24`]));

  // Local images: the stack's registry:2 (on the manager) and something to push.
  const registryTar = await registryImageTar(work);
  const app = await busyboxImage(work, 'app');
  for (const [name] of lanNodes) {
    await lab.startDocker(name, join(work, 'files', name, 'etc-docker', 'docker', 'daemon.json'));
    if (name !== 'manager1') continue;
    await dockerImport(t, lab, name, registryTar, '["/bin/registry","serve","/etc/config.yml"]', 'registry:2');
    await dockerImport(t, lab, name, app, '["/bin/sh"]', 'swarmcard-test/app:1');
  }
  await lab.startSshd('worker1', '192.168.1.201');
  await lab.startSshd('worker2', '192.168.1.202');
  return { nas };
}

/** Wait for the manager's registry to answer; when it does not, log why (its tasks, the last container). */
async function registryAnswers(t: ExecutionContext, lab: SwarmLab) {
  await waitFor(
    async () => (await lab.exec('manager1', ['curl', '-s', '-m', '2', 'http://192.168.1.200:5000/v2/'])).exitCode === 0,
    90_000,
    'the registry answering on 192.168.1.200:5000',
  ).catch(async (error: unknown) => {
    t.log((await lab.exec('manager1', ['docker', 'service', 'ps', '--no-trunc', 'registry_registry'])).stdout);
    const lastExited = [
      'c=$(docker ps -aq --filter status=exited | head -1)',
      'docker logs $c 2>&1 | tail -5',
      'docker inspect $c --format {{.State.Error}}',
    ].join('; ');
    t.log((await lab.exec('manager1', ['sh', '-c', lastExited])).stdout);
    throw error;
  });
}

/** 3. Workers boot, then the manager: every node Ready, the registry stack deployed and answering. */
async function lanFormsSwarmWithRegistry(t: ExecutionContext, lab: SwarmLab) {
  for (const worker of ['worker1', 'worker2']) {
    const boot = await lab.exec(worker, ['/usr/local/lib/swarmcard/firstboot']);
    t.is(boot.exitCode, 0, boot.stderr + boot.stdout);
  }
  lab.start('manager1', ['/usr/local/lib/swarmcard/firstboot'], 'firstboot.log');
  await waitFor(
    async () => (await nodeList(lab, 'manager1')).join() === 'manager1 Ready,worker1 Ready,worker2 Ready',
    120_000,
    'every node Ready',
  );
  const firstbootLog = join(lab.nodes.get('manager1')!.dir, 'firstboot.log');
  await waitFor(
    async () => (await readText(firstbootLog)).includes('stack registry deployed'),
    60_000,
    'the registry stack',
  );
  t.false((await readText(firstbootLog)).includes('stack portainer'), 'Portainer is optional: this profile has none');
  await registryAnswers(t, lab);
}

/** 4. Push on the manager; a worker pulls through the insecure-registries its image lists. */
async function lanPushAndPull(t: ExecutionContext, lab: SwarmLab, nas: string) {
  const pushed = await lab.exec('manager1', [
    'sh',
    '-c',
    'docker tag swarmcard-test/app:1 192.168.1.200:5000/app:1 && docker push 192.168.1.200:5000/app:1',
  ]);
  t.is(pushed.exitCode, 0, pushed.stderr);
  const pulled = await lab.exec('worker2', ['docker', 'pull', '192.168.1.200:5000/app:1']);
  t.is(pulled.exitCode, 0, pulled.stderr);
  const imageId = async (node: string, image: string) =>
    (await lab.exec(node, ['docker', 'image', 'inspect', image, '--format', '{{.Id}}'])).stdout;
  const pulledId = await imageId('worker2', '192.168.1.200:5000/app:1');
  t.regex(pulledId, /^sha256:/);
  t.is(pulledId, await imageId('manager1', 'swarmcard-test/app:1'));
  // The registry's data is on the shared export, as the profile says.
  t.true((await readdir(join(nas, 'registry', 'docker', 'registry', 'v2', 'repositories'))).includes('app'));
  // The engines took the registry as insecure from the image's daemon.json (the pull needed it).
  t.regex(
    (await lab.exec('worker1', ['docker', 'info', '--format', '{{json .RegistryConfig.IndexConfigs}}'])).stdout,
    /192\.168\.1\.200:5000/,
  );
}

swarmTest(
  'pi4-ethernet: a manager and two workers on one LAN, the registry on shared storage, a worker pulls what was pushed',
  withLab,
  'lan',
  async (t, lab) => {
    const { nas } = await lanLab(t, lab);
    await lanFormsSwarmWithRegistry(t, lab.lab);
    await lanPushAndPull(t, lab.lab, nas);
  },
);

/**
 * pi4-ethernet, 3 planned workers of which worker3 never comes (until the very end), a 20 s grace
 * period, and a stack of its own that needs no shared storage next to the registry that does.
 */
async function writeFaultyProfile(dir: string): Promise<string> {
  await mkdir(join(dir, 'stacks'));
  await writeFile(
    join(dir, 'stacks', 'web.yml'),
    [
      'version: "3.8"',
      'services:',
      '  web:',
      '    image: swarmcard-test/httpd:1',
      '    ports:',
      '      - { target: 9000, published: 9000, mode: host }',
      '    deploy:',
      '      endpoint_mode: dnsrr',
      '      replicas: 3',
      '      placement: { max_replicas_per_node: 1 }',
      '',
    ].join('\n'),
  );
  return profileVariant('pi4-ethernet', dir, [
    ['    method: convenience ', '    method: preinstalled '],
    [
      '  docker:\n',
      '  interval: 2\n  deployAfter: 20\n  stacks:\n    - name: web\n      compose: stacks/web.yml\n  docker:\n',
    ],
    ['  portainer: {}\n', ''],
    ['    count: 7\n', '    count: 3\n'],
  ]);
}

const faultyNodes = [...lanNodes, ['worker3', '03-worker3.img', '192.168.1.203']] as const;

/**
 * The NAS is absent: nothing is mounted at /mnt/cluster, and /shared (a link to it in the image)
 * is a folder standing in for the SD card under it. apt-get fails as it would offline (the scripts
 * try to install the NFS client when a mount is missing). Every node gets the web image; only
 * the manager the registry. worker3 is wired but nothing of it runs yet.
 */
async function faultyLab(t: ExecutionContext, { work, lab }: Lab) {
  const profile = await writeFaultyProfile(work);
  const dist = join(work, 'dist', 'pi4-ethernet');
  const built = await swarmcard(
    ['build', profile, '--base', await fixture('bookworm-arm64'), '--out', join(work, 'dist')],
    { env: { SWARMCARD_CACHE_DIR: join(work, 'cache') } },
  );
  t.is(built.exitCode, 0, built.stderr);
  const sdCard = join(work, 'sd-shared');
  await mkdir(sdCard);
  const offlineApt = join(work, 'apt-get');
  await writeFile(offlineApt, '#!/bin/sh\necho "apt-get: the lab is offline" >&2\nexit 100\n', { mode: 0o755 });
  for (const [name, file] of faultyNodes) {
    const mounts = await extractNodeFiles(join(dist, file), join(work, 'files', name), [...imageDirs, '/etc/docker']);
    mounts[sdCard] = '/shared';
    mounts[offlineApt] = '/usr/bin/apt-get';
    await lab.addNode(name, mounts);
  }
  await lab.switch(faultyNodes.map(([name, , address]) => [name, 'eth0', `${address}/24`]));
  const registryTar = await registryImageTar(work);
  const httpd = await busyboxImage(work, 'httpd', { 'www/index.html': 'web answers\n' });
  for (const [name] of lanNodes) {
    await lab.startDocker(name, join(work, 'files', name, 'etc-docker', 'docker', 'daemon.json'));
    await dockerImport(
      t,
      lab,
      name,
      httpd,
      '["/bin/busybox","httpd","-f","-p","9000","-h","/www"]',
      'swarmcard-test/httpd:1',
    );
    if (name === 'manager1')
      await dockerImport(t, lab, name, registryTar, '["/bin/registry","serve","/etc/config.yml"]', 'registry:2');
  }
  await lab.startSshd('worker1', '192.168.1.201');
  await lab.startSshd('worker2', '192.168.1.202');
  const nas = join(work, 'nas');
  await mkdir(nas);
  return { nas, sdCard, httpd };
}

const answers = async (lab: SwarmLab, url: string, text: string) =>
  (await lab.exec('manager1', ['curl', '-s', '-m', '2', url])).stdout.trim() === text;

swarmTest(
  'pi4-ethernet: the swarm forms without the NAS, deploys without a worker that never comes, then the rest',
  withLab,
  'faults',
  async (t, { work, lab }) => {
    const { nas, sdCard, httpd } = await faultyLab(t, { work, lab });
    const log = (node: string) => readText(join(lab.nodes.get(node)!.dir, 'firstboot.log'));
    const began = Date.now();
    // Every node boots at once, the NAS down: each keeps waiting for its mount, but not for the swarm.
    for (const [name] of lanNodes) lab.start(name, ['/usr/local/lib/swarmcard/firstboot'], 'firstboot.log');
    await waitFor(
      async () => (await nodeList(lab, 'manager1')).join() === 'manager1 Ready,worker1 Ready,worker2 Ready',
      120_000,
      'the swarm to form without the NAS (manager1, worker1, worker2 Ready)',
    );
    const formed = Date.now();
    t.log(`the swarm formed without the NAS in ${Math.round((formed - began) / 1000)} s`);
    await waitFor(
      async () => (await log('manager1')).includes('waiting for /mnt/cluster for stack registry; the swarm is up'),
      30_000,
      "the manager's log to say what waits for the NAS",
    );
    for (const worker of ['worker1', 'worker2'])
      t.regex(await log(worker), /waiting for \/mnt\/cluster/, `${worker} says it waits for the NAS`);

    // The grace period: web is deployed without worker3, whose absence the log names.
    await waitFor(async () => (await log('manager1')).includes('stack web deployed'), 90_000, 'stack web deployed');
    const deployed = Date.now();
    t.log(`stack web deployed ${Math.round((deployed - formed) / 1000)} s after the swarm formed`);
    t.true(deployed - began >= 20_000, 'not before the grace period');
    t.regex(await log('manager1'), /deploying the stacks without worker3 /);
    for (const address of ['192.168.1.200', '192.168.1.201', '192.168.1.202'])
      await waitFor(
        () => answers(lab, `http://${address}:9000/`, 'web answers'),
        90_000,
        `web answering on ${address}:9000`,
      );
    t.false((await log('manager1')).includes('stack registry deployed'), 'the registry waits for its storage');
    t.deepEqual(await readdir(sdCard), [], 'nothing written to the SD card under /shared');
    const invitedSince = (await log('manager1')).length;
    await waitFor(
      async () => (await log('manager1')).slice(invitedSince).includes('worker3 (192.168.1.203) is not reachable yet'),
      30_000,
      'the manager to keep inviting worker3',
    );

    // The NAS comes up: the registry is deployed on it. On a Pi, /shared is a link to /mnt/cluster
    // and both change at once; here they are two mounts. The scripts wait for /mnt/cluster's mount,
    // then write through /shared: /shared goes first, or they may write to the SD card in between.
    for (const [name] of lanNodes) {
      await lab.bind(name, nas, '/shared');
      await lab.bind(name, nas, '/mnt/cluster');
    }
    await waitFor(
      async () => (await log('manager1')).includes('stack registry deployed'),
      60_000,
      'stack registry deployed once the NAS is up',
    );
    t.log(`the registry deployed ${Math.round((Date.now() - deployed) / 1000)} s after web`);
    await registryAnswers(t, lab);
    t.true((await readdir(nas)).includes('registry'), "the registry's data is on the NAS");
    t.deepEqual(await readdir(sdCard), [], 'still nothing on the SD card');
    for (const worker of ['worker1', 'worker2'])
      await waitFor(async () => (await log(worker)).includes('/mnt/cluster mounted'), 30_000, `${worker}'s mount`);

    // worker3 comes after all: the manager, still inviting, brings it in.
    await lab.startDocker('worker3', join(work, 'files', 'worker3', 'etc-docker', 'docker', 'daemon.json'));
    await dockerImport(
      t,
      lab,
      'worker3',
      httpd,
      '["/bin/busybox","httpd","-f","-p","9000","-h","/www"]',
      'swarmcard-test/httpd:1',
    );
    await lab.startSshd('worker3', '192.168.1.203');
    await waitFor(
      async () =>
        (await nodeList(lab, 'manager1')).join() === 'manager1 Ready,worker1 Ready,worker2 Ready,worker3 Ready',
      90_000,
      'worker3 to join when it comes',
    );
  },
);
