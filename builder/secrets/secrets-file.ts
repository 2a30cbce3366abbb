/**
 * The cluster's secrets file, beside the profile: `<profile dir>/<cluster>.secrets.yaml`, mode 0600
 * (or in $SWARMCARD_SECRETS_DIR, e.g. where a CI system mounts its secrets).
 * It holds the cluster SSH key, generated (with ssh-keygen, the one fresh-randomness step of a
 * build) the first time a profile with a swarm is built and reused by every rebuild, so images stay
 * reproducible. Its content never reaches logs or the manifest.
 */
import { chmod, link, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { UserError } from '../errors.js';
import { run } from '../exec/run.js';
import { log } from '../log.js';
import { makeFolders } from '../util/make-folders.js';
import { withScope } from '../util/scope.js';

export interface ClusterSecrets {
  clusterKey: { private: string; public: string };
  /** SHA-512 crypt hash of the admin's password file, made (with a fresh salt) the first time. */
  adminPassword?: { hash: string };
  /** The wireless LAN of profiles with wifi interfaces: written here by the user. */
  wifi?: { ssid: string; passphrase: string };
}

const HEADER = (cluster: string) =>
  `# swarmcard secrets of the ${cluster} cluster: keep this file private and keep it — rebuilds reuse it.\n`;

export function secretsPath(profileFile: string, cluster: string): string {
  return join(process.env.SWARMCARD_SECRETS_DIR || dirname(resolve(profileFile)), `${cluster}.secrets.yaml`);
}

async function generate(cluster: string): Promise<ClusterSecrets> {
  return withScope(async (scope) => {
    const dir = await scope.tempDir('swarmcard-key-');
    const key = join(dir, 'cluster_key');
    await run('ssh_keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `swarmcard@${cluster}`, '-f', key]);
    return {
      clusterKey: { private: await readFile(key, 'utf8'), public: (await readFile(`${key}.pub`, 'utf8')).trim() },
    };
  });
}

/**
 * Write a file only its owner can read, atomically: staged as .partial (0600), then renamed over
 * `file` (replace) or linked to it — link() refuses to replace, so when two builds race to create
 * it, the first wins. Returns whether this call wrote it.
 */
export async function writePrivateFile(file: string, text: string, how: 'create' | 'replace'): Promise<boolean> {
  await makeFolders(dirname(file));
  return withScope(async (scope) => {
    const temp = `${file}.${process.pid}.partial`;
    scope.defer(`remove ${temp}`, () => rm(temp, { force: true }));
    try {
      await writeFile(temp, text, { mode: 0o600 });
      await chmod(temp, 0o600);
      if (how === 'replace') await rename(temp, file);
      else await link(temp, file);
      return true;
    } catch (error) {
      if (how === 'create' && (error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  });
}

/** The secrets file's YAML mapping; a UserError naming the file when it is not one. */
async function readSecretsYaml(file: string): Promise<Partial<ClusterSecrets> | null> {
  let data: unknown;
  try {
    data = parse(await readFile(file, 'utf8'), { maxAliasCount: 100 });
  } catch (error) {
    if (typeof (error as NodeJS.ErrnoException).errno === 'number') throw error;
    data = 'not YAML';
  }
  if (data !== null && (typeof data !== 'object' || Array.isArray(data)))
    throw new UserError(
      `${file} is not a YAML mapping of secrets (clusterKey, …); restore it from a backup, ` +
        'or delete it to generate a new key (then rebuild every image).',
    );
  return data as Partial<ClusterSecrets> | null;
}

/** The secrets, generating the file first when there is none (unless `refuse` says why not to). */
export async function loadOrCreateSecrets(
  profileFile: string,
  cluster: string,
  options: { refuse?: string } = {},
): Promise<ClusterSecrets> {
  const file = secretsPath(profileFile, cluster);
  if (!(await stat(file).catch(() => undefined))) {
    if (options.refuse) throw new UserError(`${file} does not exist yet, ${options.refuse}`);
    const secrets = await generate(cluster);
    // When two builds race, the first key wins.
    if (await writePrivateFile(file, `${HEADER(cluster)}${stringify(secrets)}`, 'create'))
      log.info(`generated the cluster SSH key into ${file} (mode 0600); keep it: rebuilds reuse it`);
  }
  const info = await stat(file);
  if ((info.mode & 0o077) !== 0)
    throw new UserError(
      `${file} holds secrets but others can read it (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${file}`,
    );
  const data = await readSecretsYaml(file);
  const key = data?.clusterKey;
  if (
    !key ||
    typeof key.private !== 'string' ||
    !key.private.includes('PRIVATE KEY') ||
    typeof key.public !== 'string' ||
    !key.public.startsWith('ssh-')
  ) {
    throw new UserError(
      `${file} has no valid clusterKey (private and public); restore it from a backup, ` +
        'or delete it to generate a new key (then rebuild every image).',
    );
  }
  const wifi = data?.wifi;
  if (wifi !== undefined && (typeof wifi?.ssid !== 'string' || typeof wifi.passphrase !== 'string')) {
    throw new UserError(
      `${file}: wifi must hold ssid and passphrase, both strings (quote them); ` +
        'for example wifi: { ssid: "my-lan", passphrase: "…" }.',
    );
  }
  const hash = data?.adminPassword?.hash;
  return {
    clusterKey: key,
    ...(typeof hash === 'string' ? { adminPassword: { hash } } : {}),
    ...(wifi ? { wifi } : {}),
  };
}

/** Add or replace top-level entries of the secrets file, atomically, keeping it 0600. */
export async function updateSecrets(
  profileFile: string,
  cluster: string,
  patch: Partial<ClusterSecrets>,
): Promise<void> {
  const file = secretsPath(profileFile, cluster);
  const data = { ...((await readSecretsYaml(file)) as ClusterSecrets), ...patch };
  await writePrivateFile(file, `${HEADER(cluster)}${stringify(data)}`, 'replace');
}
