/**
 * `swarmcard build --in-docker`, for real: a private Docker engine, the repository's Dockerfile
 * built as it is (its base image made from Debian packages when absent: no registry here), builds
 * of the pizero-otg profile through it compared byte for byte with each other and with a host
 * build, run as a non-root caller, and interrupted.
 */

import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { parse as parseYaml } from 'yaml';
import { parseDumpe2fs, parseTestb, testbFirst } from '../builder/formats/dumpe2fs.js';
import { isFile } from '../builder/util/is-file.js';
import { cliPath, swarmcard } from './helpers/cli.js';
import { dockerfileBase, type Engine, ensureBaseImage, startEngine } from './helpers/docker-engine.js';
import { fixture, scratchDir } from './helpers/fixtures.js';
import { partitionOffsets } from './helpers/independent.js';
import { missingPrograms, missingRoot, testIf } from './helpers/requires.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const profile = join(root, 'profiles', 'pizero-otg.yaml');
const version = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const tag = `swarmcard:${version}`;
/** A uid:gid no file here belongs to: the caller of the ownership test. */
const CALLER = 4242;

const missing =
  (missingRoot() && `${missingRoot()} (a Docker engine)`) ??
  (await missingPrograms(['dockerd', 'docker', 'mmdebstrap', 'setpriv']));
const dockerTest = testIf(missing, { serial: true });
const dockerClientMissing = await missingPrograms(['docker']);

let engine: Engine | undefined;
let shared: Work | undefined;
if (!missing) {
  test.before(async () => {
    // Shared by the builds that must use one cluster key (the same secrets file).
    const dir = await mkdtemp(join(tmpdir(), 'swarmcard-docker-'));
    await mkdir(join(dir, 'secrets'));
    shared = { dir, base: await fixture('bookworm-armhf'), secrets: join(dir, 'secrets') };
    engine = await startEngine();
    await ensureBaseImage(engine, await dockerfileBase(join(root, 'Dockerfile')));
  });
  test.after.always(async () => {
    try {
      await engine?.stop();
    } finally {
      if (shared) await rm(shared.dir, { recursive: true, force: true });
    }
  });
}

/** Every file under `dir` (relative) with its bytes. */
async function files(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true }))
    if (e.isFile())
      out.set(join(e.parentPath, e.name).slice(dir.length + 1), await readFile(join(e.parentPath, e.name)));
  return out;
}

/** The names of the files whose bytes differ (or exist on one side only). */
function differing(a: Map<string, Buffer>, b: Map<string, Buffer>): string[] {
  return [...new Set([...a.keys(), ...b.keys()])]
    .filter((f) => !a.get(f) || !b.get(f) || !a.get(f)!.equals(b.get(f)!))
    .sort();
}

const env = () => ({ DOCKER_HOST: engine!.host });

interface Work {
  dir: string;
  base: string;
  secrets: string;
}
const work = (): Work => shared!;

const build = (w: Work, out: string, extra: string[] = []) =>
  swarmcard(['build', profile, '--base', w.base, '--nodes', '1', '--out', join(w.dir, out), ...extra], {
    cwd: w.dir,
    env: { ...env(), SWARMCARD_SECRETS_DIR: w.secrets },
  });

