/**
 * A process that opens a resource and waits, so a test can send it SIGINT and check that every
 * cleanup ran: `node hold.js clone|debugfs|loop IMAGE OUT`.
 */
import { withPartition } from '../../builder/fs/partition.js';
import { cloneImage } from '../../builder/image/clone.js';
import { readLayout } from '../../builder/image/layout.js';
import { installSignalCleanup } from '../../builder/util/scope.js';

const [mode, image, out] = process.argv.slice(2) as [string, string, string];
installSignalCleanup();
setInterval(() => undefined, 1000); // keep the event loop alive while "working"
const wait = () => {
  process.stdout.write('ready\n');
  return new Promise<never>(() => undefined);
};

if (mode === 'clone') {
  await cloneImage(image, out, wait);
} else {
  await withPartition(
    await readLayout(image),
    'root',
    { epoch: 1, ext4Backend: mode === 'loop' ? 'loop' : 'debugfs' },
    async (fs) => {
      await fs.write('/etc/held', 'x');
      return wait();
    },
  );
}
