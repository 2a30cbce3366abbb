/**
 * swarmcard validate PROFILE [--nodes N]
 * Checks a profile and its overlays' parameters; every problem is printed with its YAML line.
 * It refuses whatever a build would refuse in the profile, without reading an image; a local base
 * image that does not exist yet is only a warning (it may be downloaded or built before the build).
 */
import { stat } from 'node:fs/promises';
import { log } from '../log.js';
import { loadProfile } from '../profile/load-profile.js';

export async function validateCommand(profileFile: string, options: { nodes?: number } = {}): Promise<void> {
  const profile = await loadProfile(profileFile, { nodes: options.nodes });
  const bases = new Set(profile.nodes.flatMap((n) => (n.base ? [n.base.image] : [])));
  for (const image of [...bases].sort()) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(image)) continue;
    const found = await stat(image).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!found) log.warn(`the base image ${image} does not exist yet; a build needs it there (or --base IMAGE).`);
  }
  process.stdout.write(`${profileFile} is valid: cluster ${profile.cluster}, ${profile.nodes.length} nodes\n`);
}
