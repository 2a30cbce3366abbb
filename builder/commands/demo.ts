/**
 * swarmcard demo [--out DIR] [--ext4-backend debugfs|loop]
 * The main job on the built-in demo base (a trixie armhf fixture): inspect the base, then build the
 * pizero-otg cluster (host + 4 workers) from it and list the images. A real Raspberry Pi OS image
 * goes through `swarmcard build profiles/pizero-otg.yaml --base IMAGE`.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FlavourName } from '../fixture/flavours.js';
import { makeFixtureImage } from '../fixture/make-fixture-image.js';
import type { Ext4Backend } from '../fs/partition.js';
import { inspectImage } from '../image/inspect.js';
import { log } from '../log.js';
import { cacheDir } from '../source/cache.js';
import { makeFolders } from '../util/make-folders.js';
import { buildCommand } from './build.js';
import { renderReport } from './inspect.js';

export const DEMO_FLAVOUR: FlavourName = 'trixie-armhf';
export const DEMO_PROFILE = fileURLToPath(new URL('../../../profiles/pizero-otg.yaml', import.meta.url));

/** The built-in demo base: generated once into the cache. */
export async function demoBaseImage(): Promise<string> {
  const path = join(cacheDir(), 'demo', `${DEMO_FLAVOUR}.img`);
  if (
    !(await stat(path).then(
      (s) => s.isFile(),
      () => false,
    ))
  ) {
    await makeFolders(join(cacheDir(), 'demo'));
    log.step(`generating the built-in demo base image (${DEMO_FLAVOUR})`);
    await makeFixtureImage(DEMO_FLAVOUR, path);
  }
  return path;
}

export async function demoCommand(options: { out: string; ext4Backend?: Ext4Backend; version: string }): Promise<void> {
  const base = await demoBaseImage();
  log.step(`inspecting the built-in demo base ${base}`);
  process.stdout.write(renderReport(await inspectImage(base)));
  log.step(`building the pizero-otg cluster (1 host + 4 Pi Zero workers) from it`);
  await buildCommand(DEMO_PROFILE, {
    base,
    out: options.out,
    json: false,
    ext4Backend: options.ext4Backend,
    version: options.version,
    release: {},
  });
}