dockerTest(
  "the builder image is built from the repository's Dockerfile on first use: small, unprivileged",
  async (t) => {
    t.timeout(20 * 60_000);
    const w = work();
    // Whatever an earlier run left in this engine: the first use builds.
    await engine!.docker(['image', 'rm', '--force', tag]);
    const started = Date.now();
    const first = await build(w, 'docker-a', ['--in-docker']);
    t.is(first.exitCode, 0, first.stderr);
    t.log(`first --in-docker build, image included: ${((Date.now() - started) / 1000).toFixed(0)} s`);
    t.regex(first.stderr, /building the builder image swarmcard:\S+ \(once per version\): docker build --network host/);
    t.regex(first.stderr, /\$ docker run --rm --init --name swarmcard-build-\S+ --user 0:0 /);
    const inspect = await engine!.docker([
      'image',
      'inspect',
      '--format',
      '{{.Size}} {{.Config.User}} {{json .Config.Entrypoint}}',
      tag,
    ]);
    const [size, user, entrypoint] = inspect.stdout.split(' ');
    t.log(`builder image ${tag}: ${(Number(size) / 1e6).toFixed(0)} MB`);
    t.is(user, '10001:10001');
    t.deepEqual(JSON.parse(entrypoint!), await expectedEntrypoint());
    t.true(Number(size) < 400e6, `the image is ${size} bytes`);
    const inside = await engine!.docker(['run', '--rm', '--network', 'none', tag, '--version']);
    t.is(inside.stdout.trim(), version);
    const node = await engine!.docker(['run', '--rm', '--network', 'none', '--entrypoint', 'node', tag, '--version']);
    const [major, minor] = node.stdout.trim().slice(1).split('.').map(Number);
    t.true(major! > 20 || (major === 20 && minor! >= 19), node.stdout);
    // Exactly the production dependencies reached the image (package-lock.json's top-level entries).
    const listing = await engine!.docker([
      'run',
      '--rm',
      '--network',
      'none',
      '--entrypoint',
      'sh',
      tag,
      '-c',
      'cd /opt/swarmcard/node_modules && ls -d -- * @*/* 2>/dev/null; true',
    ]);
    const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const topLevel = Object.entries(lock.packages)
      .filter(([path]) => /^node_modules\/(@[^/]+\/)?[^/@][^/]*$/.test(path))
      .map(([path, entry]) => [path.slice('node_modules/'.length), entry.dev === true] as const);
    // `*` also lists the scope folders themselves (@sinclair); their packages come from `@*/*`.
    const inImage = listing.stdout.split('\n').filter((l) => l !== '' && (!l.startsWith('@') || l.includes('/')));
    t.deepEqual(
      inImage.sort(),
      topLevel
        .filter(([, dev]) => !dev)
        .map(([name]) => name)
        .sort(),
    );
  },
);

