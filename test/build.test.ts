/**
 * `swarmcard build` of the pizero-otg profile against bullseye-, bookworm- and trixie-flavoured
 * fixtures; every promised item is read back from the images with mtools, debugfs, sfdisk and tar.
 */

import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import type { FlavourName } from '../builder/fixture/flavours.js';
import type { Manifest } from '../builder/output/manifest.js';
import { cliPath as cli, swarmcard } from './helpers/cli.js';
import { fixture, scratchDir } from './helpers/fixtures.js';
import {
  debugfs,
  debugfsCat,
  debugfsStat,
  e2fsckClean,
  mdir,
  mtype,
  partitionOffsets,
  sfdisk,
  sha256File,
} from './helpers/independent.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const profile = join(root, 'profiles/pizero-otg.yaml');

async function build(t: ExecutionContext, base: string, extra: string[] = [], out?: string) {
  const dir = out ?? join(await scratchDir(t), 'dist');
  const result = await swarmcard(['build', profile, '--base', base, '--out', dir, ...extra], {
    env: { SWARMCARD_CACHE_DIR: join(dir, '..', 'cache'), SWARMCARD_SECRETS_DIR: secretsDir },
  });
  return { ...result, dir: join(dir, 'pizero-otg') };
}

const tokensOf = (line: string) => line.trim().split(' ');
// One cluster key for the whole file, as a user keeps one beside the profile: rebuilds reuse it.
const secretsDir = join(tmpdir(), `swarmcard-test-secrets-${process.pid}`);
test.after.always(() => rm(secretsDir, { recursive: true, force: true }));

/** What one release is: NetworkManager from bookworm on, cloud-init and no init= from trixie on. */
const releaseOf = (flavour: FlavourName) => ({
  nm: !flavour.startsWith('bullseye'),
  trixie: flavour.startsWith('trixie'),
});

/** Worker k of pizero-otg: identity, cmdline, config.txt, hostname, usb0, first boot and its key. */
async function checkOtgWorker(
  t: ExecutionContext,
  flavour: FlavourName,
  base: string,
  image: string,
  k: number,
  manifest: Manifest,
) {
  const entry = manifest.nodes.find((n) => n.index === k)!;
  // Identity: a node disk id in the MBR, root=PARTUUID and fstab.
  const diskId = (await sfdisk(image)).id.replace(/^0x/, '');
  t.is(diskId, entry.diskId);
  // cmdline.txt: still one line, every original token kept, the guide's tokens added.
  const cmdline = await mtype(image, '/cmdline.txt');
  t.regex(cmdline, /^[^\n]+\n$/);
  const tokens = tokensOf(cmdline);
  for (const token of tokensOf(await mtype(base, '/cmdline.txt')))
    t.true(tokens.includes(token.replace(/PARTUUID=[0-9a-f]{8}/, `PARTUUID=${diskId}`)), `kept ${token}`);
  t.true(tokens.includes('modules-load=dwc2,g_ether'));
  t.true(tokens.includes(`g_ether.host_addr=00:22:82:ff:ff:0${k}`));
  t.true(tokens.includes(`g_ether.dev_addr=00:22:82:ff:ff:1${k}`));
  if (!releaseOf(flavour).trixie) t.regex(tokens.at(-1)!, /^init=/, 'init= stays last');
  t.regex(await debugfsCat(image, '/etc/fstab'), new RegExp(`^PARTUUID=${diskId}-02 `, 'm'));
  // config.txt: the original kept, then a marked block under its own [all].
  const config = await mtype(image, '/config.txt');
  t.true(config.startsWith(await mtype(base, '/config.txt')));
  t.true(
    config.endsWith('# BEGIN swarmcard otg-gadget\n[all]\ndtoverlay=dwc2\ngpu_mem=16\n# END swarmcard otg-gadget\n'),
  );
  // Hostname.
  t.is(await debugfsCat(image, '/etc/hostname'), `otg${k}\n`);
  t.regex(await debugfsCat(image, '/etc/hosts'), new RegExp(`^127\\.0\\.1\\.1\\totg${k}$`, 'm'));
  t.is(await debugfsStat(image, '/etc/motd'), undefined, 'motd removed (profile asks for it)');
  await checkOtgWorkerSwarm(t, image, k);
  const fsck = await e2fsckClean(image);
  t.true(fsck.ok, fsck.output);
}

