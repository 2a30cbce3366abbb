/**
 * A namespace of a test's own, kept by a holder process (`unshare --KIND sleep infinity`) rather
 * than a name: it goes when the holder does, and `setpriv --pdeathsig KILL` makes the holder die
 * with the test worker, even on Ctrl-C. `nsenter -t PID --KIND` runs a command inside it.
 */
import { readlink } from 'node:fs/promises';
import { execa, type ResultPromise } from 'execa';

/**
 * The holder of a new namespace of `kind`, once the namespace exists; the caller kills it. (Wrapped:
 * an async function returning the subprocess itself would wait for it to end.)
 */
export async function namespaceHolder(kind: 'net' | 'mnt'): Promise<{ pid: number; process: ResultPromise }> {
  const flag = kind === 'net' ? '--net' : '--mount';
  const holder = execa('setpriv', ['--pdeathsig', 'KILL', 'unshare', flag, 'sleep', 'infinity'], {
    reject: false,
    stdin: 'ignore',
    cleanup: true,
  });
  const own = await readlink(`/proc/self/ns/${kind}`);
  // unshare execs sleep in the new namespace: wait until the holder's namespace is no longer ours.
  for (let tries = 0; ; tries++) {
    const ns = await readlink(`/proc/${holder.pid}/ns/${kind}`).catch(() => own);
    if (ns !== own && holder.pid !== undefined) return { pid: holder.pid, process: holder };
    if (tries > 200) {
      holder.kill('SIGKILL');
      await holder;
      throw new Error(`the test's ${kind} namespace did not come up`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
