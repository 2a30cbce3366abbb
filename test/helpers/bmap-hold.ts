/**
 * `node bmap-hold.js IMAGE OUT`: writeBmap in a process of its own, with the CLI's signal handling,
 * so a test can send it SIGINT while it reads the image and check what is left. Prints "done" when
 * it finished; after a signal the handler exits 128+signal once every cleanup ran.
 */
import { writeBmap } from '../../builder/release/bmap.js';
import { installSignalCleanup, interrupted } from '../../builder/util/scope.js';

const [image, out] = process.argv.slice(2) as [string, string];
installSignalCleanup();
setInterval(() => undefined, 1000); // the signal handler, not the end of the work, ends the process

try {
  await writeBmap(image, out);
  process.stdout.write('done\n');
  process.exit(0);
} catch (error) {
  if (!interrupted()) {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  }
}