/** usb0: 10.0.(10+k).2/24 via .1, DNS 8.8.8.8, by the release's own stack. */
async function checkOtgWorkerNetwork(
  t: ExecutionContext,
  flavour: FlavourName,
  base: string,
  image: string,
  k: number,
) {
  const { nm, trixie } = releaseOf(flavour);
  const keyfile = '/etc/NetworkManager/system-connections/swarmcard-usb0.nmconnection';
  if (nm) {
    t.like(await debugfsStat(image, keyfile), { type: 'regular', mode: 0o600, uid: 0, gid: 0 });
    const text = await debugfsCat(image, keyfile);
    t.regex(text, /^interface-name=usb0$/m);
    t.regex(text, new RegExp(`^address1=10\\.0\\.${10 + k}\\.2/24,10\\.0\\.${10 + k}\\.1$`, 'm'));
    t.regex(text, /^dns=8\.8\.8\.8;$/m);
    t.regex(text, /^uuid=[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/m);
    const rule = '/etc/udev/rules.d/90-swarmcard-nm-gadget.rules';
    t.regex(await debugfsCat(image, rule), /ENV\{DEVTYPE\}=="gadget", ENV\{NM_UNMANAGED\}="0"/);
    t.like(await debugfsStat(image, rule), { mode: 0o644, uid: 0 });
  } else {
    const dhcpcd = await debugfsCat(image, '/etc/dhcpcd.conf');
    t.true(dhcpcd.startsWith(await debugfsCat(base, '/etc/dhcpcd.conf')), 'the stock dhcpcd.conf is kept');
    const net = `10\\.0\\.${10 + k}`;
    t.regex(
      dhcpcd,
      new RegExp(
        `interface usb0\\nstatic ip_address=${net}\\.2/24\\nstatic routers=${net}\\.1\\n` +
          'static domain_name_servers=8\\.8\\.8\\.8\\n',
      ),
    );
    t.like(await debugfsStat(image, '/etc/dhcpcd.conf'), { mode: 0o664, uid: 0, gid: 108 }, 'mode and owner kept');
    t.is(await debugfsStat(image, keyfile), undefined);
  }
  if (trixie) {
    const cloud = await debugfsCat(image, '/etc/cloud/cloud.cfg.d/90-swarmcard.cfg');
    t.regex(cloud, /^preserve_hostname: true$/m);
    t.regex(cloud, /^network:\n {2}config: disabled$/m);
    t.is(await mtype(image, '/meta-data'), `instance-id: swarmcard-pizero-otg-${k}\nlocal-hostname: otg${k}\n`);
  }
}

/** Swarm on a worker: the first-boot unit and sshd enabled, only the restricted public key. */
async function checkOtgWorkerSwarm(t: ExecutionContext, image: string, k: number) {
  t.like(await debugfsStat(image, '/etc/systemd/system/multi-user.target.wants/swarmcard-firstboot.service'), {
    type: 'symlink',
    linkTarget: '/etc/systemd/system/swarmcard-firstboot.service',
  });
  t.like(await debugfsStat(image, '/etc/systemd/system/multi-user.target.wants/ssh.service'), {
    type: 'symlink',
    linkTarget: '/lib/systemd/system/ssh.service',
  });
  t.like(await debugfsStat(image, '/usr/local/lib/swarmcard/join'), { mode: 0o755, uid: 0 });
  t.like(await debugfsStat(image, '/root/.ssh'), { type: 'directory', mode: 0o700, uid: 0 });
  t.like(await debugfsStat(image, '/root/.ssh/authorized_keys'), { mode: 0o600, uid: 0, gid: 0 });
  t.regex(
    await debugfsCat(image, '/root/.ssh/authorized_keys'),
    /^restrict,command="\/usr\/local\/lib\/swarmcard\/join" ssh-ed25519 \S+ swarmcard@pizero-otg\n$/,
  );
  const env = await debugfsCat(image, '/etc/swarmcard/swarm.env');
  t.regex(env, /^ROLE=worker$/m);
  t.regex(env, new RegExp(`^SELF_ADDRESS=10\\.0\\.${10 + k}\\.2$`, 'm'));
  t.regex(env, /^MANAGER_ADDRESS=10\.0\.11\.1$/m);
  t.regex(env, /^DOCKER_METHOD=apt$/m);
  t.is(await debugfsStat(image, '/etc/swarmcard/cluster_key'), undefined, 'no private key in a worker image');
}

/** The host: one link per worker, named by the gadget's host MAC, addressed .1, NAT at boot. */
async function checkOtgHostNetwork(t: ExecutionContext, flavour: FlavourName, host: string) {
  const rules = await debugfsCat(host, '/etc/udev/rules.d/70-swarmcard-otg.rules');
  for (const k of [1, 2]) t.regex(rules, new RegExp(`ATTR\\{address\\}=="00:22:82:ff:ff:0${k}", NAME="ethusb${k}"`));
  if (releaseOf(flavour).nm) {
    for (const k of [1, 2]) {
      const keyfile = `/etc/NetworkManager/system-connections/swarmcard-ethusb${k}.nmconnection`;
      t.like(await debugfsStat(host, keyfile), { mode: 0o600, uid: 0, gid: 0 });
      const text = await debugfsCat(host, keyfile);
      t.regex(text, new RegExp(`^address1=10\\.0\\.${10 + k}\\.1/24$`, 'm'));
      t.regex(text, /^never-default=true$/m);
    }
  } else {
    t.regex(
      await debugfsCat(host, '/etc/dhcpcd.conf'),
      new RegExp(
        String.raw`interface ethusb1\nstatic ip_address=10\.0\.11\.1\/24\n\n` +
          String.raw`interface ethusb2\nstatic ip_address=10\.0\.12\.1\/24\n`,
      ),
    );
  }
  t.is(
    await debugfsCat(host, '/etc/sysctl.d/90-swarmcard-forward.conf'),
    '# swarmcard: route between the USB gadget links and the uplink.\nnet.ipv4.ip_forward=1\n',
  );
  t.like(await debugfsStat(host, '/usr/local/sbin/swarmcard-nat'), { type: 'regular', mode: 0o755, uid: 0, gid: 0 });
  const nat = await debugfsCat(host, '/usr/local/sbin/swarmcard-nat');
  t.regex(nat, /^uplink=eth0$/m);
  t.regex(nat, /^subnets="10\.0\.11\.1\/24 10\.0\.12\.1\/24 "$/m);
  t.regex(nat, /DOCKER-USER/);
  t.regex(
    await debugfsCat(host, '/etc/systemd/system/swarmcard-nat.service'),
    /ExecStart=\/usr\/local\/sbin\/swarmcard-nat/,
  );
  t.like(await debugfsStat(host, '/etc/systemd/system/multi-user.target.wants/swarmcard-nat.service'), {
    type: 'symlink',
    linkTarget: '/etc/systemd/system/swarmcard-nat.service',
  });
  t.false((await mtype(host, '/cmdline.txt')).includes('g_ether'), 'the host is not a gadget');
}

/** The host as manager: the cluster key, the node list, the stack; the manifest says it holds the key. */
async function checkOtgHostSwarm(t: ExecutionContext, host: string, manifest: Manifest, stderr: string) {
  t.is(await debugfsStat(host, '/etc/motd'), undefined);
  t.like(await debugfsStat(host, '/etc/swarmcard/cluster_key'), { mode: 0o600, uid: 0, gid: 0 });
  t.regex(await debugfsCat(host, '/etc/swarmcard/cluster_key'), /BEGIN OPENSSH PRIVATE KEY/);
  t.regex(await debugfsCat(host, '/etc/swarmcard/swarm.env'), /^ROLE=manager$/m);
  t.is(
    await debugfsCat(host, '/etc/swarmcard/nodes'),
    [
      '# hostname ssh-address joins-as labels',
      'otghost1 10.0.11.1 worker board=pi3,role=host',
      'otg1 10.0.11.2 worker board=pi0,link=usb-otg,role=worker',
      'otg2 10.0.12.2 worker board=pi0,link=usb-otg,role=worker',
      '',
    ].join('\n'),
  );
  t.is(await debugfsCat(host, '/etc/swarmcard/networks'), 'armnet\n');
  t.regex(await debugfsCat(host, '/etc/swarmcard/stacks/guid.yml'), /replicas: 5/);
  t.is(await debugfsCat(host, '/etc/swarmcard/stacks/guid.env'), 'GUID_IMAGE=alexellis2/guid-generator-arm:0.1\n');
  t.deepEqual(
    manifest.nodes.filter((n) => n.secrets).map((n) => [n.file, n.secrets]),
    [['00-otghost1.img', ['the cluster SSH private key']]],
  );
  t.regex(stderr, /00-otghost1\.img holds the cluster SSH private key: keep the image .* private/);
  t.false(JSON.stringify(manifest).includes('PRIVATE KEY'));
}

/** Outputs: SHA256SUMS checks out, the manifest matches the files, the host kit has what it promises. */
async function checkOtgOutputs(t: ExecutionContext, dir: string, manifest: Manifest, base: string) {
  await t.notThrowsAsync(execa('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir }));
  for (const n of manifest.nodes) t.is(n.sha256, await sha256File(join(dir, n.file)));
  t.is(manifest.nodes.length, 3);
  t.false(JSON.stringify(manifest).includes(base), 'no local paths in the manifest');
  const { stdout: listing } = await execa('tar', ['-tvf', join(dir, 'host-kit.tar')]);
  t.regex(listing, /^-rwxr-xr-x root\/root .* host-kit\/install\.sh$/m);
  t.regex(
    listing,
    new RegExp(
      String.raw`^-rw------- root\/root .* host-kit\/files\/etc\/NetworkManager\/system-connections\/` +
        String.raw`swarmcard-ethusb1\.nmconnection$`,
      'm',
    ),
  );
  t.regex(listing, /host-kit\/files\/etc\/udev\/rules\.d\/70-swarmcard-otg\.rules$/m);
  t.regex(listing, /host-kit\/README\.md$/m);
  t.notRegex(listing, /swarmcard\/cluster_key|swarm\.env/, 'the host kit carries only networking');
}

/** Every item of the pizero-otg profile, built on one release's fixture, read back from the images. */
const pizeroOtg = test.macro<[FlavourName]>({
  async exec(t, flavour) {
    const base = await fixture(flavour);
    const { exitCode, stderr, stdout, dir } = await build(t, base, ['--nodes', '2']);
    t.is(exitCode, 0, stderr);
    t.regex(stderr, /\[1\/3\] 00-otghost1\.img/, 'progress per node on stderr');
    t.regex(stdout, /01-otg1\.img/);
    t.deepEqual((await readdir(dir)).sort(), [
      '00-otghost1.img',
      '00-otghost1.img.bmap',
      '01-otg1.img',
      '01-otg1.img.bmap',
      '02-otg2.img',
      '02-otg2.img.bmap',
      'SHA256SUMS',
      'host-kit.tar',
      'imager.json',
      'manifest.json',
    ]);
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    for (const k of [1, 2]) {
      const image = join(dir, `0${k}-otg${k}.img`);
      await checkOtgWorker(t, flavour, base, image, k, manifest);
      await checkOtgWorkerNetwork(t, flavour, base, image, k);
    }
    const host = join(dir, '00-otghost1.img');
    await checkOtgHostNetwork(t, flavour, host);
    await checkOtgHostSwarm(t, host, manifest, stderr);
    await checkOtgOutputs(t, dir, manifest, base);
  },
  title: (_, flavour) => `${flavour}: every item of the pizero-otg profile is in the images`,
});

for (const flavour of ['bullseye-armhf', 'bookworm-armhf', 'trixie-armhf'] as FlavourName[]) test(pizeroOtg, flavour);

test('rebuilding gives identical bytes; growing the cluster changes only the host', async (t) => {
  const base = await fixture('bookworm-armhf');
  const a = await build(t, base, ['--nodes', '2']);
  const b = await build(t, base, ['--nodes', '2']);
  const c = await build(t, base, ['--nodes', '3']);
  for (const built of [a, b, c]) t.is(built.exitCode, 0, built.stderr);
  for (const file of ['00-otghost1.img', '01-otg1.img', '02-otg2.img', 'host-kit.tar', 'manifest.json', 'SHA256SUMS']) {
    t.is(await sha256File(join(a.dir, file)), await sha256File(join(b.dir, file)), `${file} reproducible`);
  }
  t.is(await sha256File(join(a.dir, '01-otg1.img')), await sha256File(join(c.dir, '01-otg1.img')));
  t.is(await sha256File(join(a.dir, '02-otg2.img')), await sha256File(join(c.dir, '02-otg2.img')));
  t.not(await sha256File(join(a.dir, '00-otghost1.img')), await sha256File(join(c.dir, '00-otghost1.img')));
  t.regex(
    await debugfsCat(join(c.dir, '00-otghost1.img'), '/etc/udev/rules.d/70-swarmcard-otg.rules'),
    /NAME="ethusb3"/,
  );
});

test('a node costs a handful of debugfs runs, and its finished image leaves the page cache', async (t) => {
  const built = await build(t, await fixture('trixie-armhf'), ['--nodes', '1', '--only', '1', '--verbose']);
  t.is(built.exitCode, 0, built.stderr);
  const node = built.stderr.slice(built.stderr.indexOf('01-otg1.img: cloning'));
  const runs = node.split('\n').filter((line) => /^\$ \S*debugfs /.test(line));
  // The stats of every path the edits name in one run, the files they change read, one write, one
  // read-back. Asked one by one, as before, it was some 30 processes per node.
  t.true(runs.length >= 3 && runs.length <= 8, `${runs.length} debugfs runs:\n${runs.join('\n')}`);
  // Written once, never read again by the build: its pages are dropped (fincore: how much is cached).
  const image = join(built.dir, '01-otg1.img');
  const { stdout } = await execa('fincore', ['--bytes', '--noheadings', '--output', 'RES,SIZE', image]);
  const [resident, size] = stdout.trim().split(/\s+/).map(Number);
  t.true(size! > 0 && resident! < size! / 20, `${resident} of ${size} bytes of ${image} still cached`);
});

test("the CLI runs in a Node started with its first line's flags: the young generation capped", async (t) => {
  // What Node was started with, seen from inside the CLI's process (a module preloaded into it).
  const preload = join(await scratchDir(t), 'flags.cjs');
  await writeFile(preload, "process.stderr.write('node flags: ' + JSON.stringify(process.execArgv) + '\\n');\n");
  const run = await swarmcard(['--version'], { env: { NODE_OPTIONS: `--require "${preload}"` } });
  t.is(run.exitCode, 0, run.stderr);
  t.deepEqual(JSON.parse(/^node flags: (.*)$/m.exec(run.stderr)?.[1] ?? 'null'), ['--max-semi-space-size=4']);
});

test('--only rebuilds the named nodes and keeps the manifest whole', async (t) => {
  const base = await fixture('bookworm-armhf');
  const full = await build(t, base, ['--nodes', '2']);
  t.is(full.exitCode, 0, full.stderr);
  const before = await readFile(join(full.dir, 'manifest.json'), 'utf8');
  const only = await build(t, base, ['--nodes', '2', '--only', '2', '--json'], join(full.dir, '..'));
  t.is(only.exitCode, 0, only.stderr);
  t.regex(only.stderr, /\[1\/1\] 02-otg2\.img/);
  const printed = JSON.parse(only.stdout) as Manifest; // --json: exactly one JSON document on stdout
  t.deepEqual(
    printed.nodes.map((n) => n.index),
    [0, 1, 2],
  );
  t.is(await readFile(join(full.dir, 'manifest.json'), 'utf8'), before, 'same inputs, same manifest');
});

test('a Pi Zero cannot boot an arm64 image: refused before anything is written', async (t) => {
  const { exitCode, stderr, dir } = await build(t, await fixture('bookworm-arm64'), ['--nodes', '2']);
  t.is(exitCode, 1);
  // One sentence for the group, not one per node.
  t.regex(
    stderr,
    new RegExp(
      String.raw`error: otg1 and otg2 are pi0s, which cannot boot the arm64 image .* \(it needs a 32-bit armhf ` +
        String.raw`image\); give this group a base image it can boot\.$`,
    ),
  );
  await t.throwsAsync(readdir(dir), { code: 'ENOENT' });
});

test('a failure in the middle of a node leaves no .partial and no image for that node', async (t) => {
  const work = await scratchDir(t);
  // A profile-local overlay that writes where a directory is: the root session fails after cloning.
  await mkdir(join(work, 'overlays', 'broken'), { recursive: true });
  await writeFile(
    join(work, 'overlays', 'broken', 'overlay.yaml'),
    'id: broken\ndescription: writes a file over /etc\noperations:\n  - file: { path: /etc, source: x }\n',
  );
  await writeFile(join(work, 'overlays', 'broken', 'x'), 'x');
  await writeFile(
    join(work, 'p.yaml'),
    [
      'cluster: broken',
      'sourceDateEpoch: 1700000000',
      `base: { image: ${await fixture('bookworm-armhf')} }`,
      'nodes:',
      '  - { index: 1, hostname: n1, role: worker, board: pi4, overlays: [{ id: broken }] }',
      '',
    ].join('\n'),
  );
  const result = await swarmcard(['build', join(work, 'p.yaml'), '--out', join(work, 'dist')], {
    env: { SWARMCARD_CACHE_DIR: join(work, 'cache') },
  });
  t.is(result.exitCode, 1, result.stderr);
  t.regex(result.stderr, /cannot write the file \/etc: a directory is in the way/);
  // Not even the folders: the build made dist/ and dist/broken/, and removes them empty.
  await t.throwsAsync(readdir(join(work, 'dist')), { code: 'ENOENT' });
  // A relative --out whose folders were there: the build removes only the one it made.
  await mkdir(join(work, 'mine', 'out'), { recursive: true });
  const relative = await swarmcard(['build', 'p.yaml', '--out', 'mine/out'], {
    cwd: work,
    env: { SWARMCARD_CACHE_DIR: join(work, 'cache') },
  });
  t.is(relative.exitCode, 1, relative.stderr);
  t.deepEqual(await readdir(join(work, 'mine')), ['out'], "the user's folders stay");
  t.deepEqual(await readdir(join(work, 'mine', 'out')), []);
});

test('the generated shell scripts pass shellcheck', async (t) => {
  const { dir, exitCode, stderr } = await build(t, await fixture('bookworm-armhf'), ['--nodes', '1']);
  t.is(exitCode, 0, stderr);
  const work = await scratchDir(t);
  const scripts = {
    'swarmcard-nat': '/usr/local/sbin/swarmcard-nat',
    firstboot: '/usr/local/lib/swarmcard/firstboot',
    join: '/usr/local/lib/swarmcard/join',
  };
  for (const [name, path] of Object.entries(scripts))
    await writeFile(join(work, name), await debugfsCat(join(dir, '00-otghost1.img'), path));
  await execa('tar', ['-xf', join(dir, 'host-kit.tar'), '-C', work]);
  const check = await execa(
    'shellcheck',
    ['--shell=sh', ...Object.keys(scripts).map((n) => join(work, n)), join(work, 'host-kit', 'install.sh')],
    { reject: false },
  );
  t.is(check.exitCode, 0, check.stdout);
});

test('the built-in demo (make demo) builds host + 4 workers', async (t) => {
  const work = await scratchDir(t);
  const result = await swarmcard(['demo', '--out', join(work, 'dist')], {
    env: { SWARMCARD_CACHE_DIR: join(work, 'cache'), SWARMCARD_SECRETS_DIR: work },
  });
  t.is(result.exitCode, 0, result.stderr);
  t.regex(result.stdout, /release\s+trixie/);
  const dir = join(work, 'dist', 'pizero-otg');
  t.deepEqual(
    (await readdir(dir)).filter((f) => f.endsWith('.img')),
    ['00-otghost1.img', '01-otg1.img', '02-otg2.img', '03-otg3.img', '04-otg4.img'],
  );
  t.true((await mdir(join(dir, '04-otg4.img'))).includes('::/meta-data'));
});

const joinTitle =
  'join mode: every image joins an existing swarm; the token is a secret in each, and the build says so';
test(joinTitle, async (t) => {
  const work = await scratchDir(t);
  await writeFile(
    join(work, 'worker.token'),
    'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx\n',
  );
  await writeFile(
    join(work, 'join.yaml'),
    [
      'cluster: extra-workers',
      'sourceDateEpoch: 1700000000',
      `base: { image: ${await fixture('bookworm-arm64')} }`,
      'swarm:',
      '  join: { manager: 192.168.1.200, tokenFile: worker.token }',
      '  docker: { method: convenience, version: "28.5" }',
      'nodes:',
      '  - pattern: extra{k}',
      '    count: 2',
      '    role: worker',
      '    board: pi4',
      '    interfaces: [{ name: eth0, kind: ethernet, address: "192.168.1.{k+210}/24", gateway: 192.168.1.1 }]',
      '',
    ].join('\n'),
  );
  const plan = await swarmcard(['plan', join(work, 'join.yaml')]);
  t.regex(plan.stdout, /swarm: joins the existing swarm at 192\.168\.1\.200 as worker/);
  t.regex(plan.stdout, /write \/etc\/swarmcard\/join-token \(0600\) with the swarm join token, filled in at build/);
  t.false(plan.stdout.includes('SWMTKN'), 'the plan never shows the token');
  const result = await swarmcard(['build', join(work, 'join.yaml'), '--out', join(work, 'dist')], {
    env: { SWARMCARD_CACHE_DIR: join(work, 'cache') },
  });
  t.is(result.exitCode, 0, result.stderr);
  const dir = join(work, 'dist', 'extra-workers');
  for (const file of ['01-extra1.img', '02-extra2.img']) {
    t.regex(result.stderr, new RegExp(`${file.replace('.', '\\.')} holds the swarm join token`));
    t.like(await debugfsStat(join(dir, file), '/etc/swarmcard/join-token'), { mode: 0o600, uid: 0, gid: 0 });
    t.regex(await debugfsCat(join(dir, file), '/etc/swarmcard/join-token'), /^SWMTKN-1-/);
    t.regex(
      await debugfsCat(join(dir, file), '/etc/swarmcard/swarm.env'),
      /^ROLE=join\nNODE_NAME=extra\d\nSELF_ADDRESS=192\.168\.1\.21\d\nMANAGER_ADDRESS=192\.168\.1\.200\n/m,
    );
    t.is(await debugfsStat(join(dir, file), '/root/.ssh/authorized_keys'), undefined, 'no cluster key in join mode');
  }
  const manifest = await readFile(join(dir, 'manifest.json'), 'utf8');
  t.false(manifest.includes('SWMTKN'));
  t.deepEqual(
    (JSON.parse(manifest) as Manifest).nodes.map((n) => n.secrets),
    [['the swarm join token'], ['the swarm join token']],
  );
  t.regex(result.stdout, /01-extra1\.img .* holds the swarm join token/);
});

for (const flavour of ['bookworm-armhf', 'trixie-armhf'] as FlavourName[]) {
  test(`${flavour}: clones of a booted base are clean: ids, host keys, Docker and cloud-init state`, async (t) => {
    const base = await fixture(flavour, { booted: true });
    const before = await swarmcard(['inspect', base, '--json']);
    t.true((JSON.parse(before.stdout) as { warnings: string[] }).warnings.length >= 6, 'the base has the problems');
    const { exitCode, stderr, dir } = await build(t, base, ['--nodes', '1']);
    t.is(exitCode, 0, stderr);
    for (const file of ['00-otghost1.img', '01-otg1.img']) {
      const image = join(dir, file);
      const report = JSON.parse((await swarmcard(['inspect', image, '--json'])).stdout) as { warnings: string[] };
      t.deepEqual(report.warnings, [], `${file} is clean`);
      t.is(await debugfsCat(image, '/etc/machine-id'), flavour.startsWith('trixie') ? 'uninitialized\n' : '');
      t.is(await debugfsStat(image, '/var/lib/dbus/machine-id'), undefined);
      t.is(await debugfsStat(image, '/etc/ssh/ssh_host_ed25519_key'), undefined);
      t.is(await debugfsStat(image, '/var/lib/docker/engine-id'), undefined);
      t.is(await debugfsStat(image, '/etc/docker/key.json'), undefined);
      t.is(await debugfsStat(image, '/var/lib/docker/swarm'), undefined);
      const cloud = (await debugfs(image, 'ls -p /var/lib/cloud')).stdout
        .split('\n')
        .map((l) => l.split('/')[5])
        .filter((n) => n && n !== '.' && n !== '..');
      t.deepEqual(cloud, [], 'empty /var/lib/cloud');
    }
    // Node-specific identity: every disk id differs from the base's and from each other's.
    const ids = await Promise.all(
      [base, join(dir, '00-otghost1.img'), join(dir, '01-otg1.img')].map(async (i) => (await sfdisk(i)).id),
    );
    t.is(new Set(ids).size, 3);
  });
}

test("a node image as the base is refused: its cluster's key would reach every new node", async (t) => {
  const first = await build(t, await fixture('trixie-armhf'), ['--nodes', '1']);
  t.is(first.exitCode, 0, first.stderr);
  for (const file of ['00-otghost1.img', '01-otg1.img']) {
    const node = join(first.dir, file);
    const inspected = await swarmcard(['inspect', node]);
    t.regex(inspected.stdout, /built by\s+swarmcard: a node image, not a base$/m);
    const again = await build(t, node, ['--nodes', '2']);
    t.is(again.exitCode, 1, again.stderr);
    const errors = again.stderr.split('\n').filter((l) => l.startsWith('error: '));
    t.deepEqual(errors, [
      `error: ${node} is a node image swarmcard built (swarmcard's files are in it): its cluster's keys and settings ` +
        'would reach every new node; build from the Raspberry Pi OS image it was made from.',
    ]);
    t.false(existsSync(again.dir), 'nothing written');
  }
  t.regex((await swarmcard(['inspect', await fixture('trixie-armhf')])).stdout, /built by\s+no sign of swarmcard$/m);
});

test('--keep-raw without compression builds as asked and says it changed nothing', async (t) => {
  const r = await build(t, await fixture('trixie-armhf'), ['--nodes', '1', '--keep-raw']);
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stderr, /warning: --keep-raw changes nothing here: no compression is asked for/);
  t.true(existsSync(join(r.dir, '01-otg1.img')));
});

test('a base where nothing recreates SSH host keys gets a unit that does', async (t) => {
  const work = await scratchDir(t);
  const base = join(work, 'jessie-no-regen.img');
  await execa('cp', [await fixture('jessie-armhf'), base]);
  const { root } = await partitionOffsets(base);
  await execa('debugfs', [
    '-w',
    '-R',
    'rm /etc/systemd/system/multi-user.target.wants/regenerate_ssh_host_keys.service',
    `${base}?offset=${root}`,
  ]);
  const report = JSON.parse((await swarmcard(['inspect', base, '--json'])).stdout) as { warnings: string[] };
  t.true(report.warnings.some((w) => /nothing in the image regenerates SSH host keys/.test(w)));
  const { exitCode, stderr, dir } = await build(t, base, ['--nodes', '1']);
  t.is(exitCode, 0, stderr);
  const image = join(dir, '01-otg1.img');
  t.regex(
    await debugfsCat(image, '/etc/systemd/system/swarmcard-ssh-keygen.service'),
    /ExecStart=\/usr\/bin\/ssh-keygen -A/,
  );
  t.like(await debugfsStat(image, '/etc/systemd/system/multi-user.target.wants/swarmcard-ssh-keygen.service'), {
    type: 'symlink',
  });
  t.deepEqual(
    (JSON.parse((await swarmcard(['inspect', image, '--json'])).stdout) as { warnings: string[] }).warnings,
    [],
  );
});

test('a smaller rebuild removes the images the plan no longer names; foreign files are refused', async (t) => {
  const base = await fixture('bookworm-armhf');
  const six = await build(t, base, ['--nodes', '6']);
  t.is(six.exitCode, 0, six.stderr);
  const out = join(six.dir, '..');
  const two = await build(t, base, ['--nodes', '2'], out);
  t.is(two.exitCode, 0, two.stderr);
  t.deepEqual((await readdir(six.dir)).sort(), [
    '00-otghost1.img',
    '00-otghost1.img.bmap',
    '01-otg1.img',
    '01-otg1.img.bmap',
    '02-otg2.img',
    '02-otg2.img.bmap',
    'SHA256SUMS',
    'host-kit.tar',
    'imager.json',
    'manifest.json',
  ]);
  const manifest = JSON.parse(await readFile(join(six.dir, 'manifest.json'), 'utf8')) as Manifest;
  t.deepEqual(
    manifest.nodes.map((n) => n.file),
    ['00-otghost1.img', '01-otg1.img', '02-otg2.img'],
  );
  t.is((await execa('sha256sum', ['-c', 'SHA256SUMS'], { cwd: six.dir, reject: false })).exitCode, 0);
  await writeFile(join(six.dir, 'notes.txt'), 'mine');
  const refused = await build(t, base, ['--nodes', '1'], out);
  t.is(refused.exitCode, 1, refused.stderr);
  t.regex(refused.stderr, /holds notes\.txt, which swarmcard did not write; move it away or choose another --out/);
  t.true((await readdir(six.dir)).includes('02-otg2.img'), 'nothing removed when refusing');
});

test("own means recorded: a stopped build's images are removed later, a hand-put look-alike is not", async (t) => {
  const base = await fixture('bookworm-armhf');
  const out = join(await scratchDir(t), 'dist');
  const dir = join(out, 'pizero-otg');
  // A file with a name the build would write, put there by hand: not ours to overwrite.
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, '01-otg1.img'), 'mine');
  const taken = await build(t, base, ['--nodes', '4'], out);
  t.is(taken.exitCode, 1, taken.stderr);
  t.regex(taken.stderr, /holds 01-otg1\.img, which swarmcard did not write/);
  await rm(join(dir, '01-otg1.img'));
  // Stopped (Ctrl-C) while node 3 is built: nodes 0-2 are written, no SHA256SUMS names them.
  const child = execa('node', [cli, 'build', profile, '--base', base, '--out', out, '--nodes', '4'], {
    env: { NO_COLOR: '1', SWARMCARD_CACHE_DIR: join(out, '..', 'cache'), SWARMCARD_SECRETS_DIR: secretsDir },
    reject: false,
  });
  child.stderr!.on('data', (data: Buffer) => {
    if (/\[4\/5\]/.test(data.toString())) child.kill('SIGINT');
  });
  const stopped = await child;
  t.is(stopped.exitCode, 130, stopped.stderr);
  const left = await readdir(dir);
  t.true(left.includes('02-otg2.img') && !left.includes('SHA256SUMS'), left.join(' '));
  t.regex(
    stopped.stderr,
    /stopped: \S+pizero-otg keeps the \d+ complete file\(s\) this build wrote \([^)]*02-otg2\.img[,)]/,
  );
  await writeFile(join(dir, '07-mine.img.xz'), 'mine');
  const refused = await build(t, base, ['--nodes', '1'], out);
  t.is(refused.exitCode, 1, refused.stderr);
  t.regex(refused.stderr, /holds 07-mine\.img\.xz, which swarmcard did not write/);
  t.deepEqual((await readdir(dir)).sort(), left.concat('07-mine.img.xz').sort(), 'nothing removed when refusing');
  await rm(join(dir, '07-mine.img.xz'));
  const one = await build(t, base, ['--nodes', '1'], out);
  t.is(one.exitCode, 0, one.stderr);
  t.regex(one.stderr, /removing \S+02-otg2\.img: the current plan does not name it/);
  t.deepEqual((await readdir(dir)).sort(), [
    '00-otghost1.img',
    '00-otghost1.img.bmap',
    '01-otg1.img',
    '01-otg1.img.bmap',
    'SHA256SUMS',
    'host-kit.tar',
    'imager.json',
    'manifest.json',
  ]);
});

