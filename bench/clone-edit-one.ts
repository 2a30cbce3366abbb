/**
 * One clone + edit of one node (own disk id, hostname, SSH on, a config.txt block), in one boot and
 * one root session as the build does: `node clone-edit-one.js BASE OUT`. Prints the in-process
 * time (what each node of a build costs; Node's start-up is paid once per build, not per node).
 */
import { withPartition } from '../builder/fs/partition.js';
import { cloneImage, writeDiskId } from '../builder/image/clone.js';
import { retargetCmdline, retargetFstab } from '../builder/image/identity.js';
import { readLayout } from '../builder/image/layout.js';
import { deriveDiskId } from '../builder/plan/ids.js';
import { setMarkedBlock } from '../builder/text/marked-block.js';

const [base, out] = process.argv.slice(2) as [string, string];
const started = process.hrtime.bigint();
const edit = { epoch: 1700000000 };
await cloneImage(base, out, async (partial) => {
  const layout = await readLayout(partial);
  const diskId = deriveDiskId('bench', 1);
  await writeDiskId(partial, diskId);
  await withPartition(layout, 'boot', edit, async (fs) => {
    await retargetCmdline(fs, layout.mbr.diskId, diskId);
    await fs.write('/ssh', '');
    await fs.write(
      '/config.txt',
      setMarkedBlock(await fs.readText('/config.txt'), ['dtoverlay=dwc2', 'gpu_mem=16'], {
        id: 'bench',
        section: 'all',
      }),
    );
  });
  await withPartition(layout, 'root', edit, async (fs) => {
    await retargetFstab(fs, layout.mbr.diskId, diskId);
    await fs.write('/etc/hostname', 'node1\n');
    await fs.write('/etc/hosts', (await fs.readText('/etc/hosts')).replace(/^127\.0\.1\.1\s.*$/m, '127.0.1.1\tnode1'));
  });
});
process.stdout.write(`NODE_SECONDS ${Number(process.hrtime.bigint() - started) / 1e9}\n`);
