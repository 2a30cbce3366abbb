/**
 * The secrets a profile names but the secrets file holds: the admin's password hash (made from a
 * plain password file with a fresh salt the first time, then reused while the password is the
 * same or the file is gone, so rebuilds stay byte-identical) and the Wi-Fi network.
 */
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { encrypt, verify } from 'unixcrypt';
import { UserError } from '../errors.js';
import { log } from '../log.js';
import type { LoadedAdmin } from '../profile/types.js';
import type { WifiSecret } from '../render/network.js';
import { isFile } from '../util/is-file.js';
import { type ClusterSecrets, secretsPath, updateSecrets, writePrivateFile } from './secrets-file.js';

const CRYPT_ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function freshSalt(): string {
  return [...randomBytes(16)].map((b) => CRYPT_ALPHABET[b % 64]).join('');
}

/** No password file yet: write a fresh random password (0600, never replacing one a race made). */
async function createPasswordFile(file: string): Promise<void> {
  if (
    await stat(file).then(
      () => true,
      () => false,
    )
  )
    return;
  if (await writePrivateFile(file, `${randomBytes(15).toString('base64url')}\n`, 'create')) {
    log.info(`generated a random admin password into ${file} (mode 0600): read it there, and keep the file private`);
  }
}

export async function adminPasswordHash(
  admin: LoadedAdmin,
  stored: ClusterSecrets,
  profileFile: string,
  cluster: string,
  options: { refuse?: string } = {},
): Promise<string> {
  if (admin.passwordHash) return admin.passwordHash;
  const file = admin.passwordFile!;
  const previous = stored.adminPassword?.hash;
  if (!(await isFile(file))) {
    // Only the hash goes into images: a CI runner given the secrets file needs no plain password,
    // and a lost password file must not silently change every node's password on a rebuild.
    if (previous) {
      log.info(`${file} is absent: the admin password stays the one hashed in ${secretsPath(profileFile, cluster)}`);
      return previous;
    }
    if (options.refuse) throw new UserError(`${file} does not exist yet, ${options.refuse}`);
    await createPasswordFile(file);
  }
  const password = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
  if (password.length === 0 || password.includes('\n'))
    throw new UserError(
      `${file} must hold the admin's password on one line; it is ${password.length === 0 ? 'empty' : 'several lines'}.`,
    );
  if (previous && verify(password, previous)) return previous;
  if (options.refuse)
    throw new UserError(
      `${secretsPath(profileFile, cluster)} holds no hash of the admin password in ${file}, ${options.refuse}`,
    );
  const hash = encrypt(password, `$6$${freshSalt()}`);
  await updateSecrets(profileFile, cluster, { adminPassword: { hash } });
  log.info(
    `hashed the admin password from ${file} (SHA-512 crypt, new salt); ` +
      `the hash is kept in ${secretsPath(profileFile, cluster)} so rebuilds reuse it`,
  );
  return hash;
}

export function checkWifi(wifi: WifiSecret | undefined, file: string): WifiSecret {
  const example = 'wifi: { ssid: "my-lan", passphrase: "8 to 63 characters" }';
  if (!wifi)
    throw new UserError(`${file} has no Wi-Fi network, which the profile's wifi interfaces need; add ${example}.`);
  const ssidBytes = Buffer.byteLength(wifi.ssid, 'utf8');
  if (ssidBytes < 1 || ssidBytes > 32 || [...wifi.ssid].some((c) => c.charCodeAt(0) < 0x20))
    throw new UserError(`${file}: wifi.ssid must be 1 to 32 bytes without control characters; fix it (${example}).`);
  if (wifi.passphrase.length < 8 || wifi.passphrase.length > 63 || !/^[\x20-\x7e]+$/.test(wifi.passphrase))
    throw new UserError(
      `${file}: wifi.passphrase must be 8 to 63 printable ASCII characters (WPA2-PSK); fix it (${example}).`,
    );
  return wifi;
}
