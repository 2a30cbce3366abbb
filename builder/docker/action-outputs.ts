/**
 * The GitHub Action's glue (action.yml → `make action-cache-key` / `make action-build`), reading the
 * CLI's --json output on stdin and printing `name=value` lines for $GITHUB_OUTPUT:
 *   cache-key      (stdin: `swarmcard plan --json`) key=swarmcard-base-<the bases' sha256 pins>; an
 *                  unpinned base is keyed by the sha256 of its location instead (pin it for exact keys)
 *   outputs OUT    (stdin: `swarmcard build --json`) dir=OUT/<cluster> and manifest=OUT/<cluster>/manifest.json
 * BASE (the action's base input) replaces the profile's bases, as --base does.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const [mode, out] = process.argv.slice(2);
const input = JSON.parse(readFileSync(0, 'utf8')) as {
  cluster: string;
  nodes: { base?: { image: string; sha256?: string } }[];
};
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

if (mode === 'cache-key') {
  const override = process.env.BASE;
  const keys = new Set<string>();
  for (const { base } of input.nodes) {
    if (!base) continue;
    if (override) keys.add(`unpinned-${sha256(override)}`);
    else keys.add(base.sha256 ?? `unpinned-${sha256(base.image)}`);
  }
  process.stdout.write(`key=swarmcard-base-${[...keys].sort().join('-') || 'none'}\n`);
} else if (mode === 'outputs' && out) {
  const dir = join(out, input.cluster);
  process.stdout.write(`dir=${dir}\nmanifest=${join(dir, 'manifest.json')}\n`);
} else {
  process.stderr.write('usage: action-outputs cache-key | outputs OUT (JSON on stdin)\n');
  process.exitCode = 2;
}
