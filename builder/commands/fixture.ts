/**
 * swarmcard fixture FLAVOUR OUT [--booted]
 * Writes a small Raspberry Pi OS-shaped image (jessie … trixie, armhf/arm64) to try swarmcard
 * without downloading a real one; `--booted` adds what a booted system leaves behind.
 */
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { type FlavourName, flavourNames } from '../fixture/flavours.js';
import { makeFixtureImage } from '../fixture/make-fixture-image.js';
import { log } from '../log.js';

export async function fixtureCommand(name: string, out: string, options: { booted: boolean }): Promise<void> {
  if (!(flavourNames as readonly string[]).includes(name)) {
    throw new UserError(`"${name}" is not a fixture flavour; use one of ${flavourNames.join(', ')}.`);
  }
  const folder = dirname(resolve(out));
  const isFolder = await stat(folder).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isFolder)
    throw new UserError(`the folder ${folder} for ${out} does not exist; create it or choose another OUT.`);
  // A mistyped OUT must not replace a real image (a download, a built node).
  if (
    await stat(out).then(
      () => true,
      () => false,
    )
  )
    throw new UserError(`${out} already exists; a fixture never replaces a file: remove it or choose another OUT.`);
  await makeFixtureImage(name as FlavourName, out, options);
  log.info(`wrote ${out} (${name}${options.booted ? ', booted' : ''})`);
}
