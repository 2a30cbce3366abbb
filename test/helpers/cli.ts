/** Run the built CLI as a user would, capturing exit code, stdout and stderr separately. */

import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const cliPath = fileURLToPath(new URL('../../builder/cli.js', import.meta.url));

export async function swarmcard(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}) {
  const result = await execa('node', [cliPath, ...args], {
    reject: false,
    env: { NO_COLOR: '1', ...options.env },
    cwd: options.cwd,
  });
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
}
