/**
 * swarmcard build: the pipeline as flat, ordered, verb-named steps over one context (mkosi style),
 * each timed in the verbose log:
 *   resolve bases → verify every node (nothing written until all pass) → load secrets → per node:
 *   clone, disk identity, edits, read back, rename or compress, bmap → host kit → manifest.json,
 *   imager.json, SHA256SUMS (→ shard.json for a shard, `--shard I/N`: its nodes come as `--only`'s)
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { bootableModels } from '../formats/elf.js';
import type { Ext4Backend } from '../fs/partition.js';
import { cloneImage, dropCached } from '../image/clone.js';
import { setDiskIdentity } from '../image/identity.js';
import { type ImageReport, inspectImage, writeBlockers } from '../image/inspect.js';
import { log, progress } from '../log.js';
import { hostKitFiles, hostSide, writeHostKit } from '../output/host-kit.js';
import {
  type Artifact,
  assembleManifest,
  carriedOver,
  type Manifest,
  type ManifestNode,
  manifestNode,
  writeFileAtomic,
  writeManifest,
} from '../output/manifest.js';
import { SHARD_FILE, type ShardInfo, secretFingerprints } from '../output/shard-info.js';
import type { ClusterPlan, NodePlan } from '../plan/plan.js';
import { imageNodes, type Shard } from '../plan/shard.js';
import type { BaseData } from '../profile/types.js';
import { writeBmap } from '../release/bmap.js';
import { compressImage } from '../release/compress.js';
import { IMAGER_FILE, type ImagerOptions, imagerRepository } from '../release/imager.js';
import { anyArtifact, artifactFiles, type ReleaseSettings } from '../release/settings.js';
import { toolVersions } from '../release/tool-versions.js';
import { renderForRelease } from '../render/for-release.js';
import { hygieneEdits } from '../render/hygiene.js';
import { PC_TARGET, type Target, targetOf } from '../render/target.js';
import { loadSecrets, type SecretSources, type SecretValues, secretKinds } from '../secrets/for-build.js';
import { resolveBaseImage } from '../source/base-image.js';
import { removeEmptyUpTo } from '../util/empty-folders.js';
import { lockFolder } from '../util/folder-lock.js';
import { sha256Of } from '../util/hash-file.js';
import { makeFolders } from '../util/make-folders.js';
import { interrupted, withScope } from '../util/scope.js';
import { applyEdits } from './apply-edits.js';

export interface BuildOptions {
  out: string;
  secrets?: SecretSources;
  /** Indices to build (`--only`); all when undefined. */
  only?: Set<number>;
  /**
   * This build is one shard of a sharded release (`only` holds its nodes): its folder holds its
   * nodes only (nothing is carried over) and, once all is written, shard.json for the merge.
   */
  shard?: Shard;
  epoch: number;
  ext4Backend?: Ext4Backend;
  toolVersion: string;
  release: ReleaseSettings;
}

interface Base {
  spec: BaseData;
  path: string;
  sha256?: string;
  report: ImageReport;
  /** What the renderers write for, decided once per base. */
  target: Target;
}

interface BuildContext {
  plan: ClusterPlan;
  options: BuildOptions;
  dir: string;
  /** The nodes this run writes: every Pi of the plan, or those `--only` names. */
  targets: NodePlan[];
  bases: Map<string, Base>;
  secrets: SecretValues;
  built: ManifestNode[];
  hostKit?: Manifest['hostKit'];
  /** The first folder the build had to make for `--out` and its cluster folder (mkdir's answer), if any. */
  madeFolder?: string;
  /** The files this build may leave, written to LEDGER before the first of them. */
  ledger?: string[];
  /** What the cluster folder held when the build began (name → inode and mtime). */
  found?: Map<string, string | undefined>;
}

const baseKey = (b: BaseData) => `${b.image}\0${b.sha256 ?? ''}`;
const baseOf = (ctx: BuildContext, node: NodePlan) => ctx.bases.get(baseKey(node.base!))!;

