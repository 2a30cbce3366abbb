/**
 * One clone + edit of one node (own disk id, hostname, SSH on, a config.txt block), in one boot and
 * one root session as the build does: `node clone-edit-one.js BASE OUT`. Prints the in-process
 * time (what each node of a build costs; Node's start-up is paid once per build, not per node).
 */
import { cloneImage } from '../builder/image/clone.js';
import { setDiskIdentity } from '../builder/image/identity.js';
import { applyEdits } from '../builder/pipeline/apply-edits.js';
import { deriveDiskId } from '../builder/plan/ids.js';

const [base, out] = process.argv.slice(2) as [string, string];
const started = process.hrtime.bigint();
await cloneImage(base, out, async (partial) => {
  const { layout, identity } = await setDiskIdentity(partial, deriveDiskId('bench', 1));
  const origin = 'bench';
  await applyEdits(
    layout,
    [
      ...identity,
      { origin, op: 'write', partition: 'boot', path: '/ssh', content: '' },
      { origin, op: 'configTxt', block: 'bench', section: 'all', lines: ['dtoverlay=dwc2', 'gpu_mem=16'] },
      { origin, op: 'hostname', hostname: 'node1' },
    ],
    { epoch: 1700000000 },
  );
});
process.stdout.write(`NODE_SECONDS ${Number(process.hrtime.bigint() - started) / 1e9}\n`);
