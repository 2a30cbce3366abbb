/** Run the built CLI as a user would, capturing exit code, stdout and stderr separately. */

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { fixtureDir } from './fixtures.js';

export const cliPath = fileURLToPath(new URL('../../builder/cli.js', import.meta.url));
const shippedProfiles = fileURLToPath(new URL('../../../profiles/', import.meta.url));

/**
 * The secrets of builds from the repository's own profiles: kept beside the fixture cache, so the
 * suite never writes into the checkout (a fresh clone has no secrets file and must stay clean).
 */
export const shippedSecretsDir = join(fixtureDir, 'secrets');

export async function swarmcard(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; wrap?: string[]; timeout?: number } = {},
) {
  const shipped = args.some((a) => a.startsWith(shippedProfiles));
  // The file itself, as the installed `swarmcard` runs: its first line starts Node with its flags.
  // `wrap` runs it through another program first (nsenter: inside a test's own mount namespace).
  const [file, ...rest] = [...(options.wrap ?? []), cliPath, ...args];
  const result = await execa(file!, rest, {
    reject: false,
    env: { NO_COLOR: '1', ...(shipped ? { SWARMCARD_SECRETS_DIR: shippedSecretsDir } : {}), ...options.env },
    cwd: options.cwd,
    timeout: options.timeout, // a hang detector: a run it stops exits 143
  });
  if (result.code === 'EACCES') throw new Error(`${cliPath} is not executable: compile with \`make build\``);
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
}