test("a shard's folder built again as a whole: shard.json goes, the burn station's log stays", async (t) => {
  const base = await fixture('bookworm-armhf');
  // Shards make no secrets: a first build makes the cluster key they share.
  t.is((await build(t, base, ['--nodes', '1'])).exitCode, 0);
  const shard = await build(t, base, ['--nodes', '1', '--shard', '1/1']);
  t.is(shard.exitCode, 0, shard.stderr);
  t.true(existsSync(join(shard.dir, 'shard.json')));
  await writeFile(join(shard.dir, 'flash-log.jsonl'), '{"node":1}\n');
  const whole = await build(t, base, ['--nodes', '1'], join(shard.dir, '..'));
  t.is(whole.exitCode, 0, whole.stderr);
  t.false(existsSync(join(shard.dir, 'shard.json')));
  t.is(await readFile(join(shard.dir, 'flash-log.jsonl'), 'utf8'), '{"node":1}\n');
  t.false(existsSync(join(shard.dir, '.swarmcard-pending')), 'a finished build leaves no ledger');
});

test("one build at a time in a cluster folder: a second is refused, a dead run's lock goes stale", async (t) => {
  const base = await fixture('bookworm-armhf');
  const out = join(await scratchDir(t), 'dist');
  const dir = join(out, 'pizero-otg');
  const lock = join(out, '.pizero-otg.lock');
  t.is((await build(t, base, ['--nodes', '2'], out)).exitCode, 0);
  const before = await readFile(join(dir, 'SHA256SUMS'), 'utf8');
  // A build paused (SIGSTOP) while it writes node 1: it holds the lock.
  const first = execa('node', [cli, 'build', profile, '--base', base, '--out', out, '--nodes', '3'], {
    env: { NO_COLOR: '1', SWARMCARD_CACHE_DIR: join(out, '..', 'cache'), SWARMCARD_SECRETS_DIR: secretsDir },
    reject: false,
  });
  const writing = new Promise<void>((resolve) =>
    first.stderr!.on('data', (data: Buffer) => {
      if (/\[2\/4\]/.test(data.toString())) resolve();
    }),
  );
  await writing;
  first.kill('SIGSTOP');
  try {
    const second = await build(t, base, ['--nodes', '1'], out);
    t.is(second.exitCode, 1, second.stderr);
    t.regex(
      second.stderr,
      /pizero-otg is being written by another swarmcard run \(it holds \S+\.pizero-otg\.lock\); wait for it to finish/,
    );
    const flash = await swarmcard(['flash', dir, '--node', '1', '--device', '/dev/null']);
    t.is(flash.exitCode, 1, flash.stderr);
    t.regex(flash.stderr, /wait for it to finish before flashing from it/);
  } finally {
    first.kill('SIGCONT');
  }
  const done = await first;
  t.is(done.exitCode, 0, done.stderr);
  t.not(await readFile(join(dir, 'SHA256SUMS'), 'utf8'), before);
  t.is((await execa('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir, reject: false })).exitCode, 0);
  t.false(existsSync(lock), 'the lock goes with its build');
  const after = await readFile(join(dir, 'SHA256SUMS'), 'utf8');
  // A lock left by a run killed just now refuses; one untouched for a minute is stale and taken over.
  await mkdir(lock);
  const refused = await build(t, base, ['--nodes', '1'], out);
  t.is(refused.exitCode, 1, refused.stderr);
  t.is(await readFile(join(dir, 'SHA256SUMS'), 'utf8'), after, 'nothing written when refusing');
  t.true((await readdir(dir)).includes('03-otg3.img'), 'nothing removed when refusing');
  const minuteAgo = new Date(Date.now() - 60_000);
  await utimes(lock, minuteAgo, minuteAgo);
  const taken = await build(t, base, ['--nodes', '1'], out);
  t.is(taken.exitCode, 0, taken.stderr);
  t.false(existsSync(lock));
  t.false((await readdir(dir)).includes('03-otg3.img'));
});
