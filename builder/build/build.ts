/**
 * swarmcard build: the pipeline as flat, ordered, verb-named steps over one context (mkosi style).
 *   resolve bases → verify every node (nothing written until all pass) → per node: clone, set
 *   identity, apply edits, read back, rename → host kit → manifest.json + SHA256SUMS
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import type { Ext4Backend } from '../fs/partition.js';
import { cloneImage, writeDiskId } from '../image/clone.js';
import { bootableModels } from '../image/elf.js';
import { retargetCmdline, retargetFstab } from '../image/identity.js';
import { type ImageReport, inspectImage } from '../image/inspect.js';
import { readLayout } from '../image/layout.js';
import { log } from '../log.js';
import { hostKitFiles, writeHostKit } from '../output/host-kit.js';
import { type Manifest, type ManifestNode, sha256Of, writeManifest } from '../output/manifest.js';
import { type Edit, type FileSecret, type SecretKind, secretNames } from '../plan/edits.js';
import type { ClusterPlan, NodePlan } from '../plan/plan.js';
import type { BaseData, LoadedAdmin } from '../profile/types.js';
import { hygieneEdits } from '../render/hygiene.js';
import {
  type NetworkStack,
  renderCloudInit,
  renderNetwork,
  renderWaitOnline,
  type WifiSecret,
} from '../render/network.js';
import { renderAdmin } from '../render/users.js';
import { adminPasswordHash, checkWifi } from '../secrets/admin-wifi.js';
import { loadOrCreateSecrets, secretsPath } from '../secrets/secrets-file.js';
import { resolveBaseImage } from '../source/base-image.js';
import { applyEdits } from './apply-edits.js';

export interface BuildOptions {
  out: string;
  /** Where the profile's secrets file lives and, in join mode, the token file. */
  secrets?: { profileFile: string; joinTokenFile?: string; admin?: LoadedAdmin };
  /** Indices to build (`--only`); all when undefined. */
  only?: Set<number>;
  epoch: number;
  ext4Backend?: Ext4Backend;
  toolVersion: string;
}

interface BaseFacts {
  spec: BaseData;
  path: string;
  sha256?: string;
  report: ImageReport;
}

interface BuildContext {
  plan: ClusterPlan;
  options: BuildOptions;
  dir: string;
  targets: NodePlan[];
  bases: Map<string, BaseFacts>;
  built: ManifestNode[];
  secrets: SecretValues;
}

/** Secret values by kind, loaded only when a target needs them. */
export type SecretValues = Partial<Record<FileSecret | 'admin-password', string>> & { wifi?: WifiSecret };

const baseKey = (b: BaseData) => `${b.image}\0${b.sha256 ?? ''}`;

async function resolveBases(ctx: BuildContext): Promise<void> {
  for (const node of ctx.targets) {
    const spec = node.base!;
    if (ctx.bases.has(baseKey(spec))) continue;
    log.step(`base image ${spec.image}`);
    const resolved = await resolveBaseImage({ location: spec.image, sha256: spec.sha256 });
    ctx.bases.set(baseKey(spec), {
      spec,
      path: resolved.path,
      sha256: resolved.sourceSha256,
      report: await inspectImage(resolved.path),
    });
  }
}

/** The stack the image will run: NetworkManager when enabled (bookworm+), else dhcpcd. */
function networkStack(report: ImageReport): NetworkStack | undefined {
  if (report.network.networkManager.enabled) return 'networkmanager';
  if (report.network.dhcpcd.enabled) return 'dhcpcd';
  return undefined;
}

