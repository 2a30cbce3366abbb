/**
 * The swarm forms by itself: images are built from a fixture, the exact first-boot files are
 * extracted from each image (debugfs), and run on this machine with one real Docker engine and one
 * sshd per node, each in its own network namespace with the node's planned addresses — the
 * pizero-otg topology: a host with one point-to-point link per worker.
 */

import { createReadStream } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { execa } from 'execa';
import { swarmcard } from './helpers/cli.js';
import { fixture } from './helpers/fixtures.js';
import { partitionOffsets } from './helpers/independent.js';
import { extractNodeFiles, imageDirs, readText, SwarmLab, waitFor } from './helpers/swarm-lab.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

async function available(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, mounts)';
  for (const tool of ['dockerd', 'sshd', 'ip', 'nsenter', 'busybox', 'curl']) {
    if (
      (await execa('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`], { reject: false })).exitCode !== 0
    )
      return `needs ${tool} (make test installs it)`;
  }
  return undefined;
}

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

const why = await available();

(why ? test.skip : test.serial)(
  'a manager and two workers form a swarm by themselves and deploy the stack',
  async (t) => {
    t.timeout(600_000);
    const work = await mkdtemp(join(tmpdir(), 'swarmcard-swarm-'));
    const lab = new SwarmLab(join(work, 'lab'), `sct${process.pid % 1000}-`);
    let passed = false;
    t.teardown(async () => {
      if (!passed) console.error(await lab.logTails());
      await lab.teardown();
      // Nothing left behind: no namespace, no engine of ours.
      const { stdout: ns } = await execa('ip', ['netns', 'list']);
      if (ns.includes(`sct${process.pid % 1000}-`)) throw new Error(`network namespaces left behind: ${ns}`);
      const { stdout: ps } = await execa('ps', ['-eo', 'args']);
      if (ps.includes(join(work, 'lab'))) throw new Error('processes left behind');
      await execa('rm', ['-rf', work]);
    });

    // 1. Build the images.
    const profile = await writeProfile(work);
    const dist = join(work, 'dist');
    const built = await swarmcard(['build', profile, '--base', await fixture('trixie-armhf'), '--out', dist], {
      env: { SWARMCARD_CACHE_DIR: join(work, 'cache') },
    });
    t.is(built.exitCode, 0, built.stderr);
    const images = { otghost1: '00-otghost1.img', otg1: '01-otg1.img', otg2: '02-otg2.img' } as const;

    // 2. Extract the exact first-boot files from each image with debugfs.
    const extracted: Record<string, Record<string, string>> = {};
    for (const [name, file] of Object.entries(images))
      extracted[name] = await extractNodeFiles(join(dist, 'pizero-otg', file), join(work, 'files', name));
    t.false(Object.values(extracted.otghost1!).includes('/root/.ssh'), 'the manager has no authorized_keys');
    const unit = (
      await execa('debugfs', [
        '-R',
        'cat /etc/systemd/system/swarmcard-firstboot.service',
        `${join(dist, 'pizero-otg', images.otg1)}?offset=${(await partitionOffsets(join(dist, 'pizero-otg', images.otg1))).root}`,
      ])
    ).stdout;
    t.regex(unit, /^ExecStart=\/usr\/local\/lib\/swarmcard\/firstboot$/m);
    t.regex(unit, /^After=network-online\.target/m);

    // 3. The nodes, wired as the plan says: otg k ↔ host over 10.0.(10+k).0/24.
    for (const name of Object.keys(images)) await lab.addNode(name, extracted[name]!);
    await lab.link('otghost1', 'ethusb1', '10.0.11.1/24', 'otg1', 'usb0', '10.0.11.2/24');
    await lab.link('otghost1', 'ethusb2', '10.0.12.1/24', 'otg2', 'usb0', '10.0.12.2/24');
    await execa('ip', ['-n', lab.nodes.get('otg1')!.netns, 'route', 'add', 'default', 'via', '10.0.11.1']);
    await execa('ip', ['-n', lab.nodes.get('otg2')!.netns, 'route', 'add', 'default', 'via', '10.0.12.1']);
    await execa('ip', ['netns', 'exec', lab.nodes.get('otghost1')!.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);

    // A tiny local image for the stack (no registry here): busybox httpd.
    const rootfs = join(work, 'rootfs');
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await mkdir(join(rootfs, 'www'));
    await cp('/usr/bin/busybox', join(rootfs, 'bin', 'busybox'));
    await symlink('busybox', join(rootfs, 'bin', 'sh'));
    await writeFile(join(rootfs, 'www', 'index.html'), 'guid answers\n');
    await execa('tar', ['-C', rootfs, '-cf', join(work, 'rootfs.tar'), '.']);
    for (const name of Object.keys(images)) {
      await lab.startDocker(name);
      const imported = await lab.exec(name, [
        'sh',
        '-c',
        `docker import -c 'CMD ["/bin/busybox","httpd","-f","-p","9000","-h","/www"]' ${join(work, 'rootfs.tar')} swarmcard-test/httpd:1`,
      ]);
      t.is(imported.exitCode, 0, imported.stderr);
    }
    await lab.startSshd('otg1', '10.0.11.2');
    await lab.startSshd('otg2', '10.0.12.2');

    // 4. Workers boot first: Docker runs, they wait for the manager.
    for (const worker of ['otg1', 'otg2']) {
      const boot = await lab.exec(worker, ['/usr/local/lib/swarmcard/firstboot']);
      t.is(boot.exitCode, 0, boot.stderr + boot.stdout);
      t.regex(boot.stdout, /the manager at 10\.0\.11\.1 pushes the join token over SSH/);
    }
    t.is((await lab.exec('otg1', ['docker', 'info', '--format', '{{.Swarm.LocalNodeState}}'])).stdout, 'inactive');

    // 5. The manager comes up; otg2's engine dies the moment it starts joining, then comes back.
    lab.start('otghost1', ['/usr/local/lib/swarmcard/firstboot'], 'firstboot.log');
    await waitFor(
      async () =>
        ['pending', 'active'].includes(
          (await lab.exec('otg2', ['docker', 'info', '--format', '{{.Swarm.LocalNodeState}}'])).stdout,
        ),
      60_000,
      'otg2 to start joining',
    );
    await lab.killDocker('otg2');
    await lab.startDocker('otg2');

    const nodeList = async () =>
      (await lab.exec('otghost1', ['docker', 'node', 'ls', '--format', '{{.Hostname}} {{.Status}}'])).stdout
        .split('\n')
        .filter(Boolean)
        .sort();
    await waitFor(
      async () => (await nodeList()).join() === 'otg1 Ready,otg2 Ready,otghost1 Ready',
      120_000,
      'every node Ready exactly once',
    );
    t.deepEqual(await nodeList(), ['otg1 Ready', 'otg2 Ready', 'otghost1 Ready'], 'otg2 joined exactly once');
    for (const [name, labels] of [
      ['otg1', { board: 'pi0', link: 'usb-otg', role: 'worker' }],
      ['otg2', { board: 'pi0', link: 'usb-otg', role: 'worker' }],
      ['otghost1', { board: 'pi3', role: 'host' }],
    ] as const) {
      await waitFor(
        async () =>
          (await lab.exec('otghost1', ['docker', 'node', 'inspect', name, '--format', '{{json .Spec.Labels}}']))
            .stdout === JSON.stringify(labels),
        30_000,
        `${name}'s labels`,
      );
    }

    // 6. The stack is deployed after the last join, and its tasks answer.
    await waitFor(
      async () =>
        (await readText(join(lab.nodes.get('otghost1')!.dir, 'firstboot.log'))).includes('stack guid deployed'),
      60_000,
      'the stack',
    );
    const log = await readText(join(lab.nodes.get('otghost1')!.dir, 'firstboot.log'));
    t.true(log.indexOf('network armnet ready') < log.indexOf('stack guid deployed'));
    for (const address of ['10.0.11.1', '10.0.11.2', '10.0.12.2']) {
      await waitFor(
        async () =>
          (await lab.exec('otghost1', ['curl', '-s', '-m', '2', `http://${address}:9000/`])).stdout === 'guid answers',
        90_000,
        `a task answering on ${address}:9000`,
      );
    }
    t.is(
      (
        await lab.exec('otghost1', [
          'docker',
          'network',
          'inspect',
          'armnet',
          '--format',
          '{{.Driver}} {{.Attachable}}',
        ])
      ).stdout,
      'overlay true',
    );

    // 7. Running the first-boot programs again changes nothing.
    const snapshot = async () => [
      (await lab.exec('otghost1', ['docker', 'node', 'ls', '--format', '{{.ID}} {{.Hostname}} {{.Status}}'])).stdout,
      (await lab.exec('otghost1', ['docker', 'service', 'inspect', 'guid_guid', '--format', '{{.Version.Index}}']))
        .stdout,
      (await lab.exec('otghost1', ['docker', 'network', 'inspect', 'armnet', '--format', '{{.ID}}'])).stdout,
    ];
    const before = await snapshot();
    for (const worker of ['otg1', 'otg2'])
      t.is((await lab.exec(worker, ['/usr/local/lib/swarmcard/firstboot'])).exitCode, 0);
    const again = await lab.exec('otghost1', ['/usr/local/lib/swarmcard/firstboot'], { env: { SWARMCARD_ONCE: '1' } });
    t.is(again.exitCode, 0, again.stderr);
    t.deepEqual(await snapshot(), before);
    const rejoin = await lab.exec('otghost1', [
      'sh',
      '-c',
      `printf 'token %s\\nmanager 10.0.11.1\\n' "$(docker swarm join-token -q worker)" | ssh -i /etc/swarmcard/cluster_key -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@10.0.11.2 'ignored: the key only runs the join script'`,
    ]);
    t.is(rejoin.stdout.trim(), 'already in the swarm');

    // 8. No secret in any log, in the manifest, or in a worker image.
    const logs = (
      await Promise.all(
        ['otghost1', 'otg1', 'otg2'].flatMap((n) =>
          ['firstboot.log', 'sshd.log', 'dockerd.log'].map((f) => readText(join(lab.nodes.get(n)!.dir, f))),
        ),
      )
    ).join('\n');
    const token = (await lab.exec('otghost1', ['docker', 'swarm', 'join-token', '-q', 'worker'])).stdout.trim();
    t.regex(token, /^SWMTKN-1-/);
    for (const text of [
      logs,
      built.stdout,
      built.stderr,
      again.stdout,
      await readFile(join(dist, 'pizero-otg', 'manifest.json'), 'utf8'),
    ]) {
      t.false(text.includes(token), 'no join token');
      t.false(text.includes('PRIVATE KEY'), 'no private key');
    }
    const secrets = await readFile(join(work, 'pizero-otg.secrets.yaml'), 'utf8');
    const privateLine = secrets
      .split('\n')
      .find((l) => /^\s+[A-Za-z0-9+/]{60,}$/.test(l))!
      .trim();
    for (const worker of [images.otg1, images.otg2])
      t.false(await fileContains(join(dist, 'pizero-otg', worker), privateLine), `${worker} holds no private key`);
    for (const image of Object.values(images))
      t.false(await fileContains(join(dist, 'pizero-otg', image), token), `${image} holds no join token`);
    t.true(
      await fileContains(join(dist, 'pizero-otg', images.otghost1), privateLine),
      'the scan finds the key where it is',
    );
    passed = true;
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

(why ? test.skip : test.serial)(
  'pi4-ethernet: a manager and two workers on one LAN, the registry on shared storage, a worker pulls what was pushed',
  async (t) => {
    t.timeout(600_000);
    const work = await mkdtemp(join(tmpdir(), 'swarmcard-lan-'));
    const prefix = `scl${process.pid % 1000}-`;
    const lab = new SwarmLab(join(work, 'lab'), prefix);
    let passed = false;
    t.teardown(async () => {
      if (!passed) console.error(await lab.logTails());
      await lab.teardown();
      const { stdout: ns } = await execa('ip', ['netns', 'list']);
      if (ns.includes(prefix)) throw new Error(`network namespaces left behind: ${ns}`);
      await execa('rm', ['-rf', work]);
    });

    // 1. Build the images.
    const profile = await writeEthernetProfile(work);
    const dist = join(work, 'dist', 'pi4-ethernet');
    const built = await swarmcard(
      ['build', profile, '--base', await fixture('bookworm-arm64'), '--out', join(work, 'dist')],
      { env: { SWARMCARD_CACHE_DIR: join(work, 'cache') } },
    );
    t.is(built.exitCode, 0, built.stderr);
    const nodes = [
      ['manager1', '00-manager1.img', '192.168.1.200'],
      ['worker1', '01-worker1.img', '192.168.1.201'],
      ['worker2', '02-worker2.img', '192.168.1.202'],
    ] as const;

    // 2. Each node's first-boot files and its /etc/docker from its image. The NAS export is a local
    //    folder bind-mounted at /mnt/cluster, and /shared (a link to it in the image) the same folder.
    const nas = join(work, 'nas');
    await mkdir(nas);
    const sharedLink = join(work, 'nas-link');
    await symlink(nas, sharedLink);
    for (const [name, file] of nodes) {
      const mounts = await extractNodeFiles(join(dist, file), join(work, 'files', name), [...imageDirs, '/etc/docker']);
      mounts[nas] = '/mnt/cluster';
      // /shared, a link to /mnt/cluster in the image: the same folder bound there (through a link to it).
      mounts[sharedLink] = '/shared';
      await lab.addNode(name, mounts);
    }
    await lab.switch(nodes.map(([name, , address]) => [name, 'eth0', `${address}/24`]));

    // Local images: the stack's registry:2 (on the manager) and something to push.
    const registryTar = await registryImageTar(work);
    const rootfs = join(work, 'rootfs');
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await cp('/usr/bin/busybox', join(rootfs, 'bin', 'busybox'));
    await symlink('busybox', join(rootfs, 'bin', 'sh'));
    await execa('tar', ['-C', rootfs, '-cf', join(work, 'app.tar'), '.']);
    for (const [name] of nodes) {
      await lab.startDocker(name, join(work, 'files', name, 'etc-docker', 'docker', 'daemon.json'));
      if (name === 'manager1') {
        t.is(
          (
            await lab.exec(name, [
              'sh',
              '-c',
              `docker import -c 'CMD ["/bin/registry","serve","/etc/config.yml"]' ${registryTar} registry:2`,
            ])
          ).exitCode,
          0,
        );
        t.is(
          (
            await lab.exec(name, [
              'sh',
              '-c',
              `docker import -c 'CMD ["/bin/sh"]' ${join(work, 'app.tar')} swarmcard-test/app:1`,
            ])
          ).exitCode,
          0,
        );
      }
    }
    await lab.startSshd('worker1', '192.168.1.201');
    await lab.startSshd('worker2', '192.168.1.202');

    // 3. Workers boot, then the manager: every node Ready, the registry stack deployed.
    for (const worker of ['worker1', 'worker2']) {
      const boot = await lab.exec(worker, ['/usr/local/lib/swarmcard/firstboot']);
      t.is(boot.exitCode, 0, boot.stderr + boot.stdout);
    }
    lab.start('manager1', ['/usr/local/lib/swarmcard/firstboot'], 'firstboot.log');
    const nodeList = async () =>
      (await lab.exec('manager1', ['docker', 'node', 'ls', '--format', '{{.Hostname}} {{.Status}}'])).stdout
        .split('\n')
        .filter(Boolean)
        .sort();
    await waitFor(
      async () => (await nodeList()).join() === 'manager1 Ready,worker1 Ready,worker2 Ready',
      120_000,
      'every node Ready',
    );
    await waitFor(
      async () =>
        (await readText(join(lab.nodes.get('manager1')!.dir, 'firstboot.log'))).includes('stack registry deployed'),
      60_000,
      'the registry stack',
    );
    t.false(
      (await readText(join(lab.nodes.get('manager1')!.dir, 'firstboot.log'))).includes('stack portainer'),
      'Portainer is optional: this profile has none',
    );
    await waitFor(
      async () =>
        (await lab.exec('manager1', ['curl', '-s', '-m', '2', 'http://192.168.1.200:5000/v2/'])).exitCode === 0,
      90_000,
      'the registry answering on 192.168.1.200:5000',
    ).catch(async (error: unknown) => {
      t.log((await lab.exec('manager1', ['docker', 'service', 'ps', '--no-trunc', 'registry_registry'])).stdout);
      t.log(
        (
          await lab.exec('manager1', [
            'sh',
            '-c',
            'c=$(docker ps -aq --filter status=exited | head -1); docker logs $c 2>&1 | tail -5; docker inspect $c --format {{.State.Error}}',
          ])
        ).stdout,
      );
      throw error;
    });

    // 4. Push on the manager; a worker pulls through the insecure-registries its image lists.
    const pushed = await lab.exec('manager1', [
      'sh',
      '-c',
      'docker tag swarmcard-test/app:1 192.168.1.200:5000/app:1 && docker push 192.168.1.200:5000/app:1',
    ]);
    t.is(pushed.exitCode, 0, pushed.stderr);
    const pulled = await lab.exec('worker2', ['docker', 'pull', '192.168.1.200:5000/app:1']);
    t.is(pulled.exitCode, 0, pulled.stderr);
    t.is(
      (await lab.exec('worker2', ['docker', 'image', 'inspect', '192.168.1.200:5000/app:1', '--format', '{{.Id}}']))
        .stdout,
      (await lab.exec('manager1', ['docker', 'image', 'inspect', 'swarmcard-test/app:1', '--format', '{{.Id}}']))
        .stdout,
    );
    // The registry's data is on the shared export, as the profile says.
    t.true((await readdir(join(nas, 'registry', 'docker', 'registry', 'v2', 'repositories'))).includes('app'));
    // The engines took the registry as insecure from the image's daemon.json (the pull needed it).
    t.regex(
      (await lab.exec('worker1', ['docker', 'info', '--format', '{{json .RegistryConfig.IndexConfigs}}'])).stdout,
      /192\.168\.1\.200:5000/,
    );
    passed = true;
  },
);
