/**
 * The Ethernet, Wi-Fi and IoT profiles built against bullseye-, bookworm- and trixie-flavoured
 * fixtures; every promised item is read back with mtools and debugfs, the password hash checked
 * with openssl and the Wi-Fi key derived with openssl's PBKDF2, independently of swarmcard.
 */

import { cp, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { parse } from 'yaml';
import type { FlavourName } from '../builder/fixture/flavours.js';
import type { Manifest } from '../builder/output/manifest.js';
import { swarmcard } from './helpers/cli.js';
import { fixture, scratchDir } from './helpers/fixtures.js';
import { debugfsCat, debugfsStat, e2fsckClean, mdir, mtype, sha256File } from './helpers/independent.js';
import { missingRoot, testIf } from './helpers/requires.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** A private copy of a shipped profile (its password and secrets files are made beside it). */
async function profileCopy(t: ExecutionContext, name: string): Promise<{ dir: string; file: string }> {
  const dir = await scratchDir(t);
  await cp(join(root, 'profiles', `${name}.yaml`), join(dir, `${name}.yaml`));
  await cp(join(root, 'profiles', 'stacks'), join(dir, 'stacks'), { recursive: true });
  return { dir, file: join(dir, `${name}.yaml`) };
}

async function build(dir: string, file: string, base: string, extra: string[] = []) {
  return swarmcard(['build', file, '--base', base, '--out', join(dir, 'dist'), ...extra], {
    env: { SWARMCARD_CACHE_DIR: join(dir, 'cache') },
  });
}

/** Does openssl, given the password, make the same SHA-512 crypt hash? */
async function hashMatches(hash: string, password: string): Promise<boolean> {
  const salt = hash.split('$')[2]!;
  const { stdout } = await execa('openssl', ['passwd', '-6', '-salt', salt, '-stdin'], { input: password });
  return stdout.trim() === hash;
}

const leaks = (text: string, secrets: string[]) => secrets.filter((s) => text.includes(s));

interface EthernetSecrets {
  adminPassword: { hash: string };
  clusterKey: { private: string; public: string };
}

const ethernetNodes = [
  [0, 'manager1'],
  [1, 'worker1'],
  [2, 'worker2'],
] as const;

/** One pi4-ethernet node: LAN address, SSH and admin user, keys, hosts, the NAS, the registry trust. */
async function checkEthernetNode(
  t: ExecutionContext,
  flavour: FlavourName,
  image: string,
  [index, name]: readonly [number, string],
  secrets: EthernetSecrets,
) {
  const nm = flavour !== 'bullseye-arm64';
  const trixie = flavour === 'trixie-arm64';
  const hash = secrets.adminPassword.hash;
  const address = `192.168.1.${200 + index}`;
  t.is(await debugfsCat(image, '/etc/hostname'), `${name}\n`);
  // Static LAN address, gateway and DNS by the release's own stack.
  if (nm) {
    const keyfile = '/etc/NetworkManager/system-connections/swarmcard-eth0.nmconnection';
    t.like(await debugfsStat(image, keyfile), { type: 'regular', mode: 0o600, uid: 0, gid: 0 });
    const text = await debugfsCat(image, keyfile);
    t.regex(text, /^type=ethernet$/m);
    t.regex(text, new RegExp(`^address1=${address.replaceAll('.', '\\.')}/24,192\\.168\\.1\\.1$`, 'm'));
    t.regex(text, /^dns=192\.168\.1\.1;$/m);
    t.like(
      await debugfsStat(image, '/etc/systemd/system/network-online.target.wants/NetworkManager-wait-online.service'),
      { type: 'symlink' },
    );
  } else {
    t.regex(
      await debugfsCat(image, '/etc/dhcpcd.conf'),
      new RegExp(
        `interface eth0\\nstatic ip_address=${address}/24\\nstatic routers=192\\.168\\.1\\.1\\n` +
          'static domain_name_servers=192\\.168\\.1\\.1\\n',
      ),
    );
    t.is(
      await debugfsCat(image, '/etc/systemd/system/dhcpcd.service.d/wait.conf'),
      '[Service]\nExecStart=\nExecStart=/usr/lib/dhcpcd5/dhcpcd -q -w\n',
    );
  }
  // SSH on, the admin user by the release's mechanism, never both.
  t.true((await mdir(image)).includes('::/ssh'));
  if (trixie) {
    t.false((await mdir(image)).includes('::/userconf.txt'));
    const userData = await mtype(image, '/user-data');
    t.true(userData.startsWith('#cloud-config\n'));
    const user = (parse(userData) as { users: Record<string, unknown>[] }).users[0]!;
    t.like(user, {
      name: 'admin',
      passwd: hash,
      lock_passwd: false,
      sudo: 'ALL=(ALL) NOPASSWD:ALL',
      shell: '/bin/bash',
    });
    t.true(String(user.groups).split(',').includes('gpio'));
  } else {
    t.is(await mtype(image, '/userconf.txt'), `admin:${hash}\n`);
  }
  // The admin's keys and the cluster key, installed into ~admin/.ssh by the enabled unit.
  t.is(
    await debugfsCat(image, '/etc/swarmcard/admin/admin.env'),
    '# swarmcard: the admin user whose ~/.ssh /usr/local/lib/swarmcard/admin-keys fills.\nADMIN_USER=admin\n',
  );
  t.like(await debugfsStat(image, '/etc/swarmcard/admin/id_ed25519'), { mode: 0o600, uid: 0, gid: 0 });
  t.is(await debugfsCat(image, '/etc/swarmcard/admin/id_ed25519'), secrets.clusterKey.private);
  t.is(await debugfsCat(image, '/etc/swarmcard/admin/id_ed25519.pub'), `${secrets.clusterKey.public}\n`);
  t.like(await debugfsStat(image, '/usr/local/lib/swarmcard/admin-keys'), { mode: 0o755 });
  t.is(
    await debugfsCat(image, '/usr/local/lib/swarmcard/admin-keys'),
    await readFile(join(root, 'overlays/admin-user/admin-keys.sh'), 'utf8'),
  );
  t.like(await debugfsStat(image, '/etc/systemd/system/multi-user.target.wants/swarmcard-admin-keys.service'), {
    type: 'symlink',
  });
  // Every node by name.
  t.regex(
    await debugfsCat(image, '/etc/hosts'),
    new RegExp(
      String.raw`# BEGIN swarmcard cluster\n192\.168\.1\.200\tmanager1\n` +
        String.raw`192\.168\.1\.201\tworker1\n192\.168\.1\.202\tworker2\n# END swarmcard cluster\n`,
    ),
  );
  // The NAS: the exact fstab line, the mount point, /shared.
  const fstab = await debugfsCat(image, '/etc/fstab');
  t.true(
    fstab.endsWith(
      '# BEGIN swarmcard nfs\n' +
        '192.168.1.10:/export/cluster\t/mnt/cluster\tnfs4\trw,nofail,_netdev,x-systemd.mount-timeout=60\t0\t0\n' +
        '# END swarmcard nfs\n',
    ),
  );
  t.regex(fstab, /^PARTUUID=[0-9a-f]{8}-02 /m, 'the root line is kept');
  t.like(await debugfsStat(image, '/mnt/cluster'), { type: 'directory', mode: 0o755, uid: 0 });
  t.like(await debugfsStat(image, '/shared'), { type: 'symlink' });
  t.is(await debugfsCat(image, '/etc/swarmcard/mounts'), '/mnt/cluster\n');
  // Every node trusts the private registry.
  t.is(
    await debugfsCat(image, '/etc/docker/daemon.json'),
    '{\n  "insecure-registries": [\n    "192.168.1.200:5000",\n    "manager1:5000"\n  ]\n}\n',
  );
  t.like(await debugfsStat(image, '/etc/docker/daemon.json'), { mode: 0o644, uid: 0 });
  t.true((await e2fsckClean(image)).ok);
}

/** A rebuild reuses the password's hash (the same bytes); a new password gets a new hash, stored. */
async function checkPasswordRebuilds(t: ExecutionContext, dir: string, file: string, base: string) {
  const out = join(dir, 'dist', 'pi4-ethernet');
  const passwordFile = join(dir, 'pi4-ethernet.password');
  // A rebuild reuses the password's hash: the same bytes.
  const sums = await readFile(join(out, 'SHA256SUMS'), 'utf8');
  const again = await build(dir, file, base, ['--nodes', '2']);
  t.is(again.exitCode, 0, again.stderr);
  t.is(await readFile(join(out, 'SHA256SUMS'), 'utf8'), sums);
  t.notRegex(again.stderr, /hashed the admin password/);
  // A new password gets a new hash, stored for the next rebuild.
  await writeFile(passwordFile, 'a new password\n', { mode: 0o600 });
  const changed = await build(dir, file, base, ['--nodes', '2', '--only', '1']);
  t.is(changed.exitCode, 0, changed.stderr);
  const newHash = (parse(await readFile(join(dir, 'pi4-ethernet.secrets.yaml'), 'utf8')) as EthernetSecrets)
    .adminPassword.hash;
  t.true(await hashMatches(newHash, 'a new password'));
  t.notRegex(changed.stderr, /a new password/);
}

/** Every item of the pi4-ethernet profile, built on one release's fixture; then rebuilds keep the password. */
const pi4Ethernet = test.macro<[FlavourName]>({
  async exec(t, flavour) {
    const { dir, file } = await profileCopy(t, 'pi4-ethernet');
    const base = await fixture(flavour);
    const first = await build(dir, file, base, ['--nodes', '2']);
    t.is(first.exitCode, 0, first.stderr);
    const out = join(dir, 'dist', 'pi4-ethernet');

    // The first build made a random password (0600) and kept its hash in the secrets file.
    const passwordFile = join(dir, 'pi4-ethernet.password');
    t.is((await stat(passwordFile)).mode & 0o777, 0o600);
    const password = (await readFile(passwordFile, 'utf8')).trim();
    t.true(password.length >= 16);
    const secrets = parse(await readFile(join(dir, 'pi4-ethernet.secrets.yaml'), 'utf8')) as EthernetSecrets;
    const hash = secrets.adminPassword.hash;
    t.true(await hashMatches(hash, password), 'openssl makes the same hash from the password');
    t.is((await stat(join(dir, 'pi4-ethernet.secrets.yaml'))).mode & 0o777, 0o600);
    const keyBody = secrets.clusterKey.private.split('\n')[1]!;

    for (const node of ethernetNodes)
      await checkEthernetNode(t, flavour, join(out, `0${node[0]}-${node[1]}.img`), node, secrets);
    // The manager carries the registry (data on the NAS) and Portainer.
    const manager = join(out, '00-manager1.img');
    const registry = await debugfsCat(manager, '/etc/swarmcard/stacks/registry.yml');
    t.regex(registry, /image: registry:2\n/);
    t.regex(registry, /\{ target: 5000, published: 5000, protocol: tcp, mode: host \}/);
    t.regex(registry, /\{ type: bind, source: \/shared\/registry, target: \/var\/lib\/registry \}/);
    t.is(await debugfsCat(manager, '/etc/swarmcard/stacks/registry.dirs'), '/shared/registry\n');
    t.regex(
      await debugfsCat(manager, '/etc/swarmcard/stacks/portainer.yml'),
      /portainer\/agent:lts[\s\S]*mode: global[\s\S]*portainer\/portainer-ce:lts/,
    );

    // Secrets: named in the manifest and the output, never their values in logs or the manifest.
    const manifestText = await readFile(join(out, 'manifest.json'), 'utf8');
    const manifest = JSON.parse(manifestText) as Manifest;
    for (const node of manifest.nodes)
      t.deepEqual(node.secrets, ['the cluster SSH private key', "the admin's password hash"]);
    t.regex(first.stdout, /00-manager1\.img .* holds the cluster SSH private key, the admin's password hash/);
    t.deepEqual(leaks(`${first.stdout}${first.stderr}${manifestText}`, [hash, password, keyBody]), []);

    await checkPasswordRebuilds(t, dir, file, base);
  },
  title: (_, flavour) => `${flavour}: every item of the pi4-ethernet profile is in the images`,
});

for (const flavour of ['bullseye-arm64', 'bookworm-arm64', 'trixie-arm64'] as FlavourName[]) test(pi4Ethernet, flavour);

for (const flavour of ['bookworm-arm64', 'trixie-arm64', 'bullseye-arm64'] as FlavourName[]) {
  test(`${flavour}: clustered-pi takes DHCP on eth0 and the manager deploys the web stack`, async (t) => {
    const { dir, file } = await profileCopy(t, 'clustered-pi');
    const base = await fixture(flavour);
    const result = await build(dir, file, base);
    t.is(result.exitCode, 0, result.stderr);
    const out = join(dir, 'dist', 'clustered-pi');
    const names = ['node01', 'node02', 'node03', 'node04'];
    for (const [i, name] of names.entries()) {
      const image = join(out, `0${i + 1}-${name}.img`);
      t.is(await debugfsCat(image, '/etc/hostname'), `${name}\n`);
      if (flavour === 'bullseye-arm64') {
        // dhcpcd takes every interface by DHCP: its configuration is left as it was.
        t.is(await debugfsCat(image, '/etc/dhcpcd.conf'), await debugfsCat(base, '/etc/dhcpcd.conf'));
      } else {
        const keyfile = await debugfsCat(image, '/etc/NetworkManager/system-connections/swarmcard-eth0.nmconnection');
        t.regex(keyfile, /\[ipv4\]\nmethod=auto\n/);
        t.notRegex(keyfile, /address1=/);
      }
      const env = await debugfsCat(image, '/etc/swarmcard/swarm.env');
      t.regex(env, /^SELF_ADDRESS=eth0$/m, 'Docker advertises what DHCP gave eth0');
      t.regex(env, /^MANAGER_ADDRESS=node01\.local$/m);
      t.regex(await mtype(image, flavour === 'trixie-arm64' ? '/user-data' : '/userconf.txt'), /admin/);
      t.notRegex(await debugfsCat(image, '/etc/hosts'), /BEGIN swarmcard cluster/);
      t.is(await debugfsStat(image, '/etc/docker/daemon.json'), undefined);
    }
    const manager = join(out, '01-node01.img');
    t.is(
      await debugfsCat(manager, '/etc/swarmcard/nodes'),
      '# hostname ssh-address joins-as labels\n' +
        names
          .map(
            (n, i) =>
              `${n} ${n}.local ${i === 0 ? 'manager' : 'worker'} board=pi4,role=${i === 0 ? 'manager' : 'worker'}`,
          )
          .join('\n') +
        '\n',
    );
    t.is(
      await debugfsCat(manager, '/etc/swarmcard/stacks/web.yml'),
      await readFile(join(root, 'profiles/stacks/clustered-pi-web.yml'), 'utf8'),
    );
    t.is(await debugfsCat(manager, '/etc/swarmcard/stacks/web.env'), 'WEB_IMAGE=nginx:stable-alpine\n');
  });
}

/** The WPA key wpa_passphrase would write, from openssl's PBKDF2 (not swarmcard's code). */
async function opensslPsk(ssid: string, passphrase: string): Promise<string> {
  const { stdout } = await execa('openssl', [
    'kdf',
    '-keylen',
    '32',
    '-kdfopt',
    'digest:SHA1',
    '-kdfopt',
    `pass:${passphrase}`,
    '-kdfopt',
    `salt:${ssid}`,
    '-kdfopt',
    'iter:4096',
    'PBKDF2',
  ]);
  return stdout.trim().replaceAll(':', '').toLowerCase();
}

test('iot-leds: without a Wi-Fi network in the secrets file the build stops before writing an image', async (t) => {
  const { dir, file } = await profileCopy(t, 'iot-leds');
  const result = await build(dir, file, await fixture('bookworm-armhf'));
  t.is(result.exitCode, 1);
  t.regex(
    result.stderr,
    new RegExp(
      String.raw`iot-leds\.secrets\.yaml has no Wi-Fi network, which the profile's wifi interfaces need; ` +
        String.raw`add wifi: \{ ssid: "my-lan", passphrase: "8 to 63 characters" \}\.`,
    ),
  );
  t.is(
    await stat(join(dir, 'dist', 'iot-leds')).then(
      () => 'exists',
      () => 'absent',
    ),
    'absent',
  );
});

for (const flavour of ['bullseye-armhf', 'bookworm-armhf', 'trixie-armhf'] as FlavourName[]) {
  test(`${flavour}: every item of the iot-leds profile is in the images`, async (t) => {
    const { dir, file } = await profileCopy(t, 'iot-leds');
    const base = await fixture(flavour);
    // The user adds the Wi-Fi network to the secrets file the first attempt created.
    const ssid = 'Pi "lab" net';
    const passphrase = 'correct horse battery staple';
    const attempt = await build(dir, file, base);
    t.is(attempt.exitCode, 1, 'no Wi-Fi network yet');
    const secretsFile = join(dir, 'iot-leds.secrets.yaml');
    await writeFile(
      secretsFile,
      `${await readFile(secretsFile, 'utf8')}wifi:\n` +
        `  ssid: ${JSON.stringify(ssid)}\n  passphrase: ${JSON.stringify(passphrase)}\n`,
    );
    const result = await build(dir, file, base);
    t.is(result.exitCode, 0, result.stderr);
    const psk = await opensslPsk(ssid, passphrase);
    const out = join(dir, 'dist', 'iot-leds');
    for (const k of [0, 1, 2, 3]) {
      const image = join(out, `0${k}-leds${k}.img`);
      const cmdline = (await mtype(image, '/cmdline.txt')).trim().split(' ');
      t.true(cmdline.includes('cfg80211.ieee80211_regdom=GB'), 'the Wi-Fi country on the kernel command line');
      t.is(await debugfsCat(image, '/var/lib/systemd/rfkill/platform-fe300000.mmcnr:wlan'), '0\n');
      if (flavour === 'bullseye-armhf') {
        const conf = await mtype(image, '/wpa_supplicant.conf');
        t.is(
          conf,
          'ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev\nupdate_config=1\ncountry=GB\n\n' +
            `network={\n\tssid=${Buffer.from(ssid).toString('hex')}\n\tpsk=${psk}\n}\n`,
        );
        t.regex(
          await debugfsCat(image, '/etc/dhcpcd.conf'),
          new RegExp(`interface wlan0\\nstatic ip_address=192\\.168\\.1\\.${220 + k}/24\\n`),
        );
      } else {
        const path = '/etc/NetworkManager/system-connections/swarmcard-wlan0.nmconnection';
        t.like(await debugfsStat(image, path), { mode: 0o600, uid: 0, gid: 0 });
        const keyfile = await debugfsCat(image, path);
        t.regex(keyfile, /^type=wifi$/m);
        t.true(
          keyfile.includes(
            `\n[wifi]\nmode=infrastructure\nssid=${ssid}\n\n[wifi-security]\nkey-mgmt=wpa-psk\npsk=${psk}\n`,
          ),
        );
        t.regex(keyfile, new RegExp(`^address1=192\\.168\\.1\\.${220 + k}/24,192\\.168\\.1\\.1$`, 'm'));
      }
      // LED workers: /dev/gpiomem for the gpio group; the manager has no LED board.
      const rule = await debugfsStat(image, '/etc/udev/rules.d/90-swarmcard-gpio.rules');
      if (k === 0) t.is(rule, undefined);
      else
        t.regex(
          await debugfsCat(image, '/etc/udev/rules.d/90-swarmcard-gpio.rules'),
          /SUBSYSTEM=="bcm2835-gpiomem", KERNEL=="gpiomem", GROUP="gpio", MODE="0660"/,
        );
    }
    const manager = join(out, '00-leds0.img');
    t.regex(
      await debugfsCat(manager, '/etc/swarmcard/nodes'),
      /^leds2 192\.168\.1\.222 worker board=pi0w,gpio=true,leds=true,role=worker$/m,
    );
    t.regex(await debugfsCat(manager, '/etc/swarmcard/stacks/leds.yml'), /constraints: \[node\.labels\.leds == true\]/);
    t.regex(await debugfsCat(manager, '/etc/swarmcard/stacks/leds.env'), /^LED_IMAGE=alexellis2\/blinkt-web:armhf$/m);
    // The passphrase is on no card, in no log, in no manifest; the images say they hold the key.
    const manifestText = await readFile(join(out, 'manifest.json'), 'utf8');
    t.deepEqual(leaks(`${result.stdout}${result.stderr}${manifestText}`, [passphrase, psk]), []);
    const manifest = JSON.parse(manifestText) as Manifest;
    t.is(manifest.nodes.length, 4);
    for (const node of manifest.nodes) t.true(node.secrets!.includes('the Wi-Fi passphrase'));
    const bytes = await readFile(join(out, '01-leds1.img'));
    t.false(bytes.includes(Buffer.from(passphrase)), 'no image holds the passphrase itself');
    t.is(await sha256File(join(out, '01-leds1.img')), manifest.nodes.find((n) => n.index === 1)!.sha256);
  });
}

testIf(missingRoot())(
  'admin-keys installs the staged keys into the admin home once, owned by the admin, and keeps keys added by hand',
  async (t) => {
    const dir = await scratchDir(t);
    const conf = join(dir, 'conf');
    await execa('mkdir', ['-p', join(conf, 'admin'), join(dir, 'home', 'admin')]);
    await writeFile(join(conf, 'admin', 'admin.env'), 'ADMIN_USER=admin\n');
    await writeFile(join(conf, 'admin', 'authorized_keys'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlaptop me@laptop\n');
    await writeFile(
      join(conf, 'admin', 'id_ed25519'),
      '-----BEGIN OPENSSH PRIVATE KEY-----\ncluster\n-----END OPENSSH PRIVATE KEY-----\n',
      { mode: 0o600 },
    );
    await writeFile(
      join(conf, 'admin', 'id_ed25519.pub'),
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIcluster swarmcard@pi4-ethernet\n',
    );
    // The user as first boot makes it: an /etc/passwd line, seen only inside a private mount namespace.
    await writeFile(
      join(dir, 'passwd'),
      `${await readFile('/etc/passwd', 'utf8')}admin:x:1000:1000::${join(dir, 'home', 'admin')}:/bin/bash\n`,
    );
    await execa('chown', ['1000:1000', join(dir, 'home', 'admin')]);
    const script = join(root, 'overlays', 'admin-user', 'admin-keys.sh');
    const run = () =>
      execa(
        'unshare',
        ['--mount', 'sh', '-c', `mount --bind ${join(dir, 'passwd')} /etc/passwd && exec sh ${script}`],
        { env: { SWARMCARD_CONF: conf }, reject: false },
      );
    t.is((await run()).exitCode, 0);
    const ssh = join(dir, 'home', 'admin', '.ssh');
    await writeFile(
      join(ssh, 'authorized_keys'),
      `${await readFile(join(ssh, 'authorized_keys'), 'utf8')}ssh-rsa AAAAhand added@by-hand\n`,
    );
    const second = await run();
    t.is(second.exitCode, 0, second.stderr);
    t.is(
      await readFile(join(ssh, 'authorized_keys'), 'utf8'),
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlaptop me@laptop\n' +
        'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIcluster swarmcard@pi4-ethernet\n' +
        'ssh-rsa AAAAhand added@by-hand\n',
    );
    for (const [file, mode] of [
      ['.', 0o700],
      ['authorized_keys', 0o600],
      ['id_ed25519', 0o600],
      ['id_ed25519.pub', 0o644],
    ] as const) {
      const info = await stat(join(ssh, file));
      t.deepEqual([info.mode & 0o777, info.uid, info.gid], [mode, 1000, 1000], file);
    }
    t.is(await readFile(join(ssh, 'id_ed25519'), 'utf8'), await readFile(join(conf, 'admin', 'id_ed25519'), 'utf8'));
    t.notRegex(second.stdout + second.stderr, /PRIVATE KEY/);
  },
);
