/**
 * `swarmcard build … --in-docker [--engine docker|podman]`: the same build, run by the same CLI
 * inside the builder image (the repository's Dockerfile), for hosts without mtools and e2fsprogs.
 *
 * - The image is built on first use and tagged with the tool version (`swarmcard:0.1.0`).
 * - Every path the build reads or writes is bind-mounted at the same path inside (the current
 *   folder, the profile's folder, the output folder, the base images' folders, the download cache),
 *   so paths in arguments, profiles and messages mean the same thing on both sides.
 * - The container runs as the caller's uid:gid: outputs and the secrets file belong to the caller,
 *   with the modes the build gives them (0600 for the secrets file).
 * - Ctrl-C: the engine is asked to stop the container (SIGTERM to the CLI inside, which removes
 *   what is half-written, as on the host), then it is removed; nothing of it is left.
 * - The command is printed before it runs; the manifest records the builder image and its id.
 */
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import { quoteCommand, run } from '../exec/run.js';
import { locateTool } from '../exec/tools.js';
import { log } from '../log.js';
import { loadProfile } from '../profile/load-profile.js';
import { cacheDir } from '../source/cache.js';
import { isUrl } from '../util/base-url.js';
import { removeEmptyUpTo } from '../util/empty-folders.js';
import { makeFolders } from '../util/make-folders.js';
import { InterruptedError, interrupted, withScope } from '../util/scope.js';

export const engines = ['docker', 'podman'] as const;
export type Engine = (typeof engines)[number];

/** The package root: the build context (see .dockerignore) and where the Dockerfile is. */
const packageRoot = fileURLToPath(new URL('../../../', import.meta.url));

export interface InDockerOptions {
  /** The command line as given, less --in-docker and --engine: the container runs it unchanged. */
  args: string[];
  profileFile: string;
  base?: string;
  nodes?: number;
  out: string;
  allowPaths: string[];
  engine?: Engine;
  version: string;
}

const installed = (engine: Engine): boolean => {
  const path = locateTool(engine);
  try {
    if (path) accessSync(path, constants.X_OK);
    return path !== undefined;
  } catch {
    return false;
  }
};

/** `--engine`, else the first of docker and podman that is installed. */
export function chooseEngine(engine: Engine | undefined): Engine {
  if (engine) {
    if (!installed(engine))
      throw new UserError(`--engine ${engine}: ${engine} is not installed; install it or choose the other engine.`);
    return engine;
  }
  const found = engines.find(installed);
  if (!found)
    throw new UserError(
      '--in-docker needs Docker or Podman and neither is installed; install one (apt-get install docker.io).',
    );
  return found;
}

export const imageTag = (version: string): string => `swarmcard:${version}`;

const CONTEXT_LABEL = 'org.swarmcard.context';

/**
 * A digest of what the image is built from (the Dockerfile, the package's files but its
 * dependencies, which the lock file pins): a checkout whose code changed under the same version
 * gets a new image instead of running the old code.
 */
async function contextDigest(): Promise<string> {
  const hash = createHash('sha256');
  const files = ['Dockerfile', '.dockerignore', 'package.json', 'package-lock.json'];
  for (const dir of ['build/builder', 'overlays', 'profiles'])
    for (const entry of await readdir(join(packageRoot, dir), { recursive: true, withFileTypes: true }))
      if (entry.isFile() && !entry.name.endsWith('.secrets.yaml'))
        files.push(relative(packageRoot, join(entry.parentPath, entry.name)));
  for (const file of files.sort()) {
    const content = await readFile(join(packageRoot, file)).catch(() => Buffer.alloc(0));
    hash.update(`${file}\0${content.length}\0`).update(content);
  }
  return hash.digest('hex');
}

/** The image's id and context digest, or undefined when the engine has no image of that name. */
async function imageId(engine: Engine, tag: string): Promise<{ id: string; context: string } | undefined> {
  const result = await run(engine, ['image', 'inspect', '--format', '{{.Id}} {{json .Config.Labels}}', tag], {
    allowFailure: true,
  });
  if (result.exitCode === 0) {
    const [id = '', ...labels] = result.stdout.trim().split(' ');
    const parsed = JSON.parse(labels.join(' ') || 'null') as Record<string, string> | null;
    return { id, context: parsed?.[CONTEXT_LABEL] ?? '' };
  }
  if (/no such image|image not known|not found/i.test(result.stderr)) return undefined;
  throw new UserError(`${engine} does not answer: ${result.stderr.trim().split('\n').at(-1)}.`, {
    hint:
      engine === 'docker'
        ? 'Is the Docker engine running, and may you use it (DOCKER_HOST, the docker group)?'
        : undefined,
  });
}

