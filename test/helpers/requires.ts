/**
 * Tests that need something this machine may lack (root, loop devices, network namespaces) are
 * registered as skipped, with the reason in the title, so a run without them reports "skipped"
 * and never a green pass that checked nothing.
 */

import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type Implementation } from 'ava';
import { execa } from 'execa';

/** `test` (or `test.serial`) when nothing is missing, else `test.skip` with `— skipped: reason` in the title. */
export function testIf(missing: string | undefined, options: { serial?: boolean } = {}) {
  return <Args extends unknown[]>(title: string, implementation: Implementation<Args>, ...args: Args) => {
    if (missing) test.skip(`${title} — skipped: ${missing}`, implementation, ...args);
    else (options.serial ? test.serial : test)(title, implementation, ...args);
  };
}

/** Undefined as root, else why not. */
export function missingRoot(): string | undefined {
  return process.getuid?.() === 0 ? undefined : 'needs root';
}

/** Undefined when a loop device attaches at an offset here (root and a loop-capable kernel), else why not. */
export async function missingLoop(): Promise<string | undefined> {
  if (missingRoot()) return 'loop devices need root';
  const dir = await mkdtemp(join(tmpdir(), 'swarmcard-test-loop-'));
  try {
    const file = join(dir, 'probe.img');
    await writeFile(file, '');
    await truncate(file, 2 * 1048576);
    const attach = await execa('losetup', ['--find', '--show', '--offset', '1048576', file], { reject: false });
    if (attach.exitCode !== 0) return `no loop device attaches here (${attach.stderr.trim()})`;
    await execa('losetup', ['--detach', attach.stdout.trim()], { reject: false });
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Undefined when every program is on PATH or in an sbin directory, else which one is missing. */
export async function missingPrograms(programs: string[]): Promise<string | undefined> {
  for (const program of programs) {
    const found = await execa(
      'sh',
      ['-c', 'command -v "$0" || test -x "/usr/sbin/$0" || test -x "/sbin/$0"', program],
      {
        reject: false,
      },
    );
    if (found.exitCode !== 0) return `needs ${program} (make test installs it)`;
  }
  return undefined;
}
