/**
 * swarmcard merge: the cluster folders of `build --shard I/N` (one per CI job) → one cluster folder
 * whose manifest.json, imager.json and SHA256SUMS are byte for byte a single build's, beside the
 * shards' own node files. Steps:
 *   read every shard → refuse any that do not belong together (one sentence each) → check each
 *   shard's files → link them into OUT/.<cluster>.merge.partial → release files → rename it to
 *   OUT/<cluster>
 * Nothing is written before every check passed, and OUT/<cluster> appears whole or not at all (the
 * staging folder is removed on any failure and on Ctrl-C). Node files are hard-linked when the
 * shards are on OUT's filesystem (instant, no space, the shards stay as they were), else copied
 * with `cp --reflink=auto` (holes kept).
 */
import { link, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { UserError } from '../errors.js';
import { run } from '../exec/run.js';
import { log } from '../log.js';
import type { Manifest } from '../output/manifest.js';
import { readShard, SHARD_FILE, type ShardInfo, shardName } from '../output/shard-info.js';
import { assertNotBeingWritten, lockFolder } from '../util/folder-lock.js';
import { makeFolders } from '../util/make-folders.js';
import { withScope } from '../util/scope.js';
import { writeReleaseFiles } from './build-cluster.js';

interface LoadedShard {
  dir: string;
  info: ShardInfo;
  manifest: Manifest;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** SHARD_DIR is a shard's cluster folder, or a folder holding exactly one (a CI artifact's download). */
async function shardFolder(dir: string): Promise<string> {
  const merging = 'merging it';
  await assertNotBeingWritten(dir, merging);
  if ((await stat(join(dir, SHARD_FILE)).catch(() => undefined))?.isFile()) return dir;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const inner = [];
  for (const e of entries.filter((e) => e.isDirectory() && !e.name.startsWith('.'))) {
    await assertNotBeingWritten(join(dir, e.name), merging);
    if ((await stat(join(dir, e.name, SHARD_FILE)).catch(() => undefined))?.isFile()) inner.push(join(dir, e.name));
  }
  return inner.length === 1 ? inner[0]! : dir;
}

/** Every reason these shards are not one release, the first found; the shards sorted by index. */
function checkTogether(shards: LoadedShard[]): LoadedShard[] {
  const [first] = shards;
  const a = first!;
  const differ = (what: string, b: LoadedShard, fix: string) =>
    new UserError(`${a.dir} and ${b.dir} were built with different ${what}; ${fix}.`);
  for (const b of shards.slice(1)) {
    const [m, n] = [a.manifest, b.manifest];
    if (a.info.cluster !== b.info.cluster || m.cluster !== n.cluster)
      throw differ(`clusters (${m.cluster}, ${n.cluster})`, b, 'merge the shards of one cluster');
    if (!same(m.profile, n.profile)) throw differ('profiles', b, 'build every shard from the same profile file');
    if (m.sourceDateEpoch !== n.sourceDateEpoch)
      throw differ(
        `epochs (${m.sourceDateEpoch}, ${n.sourceDateEpoch})`,
        b,
        'give every shard the same SOURCE_DATE_EPOCH (or none)',
      );
    // Before the tools: a compression setting adds its compressor's version to them.
    if (!same(a.info.plan, b.info.plan) || !same(m.hostKit, n.hostKit))
      throw differ('node lists', b, 'give every shard the same --nodes');
    if (!same(a.info.release, b.info.release))
      throw differ('release settings', b, 'give every shard the same --compress, --keep-raw and --release-url');
    if (!same(m.tool, n.tool) || !same(m.tools, n.tools))
      throw differ('tool versions', b, 'build every shard with the same swarmcard, mtools, e2fsprogs, xz and zstd');
    if (a.info.shard.count !== b.info.shard.count)
      throw differ(
        `shard counts (${a.info.shard.count}, ${b.info.shard.count})`,
        b,
        'give every shard the same N in --shard I/N',
      );
    for (const x of a.info.bases)
      for (const y of b.info.bases)
        if (x.first === y.first && !same(x.base, y.base))
          throw differ('base images', b, 'give every shard the same base image (pin it with its sha256)');
    for (const [key, value] of Object.entries(a.info.secrets))
      if (b.info.secrets[key] !== undefined && b.info.secrets[key] !== value)
        throw differ(
          `secrets (${key === 'clusterKey' ? 'cluster SSH key' : 'admin password'})`,
          b,
          'give every shard the same secrets files (made once with "swarmcard secrets PROFILE")',
        );
  }
  const sorted = [...shards].sort((x, y) => x.info.shard.index - y.info.shard.index);
  for (const [i, s] of sorted.entries()) {
    const twin = sorted[i + 1];
    if (twin && twin.info.shard.index === s.info.shard.index)
      throw new UserError(`${s.dir} and ${twin.dir} are both ${shardName(s.info)}; give each shard once.`);
  }
  const count = a.info.shard.count;
  const given = new Set(sorted.map((s) => s.info.shard.index));
  const missing = Array.from({ length: count }, (_, i) => i + 1).filter((i) => !given.has(i));
  if (missing.length > 0)
    throw new UserError(
      `shard${missing.length > 1 ? 's' : ''} ${missing.map((i) => `${i}/${count}`).join(', ')} ` +
        `${missing.length > 1 ? 'are' : 'is'} missing; build ${missing.length > 1 ? 'them' : 'it'} ` +
        '(swarmcard build … --shard I/N) and give every shard folder to merge.',
    );
  // Same plan and distinct I of the same N: the node sets are disjoint; say so if a shard was tampered with.
  const owner = new Map<number, string>();
  for (const s of sorted) {
    const listed = s.manifest.nodes.map((n) => n.index).sort((x, y) => x - y);
    if (!same(listed, s.info.nodes))
      throw new UserError(`${s.dir}: its manifest.json and shard.json list different nodes; build that shard again.`);
    for (const index of listed) {
      const other = owner.get(index);
      if (other) throw new UserError(`${other} and ${s.dir} both hold node ${index}; build the shards again.`);
      owner.set(index, s.dir);
    }
  }
  const absent = a.info.plan.filter((p) => !owner.has(p.index)).map((p) => p.file);
  if (absent.length > 0) throw new UserError(`no shard holds ${absent.join(', ')}; build the shards again.`);
  return sorted;
}

/** Each file a shard's manifest lists, present with its size: [source path, name]. */
async function shardFiles(shards: LoadedShard[]): Promise<[string, string][]> {
  const files: [string, string][] = [];
  for (const s of shards)
    for (const n of s.manifest.nodes)
      for (const artifact of n.artifacts) files.push([join(s.dir, artifact.file), artifact.file]);
  const kit = shards[0]!.manifest.hostKit;
  if (kit) files.push([join(shards[0]!.dir, kit.file), kit.file]);
  const sizes = new Map<string, number>();
  for (const s of shards)
    for (const n of s.manifest.nodes) for (const a of n.artifacts) sizes.set(join(s.dir, a.file), a.size);
  for (const [path] of files) {
    const info = await stat(path).catch(() => undefined);
    const size = sizes.get(path);
    if (!info?.isFile() || (size !== undefined && info.size !== size))
      throw new UserError(
        `${path} is ${info ? `${info.size} bytes, not the ${size} its manifest.json lists` : 'missing'}; ` +
          'copy that shard whole, or build it again.',
      );
  }
  return files;
}

/** The manifest a single build of every node writes (imager added by writeReleaseFiles). */
function mergedManifest(shards: LoadedShard[]): Manifest {
  const bases = new Map<number, Manifest['bases'][number]>();
  for (const s of shards) for (const b of s.info.bases) bases.set(b.first, b.base);
  // JSON.parse keeps the key order of the file: the spread keeps every key in its place.
  const { imager: _, ...rest } = shards[0]!.manifest;
  return {
    ...rest,
    bases: [...bases].sort(([x], [y]) => x - y).map(([, b]) => b),
    nodes: shards.flatMap((s) => s.manifest.nodes).sort((x, y) => x.index - y.index),
  };
}

/** A hard link, or (another filesystem) a copy made durable. */
async function place(source: string, target: string): Promise<'linked' | 'copied'> {
  try {
    await link(source, target);
    return 'linked';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM') throw error;
  }
  await run('cp', ['--reflink=auto', source, target]);
  const handle = await open(target, 'r+');
  await handle.sync().finally(() => handle.close());
  return 'copied';
}

export async function mergeShards(dirs: string[], out: string): Promise<{ dir: string; manifest: Manifest }> {
  const shards: LoadedShard[] = [];
  for (const given of dirs) {
    const dir = await shardFolder(given);
    shards.push({ dir, ...(await readShard(dir)) });
  }
  const sorted = checkTogether(shards);
  const files = await shardFiles(sorted);
  const cluster = sorted[0]!.manifest.cluster;
  const dir = join(out, cluster);
  const manifest = mergedManifest(sorted);
  return withScope(async (scope) => {
    await makeFolders(out);
    await lockFolder(scope, dir); // the staging folder's name is one per cluster: one merge at a time
    const existing = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [];
      if (error.code === 'ENOTDIR') throw new UserError(`${dir} is a file; move it away or choose another --out.`);
      throw error;
    });
    if (existing.length > 0)
      throw new UserError(
        `${dir} already exists and is not empty; merge writes a new cluster folder, so move it away ` +
          'or choose another --out.',
      );
    const staging = join(out, `.${basename(cluster)}.merge.partial`);
    let done = false;
    scope.defer(`remove ${staging}`, () => (done ? undefined : rm(staging, { recursive: true, force: true })));
    await rm(staging, { recursive: true, force: true }); // a crashed merge's
    await mkdir(staging);
    const how = { linked: 0, copied: 0 };
    for (const [source, name] of files) how[await place(source, join(staging, name))]++;
    log.info(`${how.linked} file(s) hard-linked, ${how.copied} copied from ${sorted.length} shard(s)`);
    const { releaseUrl, icon } = sorted[0]!.info.release;
    await writeReleaseFiles(staging, manifest, { releaseUrl, icon });
    await rename(staging, dir); // replaces an empty folder; a non-empty one was refused above
    done = true;
    return { dir, manifest };
  });
}
