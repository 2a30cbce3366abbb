/**
 * The secrets a build needs, loaded only when a node's edits ask for them: the cluster key
 * (created on first use), the join token, the admin's password hash and the Wi-Fi. Everything but
 * the join token lives in the secrets file beside the profile.
 */
import { readFile } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { type FileSecret, type PlannedEdit, type SecretKind, secretNames } from '../plan/edits.js';
import type { LoadedAdmin } from '../profile/types.js';
import type { WifiSecret } from '../render/network.js';
import { adminPasswordHash, checkWifi } from './admin-wifi.js';
import { loadOrCreateSecrets, secretsPath } from './secrets-file.js';

/** Secret values by kind. */
export type SecretValues = Partial<Record<FileSecret | 'admin-password', string>> & { wifi?: WifiSecret };

/** Where the profile's secrets file lives and, in join mode, the token file. */
export interface SecretSources {
  profileFile: string;
  joinTokenFile?: string;
  admin?: LoadedAdmin;
  /**
   * What to do when a secret is still to be made (no secrets file, key, password file or hash):
   * make it (the default), or refuse with this sentence's reason (a shard must not make its own).
   */
  refuseToCreate?: string;
}

/** Every secret a node's edits need, by kind. */
export function secretKinds(edits: PlannedEdit[]): SecretKind[] {
  return edits.flatMap((e): SecretKind[] => {
    if (e.op === 'secret') return [e.secret];
    if (e.op === 'admin') return ['admin-password'];
    if (e.op === 'network' && e.interfaces.some((i) => i.kind === 'wifi')) return ['wifi'];
    return [];
  });
}

/** What an image with these edits holds that must be kept private (the public key is not a secret). */
export function secretsIn(edits: PlannedEdit[]): string[] {
  const kinds = new Set(secretKinds(edits));
  return (Object.keys(secretNames) as SecretKind[])
    .filter((k) => kinds.has(k) && k !== 'authorized-key' && k !== 'cluster-public-key')
    .map((k) => secretNames[k]);
}

/** Load the values of `kinds` for a cluster; nothing is read when no kind is asked for. */
export async function loadSecrets(
  kinds: Set<SecretKind>,
  cluster: string,
  sources: SecretSources | undefined,
): Promise<SecretValues> {
  const secrets: SecretValues = {};
  if (kinds.size === 0) return secrets;
  if (!sources) throw new Error('the plan needs secrets but the build has no profile to find them beside');
  const { profileFile, admin } = sources;
  if ([...kinds].some((k) => k !== 'join-token')) {
    const refuse = sources.refuseToCreate;
    const stored = await loadOrCreateSecrets(profileFile, cluster, { refuse });
    const { clusterKey } = stored;
    if (kinds.has('admin-password'))
      secrets['admin-password'] = await adminPasswordHash(admin!, stored, profileFile, cluster, { refuse });
    if (kinds.has('wifi')) secrets.wifi = checkWifi(stored.wifi, secretsPath(profileFile, cluster));
    secrets['cluster-public-key'] = `${clusterKey.public}\n`;
    secrets['cluster-key'] = clusterKey.private;
    // Worker images carry only the public key, restricted to running the join script.
    secrets['authorized-key'] = `restrict,command="/usr/local/lib/swarmcard/join" ${clusterKey.public}\n`;
  }
  if (kinds.has('join-token')) {
    const token = (await readFile(sources.joinTokenFile!, 'utf8')).trim();
    if (!/^SWMTKN-1-[\w-]+$/.test(token))
      throw new UserError(
        `${sources.joinTokenFile} does not hold a swarm join token (SWMTKN-1-…); write the output of ` +
          '"docker swarm join-token -q worker" into it.',
      );
    secrets['join-token'] = `${token}\n`;
  }
  return secrets;
}