/** Every check that can fail before a single byte is written (debos style). */
function verifyNodes(ctx: BuildContext): void {
  const problems: string[] = [];
  for (const node of ctx.targets) {
    const { report } = ctx.bases.get(baseKey(node.base!))!;
    if (!bootableModels[report.arch.arch].includes(node.board)) {
      problems.push(
        `${node.hostname} is a ${node.board}, which cannot boot the ${report.arch.arch} image ${node.base!.image}` +
          (node.board === 'pi0' || node.board === 'pi0w' || node.board === 'pi1'
            ? ' (it needs a 32-bit armhf image)'
            : '') +
          `; give this group a base image it can boot.`,
      );
    }
    if (report.ext4.unsupported.length > 0 || report.ext4.needsRecovery)
      problems.push(
        ...report.warnings.filter((w) => /e2fsprogs|journal recovery/.test(w)).map((w) => `${node.base!.image}: ${w}`),
      );
    if (node.edits.some((e) => e.op === 'admin') && userMechanism(report) === undefined) {
      problems.push(
        `${node.base!.image} is Raspberry Pi OS ${report.release.codename}, which creates no user from userconf.txt or cloud-init (that came with bullseye images from 2022-04); use a newer image or remove admin from the profile.`,
      );
    }
    if (node.interfaces.length > 0 && !networkStack(report)) {
      problems.push(
        `${node.base!.image} has neither NetworkManager nor dhcpcd enabled, so ${node.hostname}'s static addresses cannot be configured; use a Raspberry Pi OS Lite image.`,
      );
    }
  }
  if (problems.length > 0) throw new UserError([...new Set(problems)].join('\n'));
}

/** Every secret a node's edits need, by kind. */
function secretKinds(node: NodePlan): SecretKind[] {
  return node.edits.flatMap((e): SecretKind[] => {
    if (e.op === 'secret') return [e.secret];
    if (e.op === 'admin') return ['admin-password'];
    if (e.op === 'network' && e.interfaces.some((i) => i.kind === 'wifi')) return ['wifi'];
    return [];
  });
}

/** Load the secrets the targets' edits need: the cluster key (created on first use), the join token, the admin's password hash, the Wi-Fi. */
async function loadSecrets(ctx: BuildContext): Promise<void> {
  const kinds = new Set(ctx.targets.flatMap(secretKinds));
  if (kinds.size === 0) return;
  if (!ctx.options.secrets) throw new Error('the plan needs secrets but the build has no profile to find them beside');
  const { profileFile, admin } = ctx.options.secrets;
  // Everything but the join token lives in the secrets file.
  if ([...kinds].some((k) => k !== 'join-token')) {
    const stored = await loadOrCreateSecrets(profileFile, ctx.plan.cluster);
    const { clusterKey } = stored;
    if (kinds.has('admin-password'))
      ctx.secrets['admin-password'] = await adminPasswordHash(admin!, stored, profileFile, ctx.plan.cluster);
    if (kinds.has('wifi')) ctx.secrets.wifi = checkWifi(stored.wifi, secretsPath(profileFile, ctx.plan.cluster));
    ctx.secrets['cluster-public-key'] = `${clusterKey.public}\n`;
    ctx.secrets['cluster-key'] = clusterKey.private;
    // Worker images carry only the public key, restricted to running the join script.
    ctx.secrets['authorized-key'] = `restrict,command="/usr/local/lib/swarmcard/join" ${clusterKey.public}\n`;
  }
  if (kinds.has('join-token')) {
    const token = (await readFile(ctx.options.secrets.joinTokenFile!, 'utf8')).trim();
    if (!/^SWMTKN-1-[\w-]+$/.test(token))
      throw new UserError(
        `${ctx.options.secrets.joinTokenFile} does not hold a swarm join token (SWMTKN-1-…); write the output of "docker swarm join-token -q worker" into it.`,
      );
    ctx.secrets['join-token'] = `${token}\n`;
  }
}

/** What a node's image holds that must be kept private (the public key is not a secret). */
function secretsIn(node: NodePlan): string[] {
  const kinds = new Set(secretKinds(node));
  return (Object.keys(secretNames) as SecretKind[])
    .filter((k) => kinds.has(k) && k !== 'authorized-key' && k !== 'cluster-public-key')
    .map((k) => secretNames[k]);
}

/** How the image's release creates a user: cloud-init (trixie), userconf.txt (bullseye 2022-04+, bookworm). */
function userMechanism(report: ImageReport): 'userconf' | 'cloud-init' | undefined {
  if (report.network.cloudInit.enabled) return 'cloud-init';
  return ['bullseye', 'bookworm', 'trixie'].includes(report.release.codename) ? 'userconf' : undefined;
}

