/**
 * One clone + edit of one node, as `swarmcard demo` does it: `node clone-edit-one.js BASE OUT`.
 * Prints the in-process time (what each node of a build costs; Node's start-up is paid once per
 * build, not per node).
 */
import { buildDemoNode } from '../builder/commands/demo.js';

const [base, out] = process.argv.slice(2) as [string, string];
const started = process.hrtime.bigint();
await buildDemoNode(base, out, { epoch: 1700000000, hostname: 'node1', index: 1 });
process.stdout.write(`NODE_SECONDS ${Number(process.hrtime.bigint() - started) / 1e9}\n`);
