/**
 * The device side of a flash: unmounting what is mounted from it (only when asked), opening it
 * exclusively, and turning what the kernel says into one sentence. O_EXCL on a block device
 * claims it: opening fails with EBUSY while anything is mounted from it or another program holds
 * it exclusively, and while swarmcard holds it a mount of the card (an automounter racing us)
 * fails instead of corrupting it. O_DIRECT makes reads and writes bypass the page cache.
 */
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { run, ToolError } from '../exec/run.js';
import { type Drive, findDrive, isSystemMount } from './drives.js';
import { readFully, Slots } from './source.js';

const gone = new Set(['ENOENT', 'ENXIO', 'ENODEV', 'ENOMEDIUM']);

/** "/dev/sdb is not there any more …" — the card or reader went away. */
export const vanished = (device: string) =>
  `${device} is not there any more (the card or reader was removed); insert it again and run "swarmcard drives".`;

export async function openExclusive(device: string): Promise<FileHandle> {
  try {
    return await open(device, constants.O_RDWR | constants.O_EXCL | constants.O_DIRECT);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (code === 'EBUSY')
      throw new UserError(
        `${device} is in use (mounted, perhaps in another mount namespace such as a container's, ` +
          'or held by another program such as another flash); unmount or close it and try again.',
      );
    if (gone.has(code)) throw new UserError(vanished(device));
    if (code === 'EROFS') throw new UserError(`${device} is read-only (is the card's write-protect switch on?).`);
    if (code === 'EACCES' || code === 'EPERM')
      throw new UserError(`${device} may not be opened for writing (permission denied); run swarmcard flash as root.`);
    throw error;
  }
}

/** The card's first 4 KiB as the card holds them (O_DIRECT: never an old copy in the page cache). */
export async function readCardHead(device: string): Promise<Buffer> {
  const fh = await open(device, constants.O_RDONLY | constants.O_DIRECT);
  try {
    const slots = new Slots(1, 4096);
    const data = await slots.acquire();
    const read = await readFully(fh, data, 4096, 0);
    return Buffer.from(data.subarray(0, read));
  } finally {
    await fh.close();
  }
}

/** Unmount everything mounted from the drive, then make sure nothing is. */
export async function unmountAll(drive: Drive): Promise<Drive> {
  // The system check comes first (drives.ts); this one holds even if it did not.
  const system = drive.mounts.filter((m) => m.mountpoint === '[SWAP]' || isSystemMount(m.mountpoint));
  if (system.length > 0)
    throw new UserError(
      `${drive.path} holds ${system.map((m) => m.mountpoint).join(', ')}; swarmcard never unmounts those.`,
    );
  for (const { device, mountpoint } of drive.mounts) {
    const result = await run('umount', [mountpoint], { allowFailure: true }).catch((error: unknown) => {
      if (error instanceof ToolError) return { exitCode: 1, stderr: error.stderr };
      throw error;
    });
    if (result.exitCode !== 0) {
      const said = result.stderr.trim().split('\n')[0] ?? `exit code ${result.exitCode}`;
      throw new UserError(`cannot unmount ${device} from ${mountpoint} (${said}); close what uses it and try again.`);
    }
  }
  const after = await findDrive(drive.path);
  if (after.mounts.length > 0)
    throw new UserError(
      `${drive.path} is still mounted (${after.mounts.map((m) => m.mountpoint).join(', ')}) after unmounting; ` +
        'an automounter may be mounting it again: stop it and try again.',
    );
  return after;
}

/** One sentence for an I/O error on the device at `offset`. */
export function ioSentence(device: string, code: string, offset: number, operation: 'write' | 'read'): string {
  const at = `at byte ${offset}`;
  const doing = operation === 'write' ? 'writing' : 'verifying';
  if (gone.has(code))
    return `${device} went away (the card or reader was removed) while ${doing} ${at}; the card is incomplete.`;
  if (code === 'ENOSPC') return `${device} ended ${at}: the card is smaller than it said; use a larger card.`;
  if (code === 'EROFS' || code === 'EPERM')
    return `${device} refused the write ${at} (read-only: the write-protect switch?); the card is incomplete.`;
  return `${doing} ${device} failed ${at} (${code}: a bad card or reader?); the card is incomplete.`;
}
