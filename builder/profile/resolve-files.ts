/**
 * Resolve files: what the profile names beside itself. Compose files are read now (they go into
 * the manager's image); the join token file must exist but is read at build; the admin's password
 * file is only resolved (a missing one is made at the first build, with a fresh random password).
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { allowHint, escapes } from '../util/confine.js';
import type { LoadedAdmin, LoadedSwarm, Problem, ProfileData } from './types.js';

export async function resolveFiles(
  file: string,
  profile: ProfileData,
): Promise<{ swarm?: LoadedSwarm; admin?: LoadedAdmin; problems: Problem[] }> {
  const profileDir = dirname(resolve(file));
  const problems: Problem[] = [];
  let swarm: LoadedSwarm | undefined;
  if (profile.swarm) {
    const stacks: LoadedSwarm['stacks'] = [];
    for (const [j, stack] of (profile.swarm.stacks ?? []).entries()) {
      const outside = await escapes(resolve(profileDir, stack.compose), profileDir);
      if (outside) {
        problems.push({ path: ['swarm', 'stacks', j, 'compose'], message: escapeMessage(stack.compose, outside) });
        continue;
      }
      const compose = await readFile(resolve(profileDir, stack.compose), 'utf8').catch(() => undefined);
      if (compose === undefined)
        problems.push({
          path: ['swarm', 'stacks', j, 'compose'],
          message: `${stack.compose} does not exist next to the profile; give the path of a compose file`,
        });
      else stacks.push({ name: stack.name, compose, env: stack.env ?? {} });
    }
    const given = profile.swarm.join;
    const join = given && { manager: given.manager, tokenFile: resolve(profileDir, given.tokenFile) };
    const tokenOutside = join && (await escapes(join.tokenFile, profileDir));
    if (tokenOutside)
      problems.push({ path: ['swarm', 'join', 'tokenFile'], message: escapeMessage(given!.tokenFile, tokenOutside) });
    else if (join && !(await readable(join.tokenFile)))
      problems.push({
        path: ['swarm', 'join', 'tokenFile'],
        message:
          `${given!.tokenFile} does not exist next to the profile; ` +
          'put the worker join token (docker swarm join-token -q worker) in it',
      });
    swarm = { ...profile.swarm, stacks, ...(join ? { join } : {}) };
  }
  let admin: LoadedAdmin | undefined;
  if (profile.admin) {
    const passwordFile = profile.admin.passwordFile && resolve(profileDir, profile.admin.passwordFile);
    const outside = passwordFile && (await escapes(passwordFile, profileDir));
    if (outside)
      problems.push({
        path: ['admin', 'passwordFile'],
        message: escapeMessage(profile.admin.passwordFile!, outside),
      });
    admin = { ...profile.admin, ...(passwordFile ? { passwordFile } : {}) };
  }
  return { ...(swarm ? { swarm } : {}), ...(admin ? { admin } : {}), problems };
}

const escapeMessage = (given: string, real: string) =>
  `${given} resolves to ${real}, outside the profile's directory; ${allowHint}`;

const readable = (path: string): Promise<boolean> =>
  readFile(path).then(
    () => true,
    () => false,
  );
