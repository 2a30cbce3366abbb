/** Profiles, rules and plans: pure, fast; the CLI is run for exit codes and messages. */

import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { schemaText } from '../builder/commands/schema.js';
import { gadgetMacs } from '../builder/plan/ids.js';
import { parseOnly, planCluster } from '../builder/plan/plan.js';
import { evaluate, interpolate } from '../builder/profile/expr.js';
import { loadProfile } from '../builder/profile/load-profile.js';
import { swarmcard } from './helpers/cli.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pizero = 'profiles/pizero-otg.yaml';
const inRoot = async <T>(body: () => Promise<T>): Promise<T> => {
  const cwd = process.cwd();
  process.chdir(root);
  try {
    return await body();
  } finally {
    process.chdir(cwd);
  }
};

for (const name of ['pizero-otg', 'pi4-ethernet', 'clustered-pi', 'iot-leds']) {
  test.serial(`the ${name} plan matches its golden file`, async (t) => {
    const result = await swarmcard(['plan', `profiles/${name}.yaml`, '--json'], { cwd: root });
    t.is(result.exitCode, 0, result.stderr);
    const golden = fileURLToPath(new URL(`../../test/golden/${name}.plan.json`, import.meta.url));
    if (process.env.UPDATE_GOLDEN) await writeFile(golden, result.stdout);
    t.deepEqual(JSON.parse(result.stdout), JSON.parse(await readFile(golden, 'utf8')));
  });
}

test.serial(
  'growing a cluster: without etcHosts only the manager changes; with it, only the hosts block too',
  async (t) => {
    const plans = async (file: string, more: number) =>
      inRoot(
        async () =>
          [planCluster(await loadProfile(file)), planCluster(await loadProfile(file, { nodes: more }))] as const,
      );
    const [four, five] = await plans('profiles/clustered-pi.yaml', 4);
    for (const k of [1, 2, 3]) t.deepEqual(five.nodes[k], four.nodes[k], `node ${k + 1}`);
    t.notDeepEqual(five.nodes[0], four.nodes[0], 'the manager lists the new node');
    const [seven, eight] = await plans('profiles/pi4-ethernet.yaml', 8);
    const hostsBlock = (e: { op: string; path?: string }) => e.op === 'block' && e.path === '/etc/hosts';
    for (const k of [1, 2, 3, 4, 5, 6, 7]) {
      t.deepEqual(
        { ...eight.nodes[k]!, edits: eight.nodes[k]!.edits.filter((e) => !hostsBlock(e)) },
        { ...seven.nodes[k]!, edits: seven.nodes[k]!.edits.filter((e) => !hostsBlock(e)) },
        `worker ${k}`,
      );
      t.true(JSON.stringify(eight.nodes[k]!.edits.find(hostsBlock)).includes('192.168.1.208\\tworker8'));
    }
  },
);

test('no secret reaches a plan: hash, keys and Wi-Fi stay abstract until the build', async (t) => {
  for (const name of ['pi4-ethernet', 'iot-leds']) {
    const result = await swarmcard(['plan', `profiles/${name}.yaml`, '--json'], { cwd: root });
    // A plan that fails prints nothing, which would have no secret in it either.
    t.is(result.exitCode, 0, result.stderr);
    t.regex(result.stdout, /"nodes"/, 'a plan was printed');
    t.notRegex(result.stdout, /\$6\$|PRIVATE KEY|passphrase|psk=/);
  }
});

test.serial('pizero-otg: workers follow the guide, the host gets one link per worker', async (t) => {
  const plan = await inRoot(async () => planCluster(await loadProfile(pizero)));
  t.deepEqual(
    plan.nodes.map((n) => n.file),
    ['00-otghost1.img', '01-otg1.img', '02-otg2.img', '03-otg3.img', '04-otg4.img'],
  );
  const otg3 = plan.nodes[3]!;
  t.deepEqual(otg3.gadget, { hostMac: '00:22:82:ff:ff:03', devMac: '00:22:82:ff:ff:13' });
  t.like(otg3.interfaces[0], { name: 'usb0', address: '10.0.13.2/24', gateway: '10.0.13.1', dns: ['8.8.8.8'] });
  const host = plan.nodes[0]!;
  t.deepEqual(
    host.interfaces.map((i) => [i.name, i.address, i.mac]),
    [1, 2, 3, 4].map((k) => [`ethusb${k}`, `10.0.${10 + k}.1/24`, `00:22:82:ff:ff:0${k}`]),
  );
});