/** Turn the plan's abstract edits into concrete ones for the image's release. */
export function renderForRelease(
  ctx: { cluster: string },
  node: NodePlan,
  report: ImageReport,
  secrets: SecretValues = {},
): Edit[] {
  const stack = networkStack(report) ?? 'networkmanager';
  return node.edits.flatMap((edit): Edit[] => {
    if (edit.op === 'network')
      return renderNetwork(stack, edit.interfaces, { cluster: ctx.cluster, index: node.index }, secrets.wifi);
    if (edit.op === 'waitOnline') return renderWaitOnline(stack);
    if (edit.op === 'admin') {
      const hash = secrets['admin-password'];
      if (hash === undefined) throw new Error('no value for admin-password');
      return renderAdmin(userMechanism(report) ?? 'userconf', edit, hash);
    }
    if (edit.op === 'secret') {
      const content = secrets[edit.secret];
      if (content === undefined) throw new Error(`no value for ${edit.secret}`);
      const ownDir = edit.path.startsWith('/root/.ssh/')
        ? [{ origin: edit.origin, op: 'mkdir' as const, path: '/root/.ssh', mode: 0o700 }]
        : [];
      return [
        ...ownDir,
        {
          origin: edit.origin,
          op: 'write',
          partition: 'root',
          path: edit.path,
          content,
          mode: edit.mode,
          uid: 0,
          gid: 0,
        },
      ];
    }
    if (edit.op === 'hostname' && report.network.cloudInit.enabled)
      return [edit, ...renderCloudInit({ cluster: ctx.cluster, index: node.index, hostname: node.hostname })];
    return [edit];
  });
}

/**
 * Clone, edit and verify one node; returns its manifest entry once its sha256 is known. The hash
 * (CPU-bound, ~1 s/GiB) runs while the next node is copied (I/O in the kernel), so the caller
 * starts the next node before awaiting it.
 */
