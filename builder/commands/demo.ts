/**
 * swarmcard demo [--out DIR] [--ext4-backend debugfs|loop]
 * The main job on the built-in demo base (a bookworm armhf fixture): inspect the base, clone it
 * into one node image with its own disk id, hostname and SSH enabled, verify it and inspect the
 * result. A real image goes through `swarmcard inspect` / `build` with --base.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { makeFixtureImage, FIXTURE_EPOCH } from '../fixture/make-fixture-image.js';
import { withPartition, type Ext4Backend } from '../fs/partition.js';
import { cloneImage, writeDiskId } from '../image/clone.js';
import { deriveDiskId, retargetCmdline, retargetFstab } from '../image/identity.js';
import { inspectImage } from '../image/inspect.js';
import { readLayout } from '../image/layout.js';
import { formatDiskId } from '../image/mbr.js';
import { log } from '../log.js';
import { cacheDir } from '../source/cache.js';
import { resolveBaseImage } from '../source/base-image.js';
import { setMarkedBlock } from '../text/marked-block.js';
import { buildEpoch } from '../util/epoch.js';
import { renderReport } from './inspect.js';

export const DEMO_FLAVOUR = 'bookworm-armhf';

/** The built-in demo base: generated once into the cache. */
export async function demoBaseImage(): Promise<string> {
  const path = join(cacheDir(), 'demo', `${DEMO_FLAVOUR}.img`);
  if (!(await stat(path).then((s) => s.isFile(), () => false))) {
    await mkdir(join(cacheDir(), 'demo'), { recursive: true });
    log.step(`generating the built-in demo base image (${DEMO_FLAVOUR})`);
    await makeFixtureImage(DEMO_FLAVOUR, path);
  }
  return path;
}

/** Clone the base into one node image: own disk id, hostname, SSH on, a config.txt block. */
export async function buildDemoNode(
  base: string,
  out: string,
  options: { epoch: number; ext4Backend?: Ext4Backend; hostname: string; index: number },
): Promise<number> {
  const edit = { epoch: options.epoch, ext4Backend: options.ext4Backend };
  const { hostname } = options;
  return cloneImage(base, out, async (partial) => {
    const layout = await readLayout(partial);
    const diskId = deriveDiskId('demo', options.index);
    // One session per partition: every edit of a partition goes into one debugfs/mtools batch.
    await writeDiskId(partial, diskId);
    await withPartition(layout, 'boot', edit, async (fs) => {
      await retargetCmdline(fs, layout.mbr.diskId, diskId);
      await fs.write('/ssh', '');
      const config = await fs.readText('/config.txt');
      await fs.write('/config.txt', setMarkedBlock(config, ['dtoverlay=dwc2', 'gpu_mem=16'], { id: 'demo', section: 'all' }));
    });
    await withPartition(layout, 'root', edit, async (fs) => {
      await retargetFstab(fs, layout.mbr.diskId, diskId);
      await fs.write('/etc/hostname', `${hostname}\n`);
      const hosts = await fs.readText('/etc/hosts');
      await fs.write('/etc/hosts', hosts.replace(/^127\.0\.1\.1\s.*$/m, `127.0.1.1\t${hostname}`));
    });
    return diskId;
  });
}

export async function demoCommand(options: { out: string; ext4Backend?: Ext4Backend }): Promise<void> {
  const epoch = buildEpoch(FIXTURE_EPOCH);
  const base = await resolveBaseImage({ location: await demoBaseImage() });
  log.step(`inspecting the base image ${base.path}`);
  process.stdout.write(renderReport(await inspectImage(base.path)));

  const hostname = 'node1';
  const out = join(options.out, 'demo', `01-${hostname}.img`);
  log.step(`cloning node 1 (${hostname}) into ${out}`);
  const diskId = await buildDemoNode(base.path, out, { epoch, ext4Backend: options.ext4Backend, hostname, index: 1 });
  log.info(`disk id 0x${formatDiskId(diskId)}, hostname ${hostname}, ssh enabled; every change read back`);
  log.step(`inspecting the node image ${out}`);
  const report = await inspectImage(out);
  process.stdout.write(renderReport(report));
  for (const warning of report.warnings) log.warn(warning);
  log.step(`done: ${out}`);
}
