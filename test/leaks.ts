/**
 * Proves the test suite leaves nothing behind. The Makefile's test target runs
 * `node build/test/leaks.js snapshot FILE` before `npx ava` and `… compare FILE` after it; compare
 * exits 1 naming everything that appeared meanwhile and is still there:
 * - processes of the programs the tests start: dockerd, containerd (and its shims), busybox (the
 *   swarm stack's httpd), registry / docker-registry, sshd, qemu;
 * - network namespaces (`ip netns list`);
 * - mounts under the temp directory; loop devices (`losetup -a`);
 * - temp entries named swarmcard-* (the fixture cache, swarmcard-test-fixtures-*, is kept on purpose);
 * - files written into the checkout (`git ls-files --others`): a fresh clone must stay clean, so
 *   no test may leave, say, a secrets file beside a shipped profile;
 * - `compare FILE SUITE_TMPDIR`: anything at all left in the suite's private temp directory (make
 *   test runs ava with TMPDIR=SUITE_TMPDIR), which is then removed when empty.
 * What existed before the run (a system sshd, another project's dockerd) is never blamed. Other
 * runs sharing the system temp directory can add swarmcard-* entries there: with SUITE_TMPDIR given,
 * only it is checked for temp entries (everything the suite writes goes there).
 */

import { readdir, readFile, readlink, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

interface Snapshot {
  processes: string[];
  namespaces: string[];
  mounts: string[];
  loopDevices: string[];
  tempEntries: string[];
  checkoutFiles: string[];
}

const watched = /^(dockerd|containerd|containerd-shim.*|busybox|httpd|registry|docker-registry|sshd|qemu.*)$/;

async function processes(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
    const [stat, cmdline, exe] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''),
      readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''),
      readlink(`/proc/${pid}/exe`).catch(() => ''),
    ]);
    if (!stat) continue;
    const comm = /\((.*)\)/.exec(stat)?.[1] ?? '';
    const argv = cmdline.split('\0').filter(Boolean);
    const names = [comm, basename(argv[0] ?? ''), basename(exe)];
    if (!names.some((n) => watched.test(n))) continue;
    // Field 22 (after the ")") is the start time: a PID reused later is a different process.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    found.push(`pid ${pid} (started ${start}): ${argv.join(' ').slice(0, 200)}`);
  }
  return found;
}

async function lines(file: string, args: string[], cwd?: string): Promise<string[]> {
  const result = await execa(file, args, { reject: false, cwd });
  return result.stdout.split('\n').filter(Boolean);
}

const checkout = fileURLToPath(new URL('../../', import.meta.url));

async function snapshot(): Promise<Snapshot> {
  const temp = tmpdir();
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((point) => point === temp || point.startsWith(`${temp}/`));
  return {
    processes: await processes(),
    namespaces: (await lines('ip', ['netns', 'list'])).map((l) => l.split(' ')[0]!),
    mounts,
    loopDevices: await lines('losetup', ['-a']),
    tempEntries: (await readdir(temp))
      .filter((n) => n.startsWith('swarmcard-') && !n.startsWith('swarmcard-test-fixtures-'))
      .map((n) => join(temp, n)),
    checkoutFiles: await lines('git', ['ls-files', '--others', '--directory'], checkout),
  };
}

const what: Record<keyof Snapshot, string> = {
  processes: 'process',
  namespaces: 'network namespace',
  mounts: 'mount',
  loopDevices: 'loop device',
  tempEntries: 'temp entry',
  checkoutFiles: 'file in the checkout',
};

/** Everything in `after` that was not in `before`, one line each. */
function leaked(before: Snapshot, after: Snapshot): string[] {
  return (Object.keys(what) as (keyof Snapshot)[]).flatMap((kind) =>
    after[kind].filter((item) => !before[kind].includes(item)).map((item) => `${what[kind]}: ${item}`),
  );
}

async function main(): Promise<number> {
  const [command, file, suiteTmp] = process.argv.slice(2);
  if (command === 'snapshot' && file) {
    await writeFile(file, JSON.stringify(await snapshot(), null, 2));
    return 0;
  }
  if (command === 'compare' && file) {
    const before = JSON.parse(await readFile(file, 'utf8')) as Snapshot;
    // A teardown's last kill may still be landing: look again for a few seconds before blaming.
    const look = async () => [
      // With a private TMPDIR everything the suite writes is in it; swarmcard-* entries in the shared
      // temp directory then belong to other runs.
      ...leaked(before, await snapshot()).filter((l) => !suiteTmp || !l.startsWith('temp entry: ')),
      ...(suiteTmp ? (await readdir(suiteTmp)).map((n) => `temp entry: ${join(suiteTmp, n)}`) : []),
    ];
    let leaks = await look();
    for (let i = 0; i < 10 && leaks.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 500));
      leaks = await look();
    }
    if (suiteTmp && leaks.length === 0) await rmdir(suiteTmp);
    if (leaks.length === 0) {
      console.log(
        'leak check: no process, namespace, mount, loop device, temp entry or checkout file outlived the tests',
      );
      return 0;
    }
    console.error(`error: the test suite left ${leaks.length} thing(s) behind:\n  ${leaks.join('\n  ')}`);
    return 1;
  }
  console.error('usage: node build/test/leaks.js snapshot|compare FILE');
  return 2;
}

process.exitCode = await main();
