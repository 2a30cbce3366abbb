/**
 * Builder calls that read the environment, run in a child process with their own (child-op.ts):
 * concurrent tests never see each other's settings. A failure comes back as an Error with the
 * original's name and message, so `t.throwsAsync(…, { name: 'ChecksumError' })` works as in-process.
 */

import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { BaseImageSpec, ResolvedBaseImage } from '../../builder/source/base-image.js';

const script = fileURLToPath(new URL('child-op.js', import.meta.url));

async function inChild<T>(op: string, arg: string, env: Record<string, string>): Promise<T> {
  const result = await execa('node', [script, op, arg], { env, reject: false });
  const line = result.stdout.trim().split('\n').at(-1) ?? '';
  let answer: { value?: T; error?: { name: string; message: string } };
  try {
    answer = JSON.parse(line);
  } catch {
    throw new Error(`child-op ${op} exited ${result.exitCode} without an answer: ${result.stderr}`);
  }
  if (answer.error) throw Object.assign(new Error(answer.error.message), { name: answer.error.name });
  return answer.value as T;
}

/** resolveBaseImage with SWARMCARD_CACHE_DIR=cacheDir. */
export function resolveWithCache(cacheDir: string, spec: BaseImageSpec): Promise<ResolvedBaseImage> {
  return inChild('resolve', JSON.stringify(spec), { SWARMCARD_CACHE_DIR: cacheDir });
}

/** Write /etc/secret (mode 0600) into the image's root partition through the given debugfs program. */
export function writeSecretWithDebugfs(image: string, debugfs: string): Promise<void> {
  return inChild('write-secret', image, { SWARMCARD_DEBUGFS: debugfs });
}
