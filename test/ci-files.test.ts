/**
 * The GitHub Action (action.yml) and the release workflow: linted against GitHub's schemas with
 * action-validator (what `make lint` runs), and every `run:` step is a Makefile target or the CLI.
 * The action's steps themselves run in test/docker-builder.test.ts (they need a Docker engine).
 */

import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { execa } from 'execa';
import { parse } from 'yaml';
import { swarmcard } from './helpers/cli.js';
import { scratchDir } from './helpers/fixtures.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const files = ['action.yml', '.github/workflows/release.yml'];

interface Step {
  run?: string;
  uses?: string;
}

async function steps(file: string): Promise<Step[]> {
  const doc = parse(await readFile(join(root, file), 'utf8')) as {
    runs?: { steps: Step[] };
    jobs?: Record<string, { steps: Step[] }>;
  };
  return doc.runs ? doc.runs.steps : Object.values(doc.jobs ?? {}).flatMap((j) => j.steps);
}

const validate = (file: string) =>
  execa(join(root, 'node_modules/.bin/action-validator'), [file], { reject: false, cwd: root });

for (const file of files)
  test(`${file} passes action-validator`, async (t) => {
    const result = await validate(file);
    t.is(result.exitCode, 0, result.stdout + result.stderr);
  });

test('action-validator refuses a broken action.yml (the lint is real)', async (t) => {
  const dir = await scratchDir(t);
  const broken = join(dir, 'action.yml');
  const text = await readFile(join(root, 'action.yml'), 'utf8');
  t.true(text.includes('  using: composite'));
  await writeFile(broken, text.replace('  using: composite', '  using: compost'));
  const result = await validate(broken);
  t.is(result.exitCode, 1);
  t.regex(result.stdout + result.stderr, /using/);
});

test('every run: step of the action and the workflow is a Makefile target or the CLI', async (t) => {
  const makefile = await readFile(join(root, 'Makefile'), 'utf8');
  const targets = new Set([...makefile.matchAll(/^([a-z][\w-]*):/gm)].map((m) => m[1]));
  let runs = 0;
  for (const file of files) {
    for (const step of await steps(file)) {
      if (step.run === undefined) continue;
      runs++;
      const make = /(?:^|\s)make(?:\s+(?:--?[\w-]+(?:\s+"[^"]*")?|\S+=\S+))*\s+([a-z][\w-]*)\s*$/.exec(step.run.trim());
      const cli = /^(?:node\s+\S*build\/builder\/cli\.js|swarmcard)\s/.test(step.run.trim());
      t.true((make !== null && targets.has(make[1]!)) || cli, `${file}: "${step.run.trim()}"`);
    }
  }
  t.true(runs >= 3);
});

const glue = join(root, 'build/builder/docker/action-outputs.js');

test("the action's secrets input becomes a 0600 secrets file in a 0700 folder, never printed", async (t) => {
  const dir = join(await scratchDir(t), 'secrets');
  const secret = 'clusterKey:\n  private: PRIVATE KEY 1234';
  const result = await execa('node', [glue, 'secrets-file', dir], {
    input: JSON.stringify({ cluster: 'pi4-ethernet', nodes: [] }),
    env: { INPUT_SECRETS: secret },
  });
  t.is(result.stdout + result.stderr, '');
  t.is(await readFile(join(dir, 'pi4-ethernet.secrets.yaml'), 'utf8'), `${secret}\n`);
  t.is((await stat(join(dir, 'pi4-ethernet.secrets.yaml'))).mode & 0o777, 0o600);
  t.is((await stat(dir)).mode & 0o777, 0o700);
});

test("a failed command's answer fails the action's step with its exit code, and nothing more is said", async (t) => {
  const dir = await scratchDir(t);
  // As the action pipes it: the CLI's error document (or nothing at all) into the glue.
  const failed = await swarmcard(['build', join(root, 'profiles/pizero-otg.yaml'), '--json', '--base', join(dir, 'x')]);
  t.is(failed.exitCode, 1);
  for (const [input, code] of [
    [failed.stdout, 1],
    ['', 1],
    [JSON.stringify({ error: { exitCode: 2, message: 'internal error: x' } }), 2],
  ] as const) {
    for (const mode of ['outputs', 'secrets-file', 'cache-key']) {
      const result = await execa('node', [glue, mode, join(dir, 'out')], { input, reject: false });
      t.is(result.exitCode, code, `${mode} ${input}`);
      t.is(result.stdout + result.stderr, '', `${mode}: nothing more said`);
    }
  }
  t.false(existsSync(join(dir, 'out')), 'no secrets folder made');
});

test('the release workflow gets its shard matrix from a count, and a bad count is one sentence', async (t) => {
  const list = async (count: string) => execa('node', [glue, 'shard-list', count], { reject: false });
  t.is((await list('3')).stdout, 'count=3\nlist=["1/3","2/3","3/3"]');
  t.is((await list('1')).stdout, 'count=1\nlist=["1/1"]');
  for (const bad of ['0', '-2', '2.5', 'eight', '257', '']) {
    const result = await list(bad);
    t.is(result.exitCode, 1, bad);
    t.is(result.stdout, '');
    t.regex(result.stderr, /^error: the number of shards must be a whole number from 1 to 256 .*; it is ".*"\.$/);
  }
});