/** Run one step, its duration in the verbose log (never in an image). */
async function timed<T>(what: string, step: () => T | Promise<T>): Promise<T> {
  const started = Date.now();
  const result = await step();
  log.debug(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return result;
}

async function resolveBases(ctx: BuildContext): Promise<void> {
  for (const node of ctx.targets) {
    const spec = node.base!;
    if (ctx.bases.has(baseKey(spec))) continue;
    log.step(`base image ${spec.image}`);
    const resolved = await resolveBaseImage({ location: spec.image, sha256: spec.sha256 });
    const report = await inspectImage(resolved.path);
    ctx.bases.set(baseKey(spec), {
      spec,
      path: resolved.path,
      sha256: resolved.sourceSha256,
      report,
      target: targetOf(report),
    });
  }
}

/** Every check that can fail before a single byte is written (debos style), all reported at once. */
function verifyNodes(ctx: BuildContext): void {
  const problems: string[] = [];
  // Nodes of one board that cannot boot one image: one sentence naming them all.
  const unbootable = new Map<string, string[]>();
  for (const node of ctx.targets) {
    const { report, target } = baseOf(ctx, node);
    const image = node.base!.image;
    if (!bootableModels[report.arch.arch].includes(node.board)) {
      const armv6 = node.board === 'pi0' || node.board === 'pi0w' || node.board === 'pi1';
      const tail =
        `, which cannot boot the ${report.arch.arch} image ${image}` +
        (armv6 ? ' (it needs a 32-bit armhf image)' : '') +
        '; give this group a base image it can boot.';
      const key = `${node.board}\t${tail}`;
      unbootable.set(key, [...(unbootable.get(key) ?? []), node.hostname]);
    }
    problems.push(...writeBlockers(report).map((w) => `${image}: ${w}`));
    if (report.identity.swarmcardNode)
      problems.push(
        `${image} is a node image swarmcard built (swarmcard's files are in it): its cluster's keys and settings ` +
          'would reach every new node; build from the Raspberry Pi OS image it was made from.',
      );
    if (node.edits.some((e) => e.op === 'admin') && target.users === undefined) {
      problems.push(
        `${image} is Raspberry Pi OS ${report.release.codename}, which creates no user from userconf.txt or ` +
          'cloud-init (that came with bullseye images from 2022-04); use a newer image or remove admin from the ' +
          'profile.',
      );
    }
    if (node.interfaces.length > 0 && !target.network) {
      problems.push(
        `${image} has neither NetworkManager nor dhcpcd enabled, so ${node.hostname}'s static addresses ` +
          'cannot be configured; use a Raspberry Pi OS Lite image.',
      );
    }
  }
  for (const [key, names] of unbootable) {
    const [board, tail] = key.split('\t') as [string, string];
    const last = names.at(-1)!;
    const who =
      names.length === 1 ? `${last} is a ${board}` : `${names.slice(0, -1).join(', ')} and ${last} are ${board}s`;
    problems.unshift(`${who}${tail}`);
  }
  if (problems.length > 0) throw new UserError([...new Set(problems)].join('\n'));
}

/**
 * The files a build may leave before its SHA256SUMS names them (written when it starts, removed
 * when it ends): after a Ctrl-C or a crash, the next build knows them for its own.
 */
const LEDGER = '.swarmcard-pending';
/** Names only swarmcard gives, ours wherever they are (the burn station's log is kept). */
const releaseName = /^(manifest\.json|imager\.json|SHA256SUMS|host-kit\.tar|shard\.json|flash-log\.jsonl)$/;
/** A node's files: ours only when an earlier build recorded them (a look-alike may be the user's). */
const nodeName = /^\d+-[^/]+\.img(\.xz|\.zst|\.bmap)?$/;
const unpartial = (name: string) => name.replace(/(\.\d+)?\.partial$/, '');

/** The names in a SHA256SUMS, or in the ledger of a build that did not finish. */
async function namesIn(dir: string, file: 'SHA256SUMS' | typeof LEDGER): Promise<Set<string>> {
  const text = await readFile(join(dir, file), 'utf8').catch(() => '');
  const names = text.split('\n').map((line) => (file === LEDGER ? line : /^[0-9a-f]{64} {2}(.+)$/.exec(line)?.[1]));
  return new Set(names.filter((name): name is string => !!name));
}

/** What a file is now, to tell the files a stopped build wrote from the ones it found. */
const versionOf = (dir: string, name: string) =>
  stat(join(dir, name)).then(
    (st) => `${st.ino}:${st.mtimeMs}`,
    () => undefined,
  );

/**
 * A build owns its cluster directory: swarmcard's own files that the current plan does not name
 * (images of nodes no longer planned, a host kit no longer made, partials of a crashed run) are
 * removed before anything is written, so no stale image sits beside a manifest that does not list
 * it. A node's file is ours when an earlier build recorded it (or it is a partial): one that only
 * looks like ours (`07-mine.img.xz` put there by hand) is not ours to delete or overwrite, and
 * neither is anything else, so the build refuses, naming it.
 */
async function claimClusterDir(ctx: BuildContext): Promise<void> {
  const entries = await readdir(ctx.dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  // Nodes this run builds have the files the settings name; the others (--only) keep whatever they have,
  // except in a shard's folder, which holds its own nodes only.
  const building = new Set(ctx.targets.map((n) => n.index));
  const { shard } = ctx.options;
  const releaseFiles = [
    'manifest.json',
    IMAGER_FILE,
    'SHA256SUMS',
    ...(hostSide(ctx.plan) ? ['host-kit.tar'] : []),
    ...(shard ? [SHARD_FILE] : []),
  ];
  const planned = new Set([
    ...ctx.plan.nodes
      .filter((n) => n.board !== 'pc')
      .flatMap((n) => {
        if (building.has(n.index)) return artifactFiles(n.file, ctx.options.release).map((a) => a.file);
        return shard ? [] : anyArtifact(n.file);
      }),
    ...releaseFiles,
    'flash-log.jsonl', // the burn station's record of the cards: kept
  ]);
  const recorded = new Set([...(await namesIn(ctx.dir, 'SHA256SUMS')), ...(await namesIn(ctx.dir, LEDGER))]);
  const ours = (name: string) =>
    unpartial(name) === LEDGER ||
    releaseName.test(unpartial(name)) ||
    (nodeName.test(unpartial(name)) && (name.endsWith('.partial') || recorded.has(name)));
  const foreign = entries.filter((name) => !ours(name)).sort();
  if (foreign.length > 0)
    throw new UserError(
      `${ctx.dir} holds ${foreign.join(', ')}, which swarmcard did not write; move ` +
        `${foreign.length === 1 ? 'it' : 'them'} away or choose another --out, ` +
        'since a build owns its cluster directory.',
    );
  for (const name of entries.filter((n) => !planned.has(n) && n !== LEDGER).sort()) {
    log.info(`removing ${join(ctx.dir, name)}: the current plan does not name it`);
    await rm(join(ctx.dir, name), { force: true });
  }
  // What this build writes, and the nodes' files earlier ones recorded that it keeps.
  const writes = [
    ...ctx.targets.flatMap((n) => artifactFiles(n.file, ctx.options.release).map((a) => a.file)),
    ...releaseFiles,
  ];
  const kept = entries.filter((name) => planned.has(name) && nodeName.test(name));
  ctx.ledger = [...new Set([...writes, ...kept])].sort();
  ctx.found = new Map(await Promise.all(entries.map(async (n) => [n, await versionOf(ctx.dir, n)] as const)));
  // shard.json is written last: a shard folder without it is unfinished, and merge refuses it.
  if (shard) await rm(join(ctx.dir, SHARD_FILE), { force: true });
}

/**
 * The build is complete: its SHA256SUMS names its files. Files the ledger named that SHA256SUMS
 * does not (a stopped build's images of nodes `--only` did not rebuild) stay recorded in it.
 */
async function settleLedger(ctx: BuildContext): Promise<void> {
  const listed = await namesIn(ctx.dir, 'SHA256SUMS');
  const present = await Promise.all(
    (ctx.ledger ?? []).map(async (n) => ((await versionOf(ctx.dir, n)) === undefined ? [] : [n])),
  );
  const unlisted = present.flat().filter((n) => nodeName.test(n) && !listed.has(n));
  if (unlisted.length === 0) await rm(join(ctx.dir, LEDGER), { force: true });
  else await writeFileAtomic(join(ctx.dir, LEDGER), unlisted.map((n) => `${n}\n`).join(''));
}

async function loadBuildSecrets(ctx: BuildContext): Promise<void> {
  const kinds = new Set(ctx.targets.flatMap((node) => secretKinds(node.edits)));
  ctx.secrets = await loadSecrets(kinds, ctx.plan.cluster, ctx.options.secrets);
}

/**
 * The release files of one node's raw image: compressed copies and the bmap, made side by side.
 * Every byte is read once for the raw image's sha256: by the compressor's pass when there is one,
 * else by the bmap's.
 */
async function releaseFiles(
  ctx: BuildContext,
  node: NodePlan,
  raw: string,
): Promise<{ artifacts: Artifact[]; rawSha256: string }> {
  const { release } = ctx.options;
  const at = (suffix: string) => join(ctx.dir, `${node.file}${suffix}`);
  const size = (await stat(raw)).size;
  let rawSha256: string | undefined;
  const reference = baseOf(ctx, node).path; // chunks and bmap pieces equal to the base's take its hashes
  // The first failure stops the other compressors; it is thrown once every one has stopped.
  const siblings = new AbortController();
  const compressed = release.compress.map(async (how): Promise<Artifact> => {
    const bar = progress(`compressing ${node.file}.${how.format}`, size);
    const made = await compressImage(raw, at(`.${how.format}`), how, {
      reference,
      signal: siblings.signal,
      onProgress: (done) => bar.update(done),
    })
      .catch((error: unknown) => {
        siblings.abort(error);
        throw error;
      })
      .finally(() => bar.done());
    rawSha256 = made.rawSha256;
    log.debug(`${node.file}.${how.format}: ${made.reused} of ${made.chunks} chunks reused`);
    return { kind: how.format, file: `${node.file}.${how.format}`, size: made.size, sha256: made.sha256 };
  });
  const options = { imageSha256: compressed.length === 0, reference, signal: siblings.signal };
  const bmap = writeBmap(raw, at('.bmap'), options).then(
    (b): Artifact => {
      rawSha256 ??= b.imageSha256;
      log.debug(`${node.file}.bmap: ${b.reusedRanges} of ${b.ranges} ranges took the base's hash`);
      return { kind: 'bmap', file: `${node.file}.bmap`, size: b.size, sha256: b.sha256 };
    },
    (error: unknown) => {
      siblings.abort(error);
      throw error;
    },
  );
  const settled = await Promise.allSettled([...compressed, bmap]);
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  const artifacts = settled.map((s) => (s as PromiseFulfilledResult<Artifact>).value);
  if (!rawSha256) throw new Error(`no pass over ${raw} gave its sha256`);
  return { artifacts, rawSha256 };
}

/**
 * Clone one node and give it its disk identity and edits (each partition in one session, read
 * back). A kept raw image is renamed into place and its hash and bmap are made while the next node
 * is copied (CPU against the kernel's I/O), so the caller starts the next node before awaiting
 * the returned entry. Without a kept raw image, the compressed copies are made from the clone,
 * which is then removed.
 */
async function buildNode(ctx: BuildContext, node: NodePlan, position: string): Promise<() => Promise<ManifestNode>> {
  const base = baseOf(ctx, node);
  const { keepRaw } = ctx.options.release;
  const out = join(ctx.dir, node.file);
  const started = Date.now(); // progress display only; never written into an image
  log.info(`${position} ${node.file}: cloning, editing and verifying`);
  // Clean clone first, so nothing a profile adds is removed by it.
  const edits = [
    ...hygieneEdits(base.report, base.target),
    ...renderForRelease(base.target, node, ctx.plan.cluster, ctx.secrets),
  ];
  const release = await cloneImage(
    base.path,
    out,
    async (partial) => {
      const { layout, identity } = await setDiskIdentity(partial, Number.parseInt(node.diskId, 16));
      await applyEdits(layout, [...identity, ...edits], {
        epoch: ctx.options.epoch,
        ext4Backend: ctx.options.ext4Backend,
      });
      if (keepRaw) return undefined;
      const size = (await stat(partial)).size;
      const { artifacts, rawSha256 } = await releaseFiles(ctx, node, partial);
      return { raw: { sha256: rawSha256, size }, artifacts };
    },
    { keep: keepRaw },
  );
  log.info(`${position} ${node.file}: written and verified in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (release) return async () => manifestNode(node, base.report, release.raw, release.artifacts);
  const size = (await stat(out)).size;
  const finishing = releaseFiles(ctx, node, out).then(async (done) => {
    await dropCached(out); // read for the last time
    return done;
  });
  finishing.catch(() => undefined); // awaited by the caller; avoid an unhandled rejection meanwhile
  return async () => {
    const { artifacts, rawSha256: sha256 } = await finishing;
    const raw: Artifact = { kind: 'raw', file: node.file, size, sha256 };
    return manifestNode(node, base.report, { sha256, size }, [raw, ...artifacts]);
  };
}

async function buildNodes(ctx: BuildContext): Promise<void> {
  const made = await makeFolders(ctx.dir);
  ctx.madeFolder ??= made;
  await writeFileAtomic(join(ctx.dir, LEDGER), (ctx.ledger ?? []).map((name) => `${name}\n`).join(''));
  const entries: (() => Promise<ManifestNode>)[] = [];
  for (const [i, node] of ctx.targets.entries())
    entries.push(await buildNode(ctx, node, `[${i + 1}/${ctx.targets.length}]`));
  for (const entry of entries) ctx.built.push(await entry());
}

/** host-kit.tar when the host is a laptop or PC: its side of the gadget links, for NetworkManager. */
async function buildHostKit(ctx: BuildContext): Promise<void> {
  const host = hostSide(ctx.plan);
  if (!host) return;
  const file = 'host-kit.tar';
  await writeHostKit(
    join(ctx.dir, file),
    hostKitFiles(host, renderForRelease(PC_TARGET, host, ctx.plan.cluster), ctx.plan.cluster),
    ctx.options.epoch,
  );
  log.info(`${file}: the host side for a laptop or PC host`);
  ctx.hostKit = { file, sha256: await sha256Of(join(ctx.dir, file)) };
}

/** The builder image this build runs in, as `swarmcard build --in-docker` tells it (docker/in-docker.ts). */
function builderImage(): Manifest['builder'] {
  const { SWARMCARD_BUILDER_IMAGE: image, SWARMCARD_BUILDER_IMAGE_ID: id } = process.env;
  return image && id ? { image, id, node: process.versions.node } : undefined;
}

/**
 * imager.json (the Raspberry Pi Imager repository), then manifest.json and SHA256SUMS over every
 * file, into `dir`: the last files of a build, and all that a merge of shards writes itself.
 */
export async function writeReleaseFiles(dir: string, manifest: Manifest, imagerOptions: ImagerOptions): Promise<void> {
  const imager = `${JSON.stringify(imagerRepository(manifest, imagerOptions), null, 2)}\n`;
  await writeFileAtomic(join(dir, IMAGER_FILE), imager);
  manifest.imager = { file: IMAGER_FILE, sha256: createHash('sha256').update(imager).digest('hex') };
  await writeManifest(dir, manifest);
}

/** What a merge needs beyond the shard's manifest (output/shard-info.ts), written last. */
async function writeShardInfo(ctx: BuildContext, shard: Shard, manifest: Manifest) {
  // A single build lists the bases in the order of the plan's nodes: keep each one's place.
  const order = ctx.plan.nodes.filter((n) => n.board !== 'pc').map((n) => baseKey(n.base!));
  const info: ShardInfo = {
    format: 1,
    shard,
    cluster: ctx.plan.cluster,
    plan: imageNodes(ctx.plan).map((n) => ({ index: n.index, file: n.file })),
    nodes: ctx.targets.map((n) => n.index).sort((a, b) => a - b),
    bases: [...ctx.bases.keys()].map((key, i) => ({ first: order.indexOf(key), base: manifest.bases[i]! })),
    release: ctx.options.release,
    secrets: secretFingerprints(ctx.secrets),
  };
  await writeFileAtomic(join(ctx.dir, SHARD_FILE), `${JSON.stringify(info, null, 2)}\n`);
}

/** manifest.json, imager.json and SHA256SUMS; a shard's shard.json after them. */
async function writeRelease(ctx: BuildContext): Promise<Manifest> {
  const { release, shard } = ctx.options;
  const manifest = await assembleManifest({
    plan: ctx.plan,
    toolVersion: ctx.options.toolVersion,
    epoch: ctx.options.epoch,
    bases: [...ctx.bases.values()],
    nodes: [...(shard ? [] : await carriedOver(ctx.dir, ctx.plan, ctx.built)), ...ctx.built],
    hostKit: ctx.hostKit,
    tools: await toolVersions(release.compress),
    builder: builderImage(),
  });
  const imager = { releaseUrl: release.releaseUrl, icon: release.icon };
  await writeReleaseFiles(ctx.dir, manifest, imager);
  if (shard) await writeShardInfo(ctx, shard, manifest);
  await settleLedger(ctx);
  for (const node of manifest.nodes) {
    if (node.secrets)
      log.warn(`${node.file} holds ${node.secrets.join(' and ')}: keep the image (and cards flashed from it) private.`);
  }
  return manifest;
}

export async function buildCluster(plan: ClusterPlan, options: BuildOptions): Promise<Manifest> {
  const ctx: BuildContext = {
    plan,
    options,
    dir: join(options.out, plan.cluster),
    targets: plan.nodes.filter((n) => n.board !== 'pc' && (!options.only || options.only.has(n.index))),
    bases: new Map(),
    secrets: {},
    built: [],
  };
  return withScope(async (scope) => {
    // A build that fails before writing anything leaves no empty folders (rmdir keeps non-empty ones).
    let done = false;
    scope.defer('remove the empty folders the build made', async () => {
      if (done) return;
      // Before the claim the folder may be another build's (its lock refused this one): not touched.
      const left = ctx.found ? await readdir(ctx.dir).catch(() => []) : [];
      // A ledger with nothing beside it records nothing.
      if (left.length === 1 && left[0] === LEDGER) await rm(join(ctx.dir, LEDGER), { force: true });
      if (ctx.madeFolder) await removeEmptyUpTo(ctx.dir, ctx.madeFolder);
      // Stopped by the user: say what this run finished (partials are gone by now). A warning,
      // since after a signal only warnings are printed.
      const versions = await Promise.all(left.map(async (n) => [n, await versionOf(ctx.dir, n)] as const));
      const kept = versions
        .filter(([n, version]) => nodeName.test(n) && version !== undefined && version !== ctx.found?.get(n))
        .map(([n]) => n);
      if (interrupted() && kept.length > 0)
        log.warn(
          `stopped: ${ctx.dir} keeps the ${kept.length} complete file(s) this build wrote (${kept.join(', ')}); ` +
            'building again reuses the folder and finishes the rest.',
        );
    });
    await timed('resolve base images', () => resolveBases(ctx));
    await timed('verify nodes', () => verifyNodes(ctx));
    // One build at a time in a cluster folder: the lock sits beside it, in --out.
    ctx.madeFolder = await makeFolders(options.out);
    await lockFolder(scope, ctx.dir);
    await timed('claim the cluster directory', () => claimClusterDir(ctx));
    await timed('load secrets', () => loadBuildSecrets(ctx));
    await timed('build nodes', () => buildNodes(ctx));
    await timed('host kit', () => buildHostKit(ctx));
    const manifest = await timed('manifest', () => writeRelease(ctx));
    done = true;
    return manifest;
  });
}
