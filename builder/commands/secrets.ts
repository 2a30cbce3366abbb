/**
 * swarmcard secrets PROFILE [--nodes N]
 * Make the secrets a build of the profile needs and does not find (the cluster SSH key, a random
 * admin password, its salted hash), exactly as a first build would, and print where they are —
 * never their values. Sharded builds need this step first: each shard only reads them.
 */
import { log } from '../log.js';
import { planCluster } from '../plan/plan.js';
import { loadProfile } from '../profile/load-profile.js';
import { loadSecrets, secretKinds } from '../secrets/for-build.js';
import { secretsPath } from '../secrets/secrets-file.js';
import { buildEpoch } from '../util/epoch.js';
import { isFile } from '../util/is-file.js';

export async function secretsCommand(profileFile: string, options: { nodes?: number }): Promise<void> {
  const profile = await loadProfile(profileFile, { nodes: options.nodes });
  const plan = planCluster(profile, { epoch: buildEpoch(profile.sourceDateEpoch) });
  const kinds = new Set(plan.nodes.filter((n) => n.board !== 'pc').flatMap((n) => secretKinds(n.edits)));
  if ([...kinds].every((k) => k === 'join-token')) {
    log.step(`the ${plan.cluster} cluster's images need no secrets file: nothing to make`);
    return;
  }
  await loadSecrets(kinds, plan.cluster, {
    profileFile,
    joinTokenFile: profile.swarm?.join?.tokenFile,
    admin: profile.admin,
  });
  // The password file only while it exists: once hashed, builds and shards need the hash alone.
  const passwordFile = kinds.has('admin-password') ? profile.admin?.passwordFile : undefined;
  const files = [
    secretsPath(profileFile, plan.cluster),
    ...(passwordFile && (await isFile(passwordFile)) ? [passwordFile] : []),
  ];
  for (const file of files) process.stdout.write(`${file}\n`);
  log.step(
    `the ${plan.cluster} cluster's secrets are ready; give every build and shard these same files, kept private`,
  );
}