async function buildNode(ctx: BuildContext, node: NodePlan, position: string): Promise<() => Promise<ManifestNode>> {
  const base = ctx.bases.get(baseKey(node.base!))!;
  const out = join(ctx.dir, node.file);
  const started = Date.now(); // progress display only; never written into an image
  log.info(`${position} ${node.file}: cloning, editing and verifying`);
  // Clean clone first, so nothing a profile adds is removed by it.
  const edits = [...hygieneEdits(base.report), ...renderForRelease(ctx.plan, node, base.report, ctx.secrets)];
  const diskId = Number.parseInt(node.diskId, 16);
  await cloneImage(base.path, out, async (partial) => {
    const layout = await readLayout(partial);
    await writeDiskId(partial, diskId);
    await applyEdits(layout, edits, {
      epoch: ctx.options.epoch,
      ext4Backend: ctx.options.ext4Backend,
      before: {
        boot: (fs) => retargetCmdline(fs, layout.mbr.diskId, diskId),
        root: (fs) => retargetFstab(fs, layout.mbr.diskId, diskId),
      },
    });
  });
  log.info(`${position} ${node.file}: written and verified in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const size = (await stat(out)).size;
  const secrets = secretsIn(node);
  const hashing = sha256Of(out);
  hashing.catch(() => undefined); // awaited by the caller; avoid an unhandled rejection meanwhile
  return async () => ({
    index: node.index,
    hostname: node.hostname,
    role: node.role,
    board: node.board,
    file: node.file,
    sha256: await hashing,
    size,
    diskId: node.diskId,
    release: base.report.release.codename,
    arch: base.report.arch.arch,
    interfaces: node.interfaces.map((i) => ({
      name: i.name,
      address: i.address,
      ...(i.gateway ? { gateway: i.gateway } : {}),
      ...(i.mac ? { mac: i.mac } : {}),
    })),
    ...(node.gadget ? { gadget: node.gadget } : {}),
    overlays: node.overlays.map((o) => o.id),
    ...(secrets.length > 0 ? { secrets } : {}),
  });
}

async function buildHostKit(ctx: BuildContext): Promise<Manifest['hostKit']> {
  const host = ctx.plan.nodes.find((n) => n.role === 'host' && n.interfaces.some((i) => i.kind === 'usb-host-link'));
  if (!host) return undefined;
  // A laptop or PC host runs NetworkManager; render for it, without cloud-init.
  const asPc = {
    network: { networkManager: { enabled: true }, dhcpcd: { enabled: false }, cloudInit: { enabled: false } },
  } as ImageReport;
  // Only the host side of the links (core edits and the host's own overlays): the swarm's files,
  // users and keys stay in the image.
  const hostOverlays = new Set(
    host.overlays.map((o) => o.id).filter((id) => id !== 'swarm-node' && id !== 'admin-user'),
  );
  const networkOnly = {
    ...host,
    edits: host.edits.filter((e) => (e.origin === 'core' || hostOverlays.has(e.origin)) && e.op !== 'secret'),
  };
  const file = 'host-kit.tar';
  await writeHostKit(
    join(ctx.dir, file),
    hostKitFiles(networkOnly, renderForRelease(ctx.plan, networkOnly, asPc), ctx.plan.cluster),
    ctx.options.epoch,
  );
  log.info(`${file}: the host side for a laptop or PC host`);
  return { file, sha256: await sha256Of(join(ctx.dir, file)) };
}

/** Entries of a previous manifest for nodes this run did not rebuild (`--only`) and still present. */
async function carriedOver(ctx: BuildContext): Promise<ManifestNode[]> {
  const previous = await readFile(join(ctx.dir, 'manifest.json'), 'utf8').then(
    (t) => JSON.parse(t) as Manifest,
    () => undefined,
  );
  if (!previous || previous.cluster !== ctx.plan.cluster) return [];
  const rebuilt = new Set(ctx.built.map((n) => n.index));
  const planned = new Map(ctx.plan.nodes.map((n) => [n.index, n.file]));
  const kept: ManifestNode[] = [];
  for (const n of previous.nodes) {
    if (rebuilt.has(n.index) || planned.get(n.index) !== n.file) continue;
    if (
      await stat(join(ctx.dir, n.file)).then(
        () => true,
        () => false,
      )
    )
      kept.push(n);
  }
  return kept;
}

export async function buildCluster(plan: ClusterPlan, options: BuildOptions): Promise<Manifest> {
  const dir = join(options.out, plan.cluster);
  const targets = plan.nodes.filter((n) => n.board !== 'pc' && (!options.only || options.only.has(n.index)));
  const ctx: BuildContext = { plan, options, dir, targets, bases: new Map(), built: [], secrets: {} };

  await resolveBases(ctx);
  verifyNodes(ctx);
  await loadSecrets(ctx);
  await mkdir(dir, { recursive: true });
  const entries: (() => Promise<ManifestNode>)[] = [];
  for (const [i, node] of targets.entries()) entries.push(await buildNode(ctx, node, `[${i + 1}/${targets.length}]`));
  for (const entry of entries) ctx.built.push(await entry());
  const hostKit = await buildHostKit(ctx);

  const manifest: Manifest = {
    cluster: plan.cluster,
    tool: { name: 'swarmcard', version: options.toolVersion },
    profile: {
      file: plan.profile.split('/').at(-1)!,
      sha256: createHash('sha256')
        .update(await readFile(plan.profile))
        .digest('hex'),
    },
    sourceDateEpoch: options.epoch,
    bases: [...ctx.bases.values()].map((b) => ({
      image: b.spec.image.split('/').at(-1)!,
      ...(b.sha256 ? { sha256: b.sha256 } : {}),
      release: b.report.release.codename,
      arch: b.report.arch.arch,
    })),
    nodes: [...(await carriedOver(ctx)), ...ctx.built],
    ...(hostKit ? { hostKit } : {}),
  };
  await writeManifest(dir, manifest);
  for (const node of manifest.nodes) {
    if (node.secrets)
      log.warn(`${node.file} holds ${node.secrets.join(' and ')}: keep the image (and cards flashed from it) private.`);
  }
  return manifest;
}