dockerTest('two builds through the builder image give identical bytes; the manifest names the image', async (t) => {
  t.timeout(10 * 60_000);
  const w = work();
  const started = Date.now();
  const second = await build(w, 'docker-b', ['--in-docker']);
  t.is(second.exitCode, 0, second.stderr);
  t.log(`second --in-docker build (image present): ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.notRegex(second.stderr, /building the builder image/);
  const a = await files(join(w.dir, 'docker-a'));
  const b = await files(join(w.dir, 'docker-b'));
  t.deepEqual(differing(a, b), []);
  t.true(a.has('pizero-otg/01-otg1.img'));
  const manifest = JSON.parse(a.get('pizero-otg/manifest.json')!.toString());
  const id = (await engine!.docker(['image', 'inspect', '--format', '{{.Id}}', tag])).stdout.trim();
  t.deepEqual(manifest.builder, { image: tag, id, node: manifest.builder.node });
  const e2fsprogs = await engine!.docker(['run', '--rm', '--network', 'none', '--entrypoint', 'debugfs', tag, '-V']);
  t.is(manifest.tools.e2fsprogs, /debugfs (\S+)/.exec(e2fsprogs.stderr)?.[1]);
  t.regex(manifest.tools.mtools, /^\d+\.\d+/);
});

dockerTest('a build failing inside the container answers --json with one error document', async (t) => {
  const w = work();
  await writeFile(join(w.dir, 'notes.img'), 'not an image\n');
  const args = ['build', profile, '--base', join(w.dir, 'notes.img'), '--out', join(w.dir, 'docker-bad')];
  const result = await swarmcard([...args, '--in-docker', '--json'], {
    cwd: w.dir,
    env: { ...env(), SWARMCARD_SECRETS_DIR: w.secrets },
  });
  t.is(result.exitCode, 1, result.stderr);
  // Two documents (the container's and the caller's) would not parse as one.
  const answer = JSON.parse(result.stdout) as { error: { exitCode: number; message: string } };
  t.is(answer.error.exitCode, 1);
  t.regex(answer.error.message, /notes\.img/);
});

dockerTest('a host build and a Docker build of the same profile and base: the images match', async (t) => {
  t.timeout(10 * 60_000);
  const w = work();
  const started = Date.now();
  const host = await build(w, 'host');
  t.is(host.exitCode, 0, host.stderr);
  t.log(`host build: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const onHost = await files(join(w.dir, 'host'));
  const inDocker = await files(join(w.dir, 'docker-a'));
  const differ = differing(onHost, inDocker);
  const [hm, dm] = [onHost, inDocker].map((f) => JSON.parse(f.get('pizero-otg/manifest.json')!.toString()));
  t.log(
    `host tools ${JSON.stringify(hm.tools)}, builder image tools ${JSON.stringify(dm.tools)}; differing: ${differ}`,
  );
  // Different e2fsprogs and mtools write the same bytes; only the manifest (and the sum over it) says who built.
  t.deepEqual(differ, ['pizero-otg/SHA256SUMS', 'pizero-otg/manifest.json']);
  const { builder, tools, ...rest } = dm;
  t.truthy(builder);
  t.deepEqual({ ...hm, tools: undefined }, { ...rest, tools: undefined });
  t.notDeepEqual(tools, undefined);
});

dockerTest(
  "a non-root caller without mtools or e2fsprogs: every output is the caller's, modes as on the host",
  async (t) => {
    t.timeout(10 * 60_000);
    const w = work();
    // The caller must reach its folder and the engine's socket inside the suite's private temp
    // folder (mode 0700): search permission only (no listing) while this test runs.
    const temp = tmpdir();
    const mode = (await stat(temp)).mode & 0o7777;
    await chmod(temp, mode | 0o011);
    t.teardown(() => chmod(temp, mode));
    const dir = await scratchDir(t);
    await execa('mkdir', [
      '-p',
      join(dir, 'secrets'),
      join(dir, 'root-secrets'),
      join(dir, 'home'),
      join(dir, 'tmp'),
      join(dir, 'bin'),
    ]);
    // A new user's PATH: node and docker, none of the image tools (debugfs, mcopy, sfdisk, xz, …).
    for (const program of ['node', 'docker'])
      await symlink((await execa('sh', ['-c', 'command -v "$0"', program])).stdout.trim(), join(dir, 'bin', program));
    await execa('chown', ['-R', `${CALLER}:${CALLER}`, dir]);
    const result = await execa(
      '/usr/bin/setpriv',
      [
        `--reuid=${CALLER}`,
        `--regid=${CALLER}`,
        '--clear-groups',
        join(dir, 'bin', 'node'),
        cliPath,
        'build',
        profile,
        '--in-docker',
        '--base',
        w.base,
        '--nodes',
        '1',
        '--out',
        join(dir, 'dist'),
      ],
      {
        reject: false,
        cwd: dir,
        extendEnv: false,
        env: {
          ...env(),
          PATH: join(dir, 'bin'),
          NO_COLOR: '1',
          HOME: join(dir, 'home'),
          TMPDIR: join(dir, 'tmp'),
          SWARMCARD_SECRETS_DIR: join(dir, 'secrets'),
        },
      },
    );
    t.is(result.exitCode, 0, result.stderr);
    t.regex(result.stderr, new RegExp(`--user ${CALLER}:${CALLER} `));
    const secrets = await stat(join(dir, 'secrets', 'pizero-otg.secrets.yaml'));
    t.is(secrets.uid, CALLER);
    t.is(secrets.mode & 0o777, 0o600);
    // The reference: the same build on the host, as root (modes only: it has its own cluster key).
    const reference = await build({ ...w, secrets: join(dir, 'root-secrets') }, 'host-reference');
    t.is(reference.exitCode, 0, reference.stderr);
    const hostDir = join(w.dir, 'host-reference', 'pizero-otg');
    const out = join(dir, 'dist', 'pizero-otg');
    const names = (await readdir(out)).sort();
    t.deepEqual(names, (await readdir(hostDir)).sort());
    for (const name of ['.', ...names]) {
      const [mine, reference] = [await stat(join(out, name)), await stat(join(hostDir, name))];
      t.is(mine.uid, CALLER, name);
      t.is(mine.gid, CALLER, name);
      t.is(mine.mode & 0o7777, reference.mode & 0o7777, name);
    }
    // Nothing left in the caller's temp folder (the account files); the download cache is the caller's.
    t.deepEqual(await readdir(join(dir, 'tmp')), []);
    t.is((await stat(join(dir, 'home', '.cache', 'swarmcard'))).uid, CALLER);
  },
);

dockerTest('Ctrl-C during an --in-docker build: exit 130, no container, nothing half-written', async (t) => {
  t.timeout(5 * 60_000);
  const w = work();
  const out = join(w.dir, 'interrupted');
  const child = execa(
    'node',
    [cliPath, 'build', profile, '--in-docker', '--base', w.base, '--nodes', '3', '--out', out],
    { reject: false, cwd: w.dir, env: { ...env(), NO_COLOR: '1', SWARMCARD_SECRETS_DIR: w.secrets } },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  // Interrupt once the CLI inside is writing the first image.
  const deadline = Date.now() + 120_000;
  while (!/cloning, editing/.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.regex(stderr, /cloning, editing/);
  const running = await engine!.docker(['ps', '--quiet', '--filter', 'name=swarmcard-build-']);
  t.not(running.stdout.trim(), '', 'the container runs');
  child.kill('SIGINT');
  const result = await child;
  t.is(result.exitCode, 130, stderr);
  t.notRegex(stderr, /internal error/);
  const left = await engine!.docker(['ps', '--all', '--quiet', '--filter', 'name=swarmcard-build-']);
  t.is(left.stdout.trim(), '', 'no container is left');
  const written = await readdir(out, { recursive: true }).catch(() => []);
  t.deepEqual(
    written.filter((f) => /\.partial|\.tmp/.test(f)),
    [],
    `left in the output folder: ${written}`,
  );
});

/** Node started as the CLI's first line starts it (`#!/usr/bin/env -S node FLAGS…`), on the CLI. */
async function expectedEntrypoint(): Promise<string[]> {
  const flags = (await readFile(cliPath, 'utf8')).split('\n', 1)[0]!.split(' ').slice(3);
  return ['node', ...flags, '/opt/swarmcard/build/builder/cli.js'];
}

test("the Dockerfile's ENTRYPOINT starts Node with the flags of the CLI's first line", async (t) => {
  const dockerfile = await readFile(join(root, 'Dockerfile'), 'utf8');
  const entrypoint = /^ENTRYPOINT (.*)$/m.exec(dockerfile)?.[1];
  t.truthy(entrypoint, 'the Dockerfile has an ENTRYPOINT line');
  const expected = await expectedEntrypoint();
  t.true(expected.length > 2, `the CLI's first line gives Node flags: ${expected.join(' ')}`);
  t.deepEqual(JSON.parse(entrypoint!), expected);
});

test('--engine is refused without --in-docker, and an engine that is not installed is named', async (t) => {
  const base = await fixture('bookworm-armhf');
  const stray = await swarmcard(['build', profile, '--base', base, '--engine', 'docker']);
  t.is(stray.exitCode, 1);
  t.is(stray.stderr.trim(), 'error: --engine only applies with --in-docker; add --in-docker or leave it out.');
  const absent = await swarmcard(['build', profile, '--base', base, '--in-docker', '--engine', 'podman'], {
    env: { SWARMCARD_PODMAN: '/nonexistent/podman' },
  });
  t.is(absent.exitCode, 1);
  t.regex(absent.stderr, /podman/);
  const loop = await swarmcard(['build', profile, '--base', base, '--in-docker', '--ext4-backend', 'loop']);
  t.is(loop.exitCode, 1);
  t.regex(loop.stderr, /--ext4-backend loop needs root and loop devices/);
});

test('debugfs testb and dumpe2fs agree on the blocks in use (the bmap where dumpe2fs is ≥ 1.47.1)', async (t) => {
  const image = await fixture('trixie-arm64');
  const { root: offset } = await partitionOffsets(image);
  const device = `${image}?offset=${offset}`;
  const dumped = parseDumpe2fs((await execa('dumpe2fs', [device])).stdout);
  const first = testbFirst(dumped.firstBlock);
  const testb = await execa('debugfs', ['-R', `testb ${first} ${dumped.blocksCount - first}`, device]);
  const parsed = parseTestb(testb.stdout, dumped);
  t.true(dumped.free.length > 0);
  t.deepEqual(parsed.free, dumped.free);
  t.throws(() => parseTestb(testb.stdout.replace(/\nBlock \d+ [^\n]*\n/, '\n'), dumped), {
    message: /block \d+ where/,
  });
});

interface ActionStep {
  if?: string;
  run?: string;
  env?: Record<string, string>;
}

/**
 * The action's run: steps as GitHub runs them: bash, the step's env with `${{ inputs.* }}` and
 * `${{ runner.temp }}` filled in, GITHUB_ACTION_PATH, GITHUB_WORKSPACE and GITHUB_OUTPUT set, each
 * step's `if:` (the only forms action.yml uses: an input compared with '') decided. Returns the
 * action's outputs as action.yml maps them, and the steps' stderr.
 */
async function runAction(
  t: ExecutionContext,
  workspace: string,
  inputs: Record<string, string>,
): Promise<{ outputs: Record<string, string>; stderr: string }> {
  const runnerTemp = await scratchDir(t);
  const output = join(runnerTemp, 'github-output');
  const action = parseYaml(await readFile(join(root, 'action.yml'), 'utf8')) as {
    runs: { steps: ActionStep[] };
    outputs: Record<string, { value: string }>;
  };
  const fill = (value: string) =>
    value
      .replace(/\$\{\{ inputs\.([\w-]+) \}\}/g, (_, name: string) => inputs[name] ?? '')
      .replace('${{ runner.temp }}', runnerTemp);
  const runs = (step: ActionStep) => {
    if (step.if === undefined) return true;
    const test = /^inputs\.([\w-]+) (==|!=) ''$/.exec(step.if);
    if (!test) throw new Error(`action.yml: an if: this runner does not know: ${step.if}`);
    return ((inputs[test[1]!] ?? '') === '') === (test[2] === '==');
  };
  let stderr = '';
  for (const step of action.runs.steps.filter((s) => s.run && runs(s))) {
    const stepEnv = Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, fill(v)]));
    const result = await execa('bash', ['-e', '-c', step.run!], {
      reject: false,
      cwd: workspace,
      env: {
        ...env(),
        ...stepEnv,
        NO_COLOR: '1',
        GITHUB_ACTION_PATH: root,
        GITHUB_WORKSPACE: workspace,
        GITHUB_OUTPUT: output,
      },
    });
    t.is(result.exitCode, 0, `${step.run}\n${result.stderr}`);
    stderr += result.stderr;
  }
  const steps = Object.fromEntries(
    (await readFile(output, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => l.split(/=(.*)/s).slice(0, 2)),
  );
  // `steps.build.outputs.dir || steps.merge.outputs.dir`: only one of the two steps ran.
  const outputs = Object.fromEntries(
    Object.entries(action.outputs).map(([name, { value }]) => {
      const names = [...value.matchAll(/steps\.[\w-]+\.outputs\.([\w-]+)/g)].map((m) => m[1]!);
      return [name, steps[names[0]!] ?? ''];
    }),
  );
  return { outputs: { ...steps, ...outputs }, stderr };
}

dockerTest("the GitHub Action's steps build a profile and give its folder and manifest", async (t) => {
  t.timeout(10 * 60_000);
  const w = work();
  // The workspace: the user's repository, with the profile in it (and its secrets file, once built).
  await execa('cp', ['-r', join(root, 'profiles'), join(w.dir, 'profile')]);
  const { outputs } = await runAction(t, w.dir, {
    profile: 'profile/pizero-otg.yaml',
    base: w.base,
    nodes: '1',
    compress: 'zst none',
    'release-url': 'https://example.org/r/v1',
    out: 'action-dist',
  });
  t.regex(outputs.key!, /^swarmcard-base-unpinned-[0-9a-f]{64}$/);
  t.is(outputs.dir, 'action-dist/pizero-otg');
  t.is(outputs.manifest, 'action-dist/pizero-otg/manifest.json');
  const manifest = JSON.parse(await readFile(join(w.dir, outputs.manifest!), 'utf8'));
  t.is(manifest.builder.image, tag);
  const listed = (await readdir(join(w.dir, outputs.dir!))).sort();
  t.true(
    listed.includes('01-otg1.img.zst') && listed.includes('01-otg1.img') && listed.includes('imager.json'),
    `${listed}`,
  );
  const imager = await readFile(join(w.dir, outputs.dir!, 'imager.json'), 'utf8');
  t.true(imager.includes('https://example.org/r/v1/'));
});

/**
 * The release workflow's sharded path: two matrix jobs build a shard each through the action, with
 * the cluster's secrets file given as the secrets input (as from a repository secret), the artifacts
 * arrive as download-artifact leaves them, and the action's merge gives the release a host build of
 * every node gives (the manifest differs only by its builder record, and SHA256SUMS by that line).
 */
dockerTest("the action's shard and merge inputs give one build's release, secrets from the input", async (t) => {
  t.timeout(15 * 60_000);
  const w = work();
  const workspace = await scratchDir(t);
  await execa('cp', ['-r', join(root, 'profiles'), join(workspace, 'profile')]);
  // Only the shipped profiles: whatever secrets a build in this checkout left beside them stay out.
  await execa('sh', ['-c', 'rm -f "$0"/*.secrets.yaml "$0"/*.password', join(workspace, 'profile')]);
  // The secrets, made once (as `swarmcard secrets` does for the repository secret) outside the workspace.
  const made = await swarmcard(['secrets', profile, '--nodes', '2'], { env: { SWARMCARD_SECRETS_DIR: w.secrets } });
  t.is(made.exitCode, 0, made.stderr);
  const secretsText = await readFile(join(w.secrets, 'pizero-otg.secrets.yaml'), 'utf8');
  const inputs = { profile: 'profile/pizero-otg.yaml', base: w.base, nodes: '2', compress: 'xz', secrets: secretsText };
  const downloads = join(workspace, 'downloads');
  await mkdir(downloads);
  for (const shard of ['1/2', '2/2']) {
    const out = `shard-out-${shard[0]}`;
    const { outputs, stderr } = await runAction(t, workspace, { ...inputs, shard, out });
    t.is(outputs.dir, `${out}/pizero-otg`);
    t.false(stderr.includes('PRIVATE KEY'), 'no secret in the log');
    // What download-artifact leaves: one folder per artifact, holding the shard folder's files.
    await execa('cp', ['-r', join(workspace, outputs.dir!), join(downloads, `shard-${shard[0]}`)]);
  }
  t.false(
    await isFile(join(workspace, 'profile', 'pizero-otg.secrets.yaml')),
    'the secrets stayed out of the checkout',
  );
  const merged = await runAction(t, workspace, { merge: 'downloads', out: 'release' });
  t.is(merged.outputs.dir, 'release/pizero-otg');
  t.is(merged.outputs.manifest, 'release/pizero-otg/manifest.json');
  const dir = join(workspace, merged.outputs.dir!);
  t.is((await execa('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: dir, reject: false })).exitCode, 0);
  t.is(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')).builder.image, tag);
  // The same release, built on the host in one go with the same secrets.
  const host = await swarmcard(
    ['build', profile, '--base', w.base, '--nodes', '2', '--compress', 'xz', '--out', join(workspace, 'host')],
    { env: { SWARMCARD_SECRETS_DIR: w.secrets } },
  );
  t.is(host.exitCode, 0, host.stderr);
  const one = await files(join(workspace, 'host', 'pizero-otg'));
  t.deepEqual(differing(one, await files(dir)), ['SHA256SUMS', 'manifest.json']);
  t.true([...one.keys()].some((f) => f.endsWith('.img.xz')) && one.size >= 8, [...one.keys()].join(' '));
});

testIf(dockerClientMissing)(
  'an engine that does not answer is one sentence, and the output folder made for the run is gone',
  async (t) => {
    const dir = await scratchDir(t);
    const out = join(dir, 'new', 'dist');
    const result = await swarmcard(
      ['build', profile, '--base', await fixture('bookworm-armhf'), '--in-docker', '--out', out],
      { env: { DOCKER_HOST: `unix://${join(dir, 'no-engine.sock')}`, SWARMCARD_CACHE_DIR: join(dir, 'cache') } },
    );
    t.is(result.exitCode, 1, result.stderr);
    t.regex(result.stderr, /^error: docker does not answer: .*\.$/m);
    t.deepEqual((await readdir(dir)).sort(), ['cache']);
  },
);
