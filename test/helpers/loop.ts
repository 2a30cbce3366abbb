/** Whether this machine can run the loop backend: root, and a loop device that attaches at an offset. */
import { execa } from 'execa';

let probe: Promise<boolean> | undefined;

export function loopAvailable(image: string): Promise<boolean> {
  probe ??= (async () => {
    if (process.getuid?.() !== 0) return false;
    const attach = await execa('losetup', ['--find', '--show', '--offset', '0', '--sizelimit', '1048576', image], {
      reject: false,
    });
    if (attach.exitCode !== 0) return false;
    await execa('losetup', ['--detach', attach.stdout.trim()], { reject: false });
    return true;
  })();
  return probe;
}
