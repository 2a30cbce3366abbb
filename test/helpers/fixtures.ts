/**
 * Fixture images for tests: generated once per run directory (they are deterministic, so a
 * concurrent generation by another test file writes the same bytes and the rename is atomic),
 * then copied per test so no test edits a shared file (balena-image-fs habit).
 */

import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import type { FlavourName } from '../../builder/fixture/flavours.js';
import { makeFixtureImage } from '../../builder/fixture/make-fixture-image.js';

// make test gives the suite a private TMPDIR and keeps the fixture cache outside it.
export const fixtureDir = join(
  process.env.SWARMCARD_TEST_FIXTURES ?? tmpdir(),
  `swarmcard-test-fixtures-${process.getuid?.() ?? 0}`,
);

export async function fixture(name: FlavourName, options: { booted?: boolean } = {}): Promise<string> {
  const path = join(fixtureDir, `${name}${options.booted ? '-booted' : ''}.img`);
  if (
    await stat(path).then(
      (s) => s.isFile(),
      () => false,
    )
  )
    return path;
  await mkdir(fixtureDir, { recursive: true });
  const unique = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  await makeFixtureImage(name, unique, options);
  await rename(unique, path);
  return path;
}

/** A private directory removed when the test ends. */
export async function scratchDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'swarmcard-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A private, sparse copy of a fixture. */
export async function scratchCopy(t: ExecutionContext, source: string, name = 'image.img'): Promise<string> {
  const out = join(await scratchDir(t), name);
  await execa('cp', ['--sparse=always', source, out]);
  return out;
}
