/**
 * One builder call in a process of its own, so a test can give it its own environment
 * (SWARMCARD_CACHE_DIR, SWARMCARD_DEBUGFS) without touching the shared process.env of the test
 * worker: `node child-op.js resolve SPEC-JSON | write-secret IMAGE`. Prints one JSON line:
 * `{ "value": … }` or `{ "error": { "name", "message" } }`. See isolated.ts.
 */
import { withPartition } from '../../builder/fs/partition.js';
import { readLayout } from '../../builder/image/layout.js';
import { resolveBaseImage } from '../../builder/source/base-image.js';

const [op, arg] = process.argv.slice(2) as [string, string];

async function run(): Promise<unknown> {
  switch (op) {
    case 'resolve':
      return resolveBaseImage(JSON.parse(arg));
    case 'write-secret':
      return withPartition(await readLayout(arg), 'root', { epoch: 1750000000 }, (fs) =>
        fs.write('/etc/secret', 'x', { mode: 0o600 }),
      );
    default:
      throw new Error(`unknown operation ${op}`);
  }
}

try {
  process.stdout.write(`${JSON.stringify({ value: (await run()) ?? null })}\n`);
} catch (error) {
  const { name, message } = error instanceof Error ? error : new Error(String(error));
  process.stdout.write(`${JSON.stringify({ error: { name, message } })}\n`);
}