test.serial('a node plan depends only on the profile and its index: --nodes changes only the host', async (t) => {
  const four = await inRoot(async () => planCluster(await loadProfile(pizero)));
  const five = await inRoot(async () => planCluster(await loadProfile(pizero, { nodes: 5 })));
  t.is(five.nodes.length, 6);
  for (const k of [1, 2, 3, 4]) t.deepEqual(five.nodes[k], four.nodes[k], `worker ${k}`);
  t.notDeepEqual(five.nodes[0], four.nodes[0], 'the host lists the new worker');
  const wide = await inRoot(async () => planCluster(await loadProfile(pizero, { nodes: 120 })));
  t.is(wide.nodes.at(-1)!.file, '120-otg120.img', 'wider numbers when the cluster needs them');
  t.is(wide.nodes[1]!.file, '001-otg1.img');
});

test('gadget MACs: the guide scheme up to 9, collision-free beyond', (t) => {
  t.deepEqual(gadgetMacs(1), { hostMac: '00:22:82:ff:ff:01', devMac: '00:22:82:ff:ff:11' });
  t.deepEqual(gadgetMacs(9), { hostMac: '00:22:82:ff:ff:09', devMac: '00:22:82:ff:ff:19' });
  t.deepEqual(gadgetMacs(10), { hostMac: '00:22:82:fe:00:0a', devMac: '00:22:82:fd:00:0a' });
  t.deepEqual(gadgetMacs(300), { hostMac: '00:22:82:fe:01:2c', devMac: '00:22:82:fd:01:2c' });
  const all = Array.from({ length: 2000 }, (_, k) => gadgetMacs(k + 1)).flatMap((m) => [m.hostMac, m.devMac]);
  t.is(new Set(all).size, all.length);
  t.throws(() => gadgetMacs(70000), { instanceOf: RangeError });
});

test('pattern expressions are integer arithmetic on k only', (t) => {
  t.is(interpolate('10.0.{k+10}.2/24', 3), '10.0.13.2/24');
  t.is(evaluate('2*(k-1)+1', 4), 7);
  t.is(interpolate('10.1.{k/250}.{k%250+2}', 1000), '10.1.4.2');
  t.throws(() => evaluate('k/0', 1), { message: /division by zero/ });
  t.is(interpolate('node{k}', 12), 'node12');
  t.throws(() => evaluate('k+', 1), { message: /unexpected "end" in \{k\+\}/ });
  t.throws(() => evaluate('process.exit()', 1), { message: /unexpected/ });
});

test('--only parses lists and ranges and refuses unknown nodes', async (t) => {
  const plan = await inRoot(async () => planCluster(await loadProfile(pizero)));
  t.deepEqual([...parseOnly('0,2-3', plan)].sort(), [0, 2, 3]);
  t.throws(() => parseOnly('7', plan), { message: /names node 7, which the plan does not have/ });
  t.throws(() => parseOnly('3-1', plan), { message: /runs backwards/ });
  t.throws(() => parseOnly('a', plan), { message: /not a list of node indices/ });
});

test('profiles/schema.json is the schema the code validates with', async (t) => {
  t.is(
    await readFile(new URL('../../profiles/schema.json', import.meta.url), 'utf8'),
    schemaText(),
    'run: node build/builder/cli.js schema > profiles/schema.json',
  );
});

test('every profile under profiles/ validates', async (t) => {
  // A build leaves <cluster>.secrets.yaml beside its profile (make demo does): not a profile.
  const files = (await readdir(new URL('../../profiles/', import.meta.url))).filter(
    (f) => f.endsWith('.yaml') && !f.endsWith('.secrets.yaml'),
  );
  t.true(files.length > 0);
  for (const f of files) {
    const result = await swarmcard(['validate', `profiles/${f}`], { cwd: root });
    t.is(result.exitCode, 0, `${f}: ${result.stderr}`);
  }
});