/** Build the builder image from the package's Dockerfile unless the engine has it; its id. */
export async function ensureImage(engine: Engine, version: string): Promise<{ tag: string; id: string }> {
  const tag = imageTag(version);
  const context = await contextDigest();
  const existing = await imageId(engine, tag);
  if (existing?.context === context) return { tag, id: existing.id };
  // Host networking for the build only: apt-get inside reaches the mirrors the host reaches (its
  // proxy, a local mirror), also on engines without a bridge network.
  const args = ['build', '--network', 'host', '--label', `${CONTEXT_LABEL}=${context}`, '--tag', tag];
  args.push('--file', join(packageRoot, 'Dockerfile'), packageRoot);
  log.step(`building the builder image ${tag} (once per version): ${quoteCommand([engine, ...args])}`);
  const built = await run(engine, args, { output: 'stderr', allowFailure: true });
  if (built.exitCode !== 0) {
    const last = built.stderr.trim().split('\n').at(-1) ?? '';
    throw new UserError(`building the builder image ${tag} failed: ${last}`, {
      hint:
        'Without a registry, create its base image from Debian packages first (docs/docker.md, "Offline"): ' +
        'mmdebstrap --variant=minbase trixie - | docker import - debian:trixie-slim',
    });
  }
  const image = await imageId(engine, tag);
  if (!image) throw new Error(`${engine} built ${tag} but does not list it`);
  return { tag, id: image.id };
}

interface Mount {
  path: string;
  writable: boolean;
}

/** Mount each folder once: one inside another mounted folder with at least its rights is left out. */
export function minimalMounts(mounts: Mount[]): Mount[] {
  const sorted = [...mounts].sort((a, b) => a.path.localeCompare(b.path));
  const kept: Mount[] = [];
  for (const m of sorted) {
    const inside = (outer: Mount) => {
      const rel = relative(outer.path, m.path);
      return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
    };
    const same = kept.find((k) => k.path === m.path);
    if (same) {
      same.writable ||= m.writable;
      continue;
    }
    if (kept.some((k) => inside(k) && (k.writable || !m.writable))) continue;
    kept.push({ ...m });
  }
  return kept;
}

/** What the container needs: its folders, and whether it needs a network (a base to download). */
async function mountsFor(
  options: InDockerOptions,
): Promise<{ mounts: Mount[]; network: boolean; madeOut?: { first: string; out: string } }> {
  const profile = await loadProfile(options.profileFile, { nodes: options.nodes, base: options.base });
  const bases = [...new Set(profile.nodes.flatMap((n) => (n.base ? [n.base.image] : [])))];
  const local = bases.filter((b) => !isUrl(b));
  const out = resolve(options.out);
  const cache = resolve(cacheDir());
  // The engine would create a missing folder as root: they are made here, owned by the caller.
  const made = await makeFolders(out);
  await makeFolders(cache);
  const secretsDir = process.env.SWARMCARD_SECRETS_DIR;
  const mounts: Mount[] = [
    { path: process.cwd(), writable: true },
    // The secrets file is written beside the profile (or in SWARMCARD_SECRETS_DIR).
    { path: dirname(resolve(options.profileFile)), writable: true },
    { path: out, writable: true },
    { path: cache, writable: true },
    ...(secretsDir ? [{ path: resolve(secretsDir), writable: true }] : []),
    ...local.map((b) => ({ path: dirname(resolve(b)), writable: false })),
    ...options.allowPaths.map((p) => ({ path: resolve(p), writable: false })),
  ];
  for (const m of mounts)
    if (m.path === '/')
      throw new UserError('--in-docker cannot mount the root folder /; run it from (and build into) a project folder.');
  return {
    mounts: minimalMounts(mounts),
    network: bases.length > local.length,
    ...(made ? { madeOut: { first: made, out } } : {}),
  };
}

/**
 * /etc/passwd and /etc/group naming the caller: ssh-keygen (the cluster key) refuses to run as a
 * uid without an account ("No user exists for uid 1000"), and the image cannot know the caller's.
 */
async function accountFiles(dir: string, uid: number, gid: number): Promise<Record<string, string>> {
  const passwd = join(dir, 'passwd');
  const group = join(dir, 'group');
  await writeFile(
    passwd,
    `root:x:0:0:root:/root:/usr/sbin/nologin\nswarmcard:x:${uid}:${gid}:swarmcard:/tmp:/usr/sbin/nologin\n`,
  );
  await writeFile(group, `root:x:0:\nswarmcard:x:${gid}:\n`);
  return { [passwd]: '/etc/passwd', [group]: '/etc/group' };
}

