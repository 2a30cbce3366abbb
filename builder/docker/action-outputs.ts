/**
 * The GitHub Action's glue (action.yml and the release workflow → `make action-…`), printing
 * `name=value` lines for $GITHUB_OUTPUT:
 *   cache-key          (stdin: `swarmcard plan --json`) key=swarmcard-base-<the bases' sha256 pins>; an
 *                      unpinned base is keyed by the sha256 of its location instead (pin it for exact keys)
 *   outputs OUT        (stdin: `swarmcard build --json` or `merge --json`) dir=OUT/<cluster> and
 *                      manifest=OUT/<cluster>/manifest.json
 *   secrets-file DIR   (stdin: `swarmcard plan --json`) writes INPUT_SECRETS to DIR/<cluster>.secrets.yaml,
 *                      mode 0600 in a 0700 folder; prints nothing, and never the secrets
 *   shard-list N       count=N and list=["1/N",…,"N/N"], the release workflow's shard matrix
 * BASE (the action's base input) replaces the profile's bases, as --base does.
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface CliJson {
  error?: { exitCode: number };
  cluster: string;
  nodes: { base?: { image: string; sha256?: string } }[];
}

const [mode, arg] = process.argv.slice(2);
/**
 * The CLI's answer. When it failed it has said why on stderr (its answer is then an error
 * document, or nothing if it never started): this step fails too, and says no more.
 */
function stdinJson(): CliJson {
  const text = readFileSync(0, 'utf8');
  const answer = (text.trim() === '' ? { error: { exitCode: 1 } } : JSON.parse(text)) as CliJson;
  if (answer.error) process.exit(answer.error.exitCode);
  return answer;
}
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const MAX_SHARDS = 256; // GitHub's limit on the jobs of one matrix

function cacheKey(input: CliJson): string {
  const override = process.env.BASE;
  const keys = new Set<string>();
  for (const { base } of input.nodes) {
    if (!base) continue;
    if (override) keys.add(`unpinned-${sha256(override)}`);
    else keys.add(base.sha256 ?? `unpinned-${sha256(base.image)}`);
  }
  return `key=swarmcard-base-${[...keys].sort().join('-') || 'none'}\n`;
}

function writeSecretsFile(dir: string, cluster: string): void {
  const text = process.env.INPUT_SECRETS ?? '';
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = join(dir, `${cluster}.secrets.yaml`);
  writeFileSync(file, text.endsWith('\n') ? text : `${text}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

function shardList(count: string): string | undefined {
  const n = Number(count);
  if (!/^[1-9]\d*$/.test(count) || n > MAX_SHARDS) return undefined;
  const list = Array.from({ length: n }, (_, i) => `${i + 1}/${n}`);
  return `count=${n}\nlist=${JSON.stringify(list)}\n`;
}

if (mode === 'cache-key') {
  process.stdout.write(cacheKey(stdinJson()));
} else if (mode === 'outputs' && arg) {
  const dir = join(arg, stdinJson().cluster);
  process.stdout.write(`dir=${dir}\nmanifest=${join(dir, 'manifest.json')}\n`);
} else if (mode === 'secrets-file' && arg) {
  writeSecretsFile(arg, stdinJson().cluster);
} else if (mode === 'shard-list' && arg !== undefined) {
  const lines = shardList(arg);
  if (lines) process.stdout.write(lines);
  else {
    process.stderr.write(
      `error: the number of shards must be a whole number from 1 to ${MAX_SHARDS} ` +
        `(the workflow's shards input or the SWARMCARD_SHARDS variable); it is "${arg}".\n`,
    );
    process.exitCode = 1;
  }
} else {
  process.stderr.write('usage: action-outputs cache-key | outputs OUT | secrets-file DIR | shard-list N\n');
  process.exitCode = 2;
}