/** Each invalid fixture is named for the rule it breaks: [line, field, message]. */
const invalid: Record<string, [number, string, RegExp][]> = {
  'invalid-duplicate-hostname': [
    [7, 'nodes[1].hostname', /host name node1 is used by nodes 1 and 2; host names must be unique/],
  ],
  'invalid-duplicate-index': [[7, 'nodes[1].index', /node index 1 is used twice/]],
  'invalid-hostname-rfc1123': [
    [7, 'nodes[0].hostname', /"Node_1" is not a valid host name \(RFC 1123.*use e\.g\. node-1/],
  ],
  'invalid-gateway-outside-subnet': [
    [14, 'nodes[0].interfaces[0].gateway', /192\.168\.2\.1 is outside 192\.168\.1\.0\/24/],
  ],
  'invalid-overlapping-subnets': [
    [17, 'nodes[1].interfaces[0].address', /192\.168\.0\.0\/16 of node2 eth0 overlaps 192\.168\.1\.0\/24/],
  ],
  'invalid-duplicate-address': [
    [17, 'nodes[1].interfaces[0].address', /192\.168\.1\.10 is given to both node1 eth0 and node2 eth0/],
  ],
  'invalid-unknown-field': [[10, 'nodes[0].colour', /is not a known field; remove it or fix its spelling \(/]],
  'invalid-missing-role': [[6, 'nodes[0].role', /is missing; add role/]],
  'invalid-unknown-board': [[9, 'nodes[0].board', /must be one of pi0, .* not "pi9"$/]],
  'invalid-yaml-syntax': [[9, '(top level)', /YAML syntax/]],
  'invalid-unknown-overlay': [
    [11, 'nodes[0].overlays[0].id', /no overlay "no-such-overlay" in .*; use one of admin-user, otg-gadget, /],
  ],
  // A slip of the keyboard gets the word it missed; a word near none (pi9, colour) gets none.
  'invalid-several-misspelt': [
    [6, 'nodes[0].board', /is missing; add board/],
    [9, 'nodes[0].bord', /is not a known field; did you mean board\? \(see profiles\/schema\.json\)$/],
    [8, 'nodes[0].role', /must be one of host, manager, worker, not "workr"; did you mean worker\?$/],
  ],
  'invalid-misspelt-overlay': [
    [11, 'nodes[0].overlays[0].id', /no overlay "otg-gadgt" in .*; did you mean otg-gadget\?$/],
  ],
  'invalid-overlay-param': [[13, 'nodes[0].overlays[0].params.gpuMem', /gpuMem must be at least 16/]],
  'invalid-gadget-without-otg': [[12, 'nodes[1].interfaces[0].kind', /node1 is a pi3, which has no USB OTG port/]],
  'invalid-address-out-of-range': [
    [12, 'nodes[1].interfaces[0].address', /"10\.0\.256\.2\/24" \(node node6\) is not an IPv4 address/],
  ],
  'invalid-pattern-expression': [[6, 'nodes[0].pattern', /unexpected "end" in \{k\+\}/]],
  'invalid-docker-armv6': [
    [
      7,
      'swarm.docker.method',
      new RegExp(
        String.raw`zero1 is a pi0w \(ARMv6\), which Docker latest no longer supports .* ` +
          String.raw`use method: apt, or the convenience script with version: "28\.5"`,
      ),
    ],
  ],
  'invalid-swarm-manager-unknown': [[5, 'swarm.manager', /no node is called boss; use one of manager1/]],
  'invalid-swarm-manager-misspelt': [[5, 'swarm.manager', /no node is called manager; did you mean manager1\?$/]],
  'invalid-wifi-without-country': [
    [
      11,
      'nodes[0].interfaces[0]',
      /country is missing: Raspberry Pi OS keeps Wi-Fi blocked until a country is set; add country: GB/,
    ],
  ],
  'invalid-dhcp-with-gateway': [
    [
      14,
      'nodes[0].interfaces[0].gateway',
      /node1 eth0 takes its address by DHCP, which also gives the gateway and name servers; remove gateway and dns/,
    ],
  ],
  'invalid-admin-two-passwords': [[8, 'admin.passwordFile', /give either passwordHash or passwordFile, not both/]],
  // The value is not echoed: it may be a plain password.
  'invalid-admin-password-hash': [
    [
      7,
      'admin.passwordHash',
      /must be a SHA-512 crypt hash \(\$6\$salt\$…, as made by "openssl passwd -6"\); or give passwordFile instead$/,
    ],
  ],
  'invalid-nfs-shared-outside': [[10, 'nfs.shared', /\/srv\/data is not on any NFS mount; use one of \/mnt\/cluster/]],
  'invalid-registry-in-join-mode': [
    [9, 'swarm.registry', /runs on the manager of a swarm swarmcard creates; in join mode/],
  ],
  'invalid-several-problems': [
    [1, 'cluster', /must be lower-case letters, digits and hyphens/],
    [2, 'sourceDateEpoch', /must be a whole number of seconds from 315532800 .* got -5/],
    [5, 'nodes[1].role', /must be one of host, manager, worker, not "boss"/],
  ],
};

for (const [name, expected] of Object.entries(invalid)) {
  test(`${name}: validate and build exit 1 with the YAML line, and build writes nothing`, async (t) => {
    const file = `test/profiles/${name}.yaml`;
    const validate = await swarmcard(['validate', file], { cwd: root });
    t.is(validate.exitCode, 1);
    t.is(validate.stdout, '');
    const lines = validate.stderr
      .trim()
      .split('\n')
      .map((l) => l.replace(/^error: /, ''));
    t.is(lines.length, expected.length, validate.stderr);
    expected.forEach(([line, field, message], i) => {
      t.true(lines[i]!.startsWith(`${file}:${line}: ${field}: `), lines[i]);
      t.regex(lines[i]!, message);
    });
    const out = `${root}build/test-dist-${name}`;
    const build = await swarmcard(['build', file, '--out', out], { cwd: root });
    t.is(build.exitCode, 1);
    t.is(build.stderr, validate.stderr);
    await t.throwsAsync(readdir(out), { code: 'ENOENT' }, 'nothing created');
  });
}

/** clustered-pi in a private directory, its compose file (and password file) where `compose` says. */
async function confinedCase(
  t: import('ava').ExecutionContext,
  compose: string,
  setup?: (dir: string) => Promise<void>,
) {
  const dir = await mkdtemp(join(tmpdir(), 'swarmcard-test-confine-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'profile', 'stacks'), { recursive: true });
  await writeFile(join(dir, 'profile', 'stacks', 'web.yml'), 'services: {}\n');
  const text = (await readFile(join(root, 'profiles/clustered-pi.yaml'), 'utf8')).replace(
    'compose: stacks/clustered-pi-web.yml',
    `compose: ${compose}`,
  );
  await writeFile(join(dir, 'profile', 'p.yaml'), text);
  await setup?.(dir);
  const out = join(dir, 'dist');
  const run = (extra: string[] = []) =>
    swarmcard(['build', join(dir, 'profile', 'p.yaml'), '--out', out, ...extra], {
      env: { SWARMCARD_SECRETS_DIR: join(dir, 'secrets'), SWARMCARD_CACHE_DIR: join(dir, 'cache') },
    });
  return { dir, out, run };
}

const refusal = /swarm\.stacks\[0\]\.compose.*outside the profile's directory; move it next to the profile or allow/;

for (const [title, compose, setup] of [
  ['an absolute path outside', '/etc/passwd', undefined],
  ['a ../ escape', '../outside.yml', (dir: string) => writeFile(join(dir, 'outside.yml'), 'services: {}\n')],
  [
    'a symlink inside pointing outside',
    'stacks/link.yml',
    (dir: string) => symlink('/etc/passwd', join(dir, 'profile', 'stacks', 'link.yml')),
  ],
] as const) {
  test(`a profile cannot copy a file of the build machine: ${title} is refused, nothing written`, async (t) => {
    const { out, run } = await confinedCase(t, compose, setup);
    const result = await run();
    t.is(result.exitCode, 1, result.stderr);
    t.regex(result.stderr, refusal);
    t.notRegex(result.stderr, /root:x:0:0/);
    await t.throwsAsync(readdir(out), { code: 'ENOENT' });
  });
}

test("a profile's overlays folder that links outside its directory is refused", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'swarmcard-test-confine-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'elsewhere', 'leak'), { recursive: true });
  await writeFile(join(dir, 'elsewhere', 'leak', 'secret.txt'), 'a file of the build machine\n');
  await writeFile(
    join(dir, 'elsewhere', 'leak', 'overlay.yaml'),
    'id: leak\ndescription: copies a file\noperations:\n  - file:\n      path: /etc/leak\n      source: secret.txt\n',
  );
  await mkdir(join(dir, 'profile'));
  await symlink(join(dir, 'elsewhere'), join(dir, 'profile', 'overlays'));
  await writeFile(
    join(dir, 'profile', 'p.yaml'),
    'cluster: c\nsourceDateEpoch: 1700000000\nbase:\n  image: base.img\nnodes:\n' +
      '  - index: 1\n    hostname: node1\n    role: worker\n    board: pi4\n    overlays:\n      - id: leak\n',
  );
  const result = await swarmcard(['plan', join(dir, 'profile', 'p.yaml')]);
  t.is(result.exitCode, 1, result.stderr);
  t.regex(result.stderr, /source "secret\.txt" resolves to .*elsewhere\/leak\/secret\.txt, outside .*profile; move it/);
});

test('--allow-path lets a profile name files in that directory', async (t) => {
  const { dir, run } = await confinedCase(t, '../shared/web.yml', async (d) => {
    await mkdir(join(d, 'shared'));
    await writeFile(join(d, 'shared', 'web.yml'), 'services: {}\n');
  });
  const refused = await run(['--nodes', '1']);
  t.regex(refused.stderr, refusal);
  const allowed = await swarmcard(['plan', join(dir, 'profile', 'p.yaml'), '--allow-path', join(dir, 'shared')]);
  t.is(allowed.exitCode, 0, allowed.stderr);
});

const configTxtOf = (plan: Awaited<ReturnType<typeof planCluster>>, hostname: string) =>
  plan.nodes.find((n) => n.hostname === hostname)!.edits.filter((e) => e.op === 'configTxt');

test.serial('a Pi 5 gadget gets dwc2,dr_mode=peripheral; a Zero plain dwc2 (docs/raspios.md #11)', async (t) => {
  const plan = await inRoot(async () => planCluster(await loadProfile('test/profiles/pi5-gadget.yaml')));
  t.like(configTxtOf(plan, 'five1'), [
    { block: 'otg-gadget', section: 'all', lines: ['dtoverlay=dwc2,dr_mode=peripheral', 'gpu_mem=16'] },
  ]);
  t.like(configTxtOf(plan, 'zero2'), [
    { block: 'otg-gadget', section: 'all', lines: ['dtoverlay=dwc2', 'gpu_mem=16'] },
  ]);
  const five = plan.nodes.find((n) => n.hostname === 'five1')!;
  t.deepEqual(five.gadget, gadgetMacs(1), 'fixed MACs as for any gadget');
});

test.serial('swarm.deployAfter: the grace period reaches swarm.env; 600 s unless the profile says', async (t) => {
  const plan = await inRoot(async () => planCluster(await loadProfile('test/profiles/pi5-gadget.yaml')));
  const env = (p: typeof plan, hostname: string) =>
    p.nodes
      .find((n) => n.hostname === hostname)!
      .edits.find((e) => 'path' in e && e.path === '/etc/swarmcard/swarm.env');
  t.regex(JSON.stringify(env(plan, 'host1')), /DEPLOY_AFTER=20\\n/);
  const shipped = await inRoot(async () => planCluster(await loadProfile(pizero)));
  t.regex(JSON.stringify(env(shipped, 'otghost1')), /DEPLOY_AFTER=600\\n/);
  const dir = await mkdtemp(join(tmpdir(), 'swarmcard-deploy-after-'));
  try {
    const text = await readFile(join(root, 'test/profiles/pi5-gadget.yaml'), 'utf8');
    const file = join(dir, 'bad.yaml');
    await writeFile(file, text.replace('deployAfter: 20', 'deployAfter: -5'));
    const validate = await swarmcard(['validate', file], { cwd: root });
    t.is(validate.exitCode, 1);
    t.regex(validate.stderr, /bad\.yaml:9: swarm\.deployAfter: .*greater or equal to 0, got -5/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.serial('pi4-ethernet: only the registry waits for the NAS; it names the mount it needs', async (t) => {
  const plan = await inRoot(async () => planCluster(await loadProfile('profiles/pi4-ethernet.yaml')));
  const manager = plan.nodes.find((n) => n.hostname === 'manager1')!;
  const mounts = manager.edits.filter((e) => 'path' in e && String(e.path).endsWith('.mounts'));
  t.deepEqual(
    mounts.map((e) => [(e as { path: string }).path, (e as { content: string }).content]),
    [['/etc/swarmcard/stacks/registry.mounts', '/mnt/cluster\n']],
  );
});