/** The `run` arguments: everything but the engine's name. */
export function runArgs(options: {
  engine: Engine;
  name: string;
  image: { tag: string; id: string };
  mounts: Mount[];
  /** Single files mounted read-only: host path → path inside. */
  files?: Record<string, string>;
  network: boolean;
  uid: number;
  gid: number;
  cwd: string;
  env: Record<string, string>;
  args: string[];
}): string[] {
  const { engine, image } = options;
  return [
    'run',
    '--rm',
    // A real init as PID 1: it passes SIGTERM on to the CLI, which then cleans up as on the host.
    '--init',
    '--name',
    options.name,
    '--user',
    `${options.uid}:${options.gid}`,
    // Rootless Podman maps the caller's uid to itself only with keep-id.
    ...(engine === 'podman' && options.uid !== 0 ? ['--userns', 'keep-id'] : []),
    '--cap-drop',
    'ALL',
    '--security-opt',
    'no-new-privileges',
    '--network',
    options.network ? 'bridge' : 'none',
    ...options.mounts.flatMap((m) => ['--volume', `${m.path}:${m.path}:${m.writable ? 'rw' : 'ro'}`]),
    ...Object.entries(options.files ?? {}).flatMap(([host, inside]) => ['--volume', `${host}:${inside}:ro`]),
    '--workdir',
    options.cwd,
    ...Object.entries(options.env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
    // By id: the image that was checked is the one that runs, whatever the tag points to meanwhile.
    image.id,
    ...options.args,
  ];
}

export async function buildInDocker(options: InDockerOptions): Promise<void> {
  const engine = chooseEngine(options.engine);
  const { mounts, network, madeOut } = await mountsFor(options);
  try {
    await runContainer(options, engine, mounts, network);
  } catch (error) {
    // As a host build does: a failed build leaves no empty folder it made (the output folder).
    if (madeOut) await removeEmptyUpTo(madeOut.out, madeOut.first);
    throw error;
  }
}

async function runContainer(
  options: InDockerOptions,
  engine: Engine,
  mounts: Mount[],
  network: boolean,
): Promise<void> {
  const image = await ensureImage(engine, options.version);
  const name = `swarmcard-build-${process.pid}-${randomBytes(4).toString('hex')}`;
  const env: Record<string, string> = {
    SWARMCARD_CACHE_DIR: resolve(cacheDir()),
    SWARMCARD_BUILDER_IMAGE: image.tag,
    SWARMCARD_BUILDER_IMAGE_ID: image.id,
  };
  for (const k of ['SOURCE_DATE_EPOCH', 'SWARMCARD_SECRETS_DIR', 'NO_COLOR', 'SWARMCARD_VERBOSE'])
    if (process.env[k] !== undefined) env[k] = process.env[k]!;
  const [uid, gid] = [process.getuid?.() ?? 0, process.getgid?.() ?? 0];
  await withScope(async (scope) => {
    const files = uid === 0 ? {} : await accountFiles(await scope.tempDir('swarmcard-account-'), uid, gid);
    const args = runArgs({
      engine,
      name,
      image,
      mounts,
      files,
      network,
      uid,
      gid,
      cwd: process.cwd(),
      env,
      args: options.args,
    });
    log.step(`$ ${quoteCommand([engine, ...args])}`);
    // On every path: after Ctrl-C the engine gives the CLI inside time to remove its partial files.
    scope.defer(`remove container ${name}`, async () => {
      await run(engine, ['stop', '--time', '60', name], { allowFailure: true });
      await run(engine, ['rm', '--force', name], { allowFailure: true });
    });
    const result = await run(engine, args, { output: 'inherit', allowFailure: true });
    if (result.exitCode === 0) return;
    // The CLI inside has said what was wrong; its exit code is passed on.
    if (result.exitCode === 1)
      throw new UserError(`the build in the ${engine} container failed (see above).`, { answered: true });
    if (interrupted()) throw new InterruptedError();
    // 125, and 126 from the OCI runtime: the engine could not start the container (it said why);
    // 127: the CLI inside is missing from the image.
    if (result.exitCode === 125 || result.exitCode === 126)
      throw new UserError(`${engine} could not start the builder container (see above).`);
    throw new Error(`the build in the ${engine} container stopped with exit code ${result.exitCode}`);
  });
}
