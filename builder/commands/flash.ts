/**
 * swarmcard flash TARGET --device DEV [--node N|HOSTNAME] [--yes] [--unmount] [--force-non-removable]
 * Writes one image (or one node of a cluster folder) to a card and reads it back. Every check that
 * can refuse runs before anything is written: the image, the drive (system disk, no card,
 * read-only, in use, not removable, mounted), the size, then the user's confirmation.
 */
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { UserError } from '../errors.js';
import { unmountAll } from '../flash/device.js';
import { type Drive, describeDrive, driveRefusal, findDrive, majMinOf } from '../flash/drives.js';
import { flashCard } from '../flash/flash-card.js';
import { type FlashImage, resolveFlashImage } from '../flash/image.js';
import { runStation, stationStatus } from '../flash/station.js';
import { roundUp } from '../flash/write.js';
import { formatBytes, log } from '../log.js';

export interface FlashCommandOptions {
  device?: string;
  node?: string;
  yes: boolean;
  unmount: boolean;
  forceNonRemovable: boolean;
  station?: boolean;
  status?: boolean;
  reflash?: boolean;
}

const nodeName = (image: FlashImage) =>
  image.node ? `node ${String(image.node.index).padStart(2, '0')} ${image.node.hostname}` : undefined;

function readLine(): Promise<string> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin, terminal: false });
    let answer = '';
    lines.once('line', (line) => {
      answer = line;
      lines.close();
    });
    lines.once('close', () => {
      process.stdin.pause();
      resolve(answer);
    });
  });
}

/** Ask on the terminal; never take an answer from a pipe or a file. */
async function ask(what: string, question: string): Promise<void> {
  if (!process.stdin.isTTY)
    throw new UserError(
      `stdin is not a terminal, so swarmcard cannot ask before overwriting ${what}; add --yes to write without asking.`,
    );
  process.stderr.write(question);
  const answer = await readLine();
  if (!/^\s*y(es)?\s*$/i.test(answer))
    throw new UserError(`nothing was written: overwriting ${what} was not confirmed.`);
}

async function confirm(image: FlashImage, drive: Drive): Promise<void> {
  const parts = drive.partitions.map((p) => `${p.name}${p.label ? ` "${p.label}"` : ''}`).join(', ');
  const what = nodeName(image) ? `${image.name} (${nodeName(image)})` : image.name;
  const unmount =
    drive.mounts.length > 0 ? `; ${drive.mounts.map((m) => m.mountpoint).join(', ')} will be unmounted first` : '';
  await ask(
    drive.path,
    `${drive.path}: ${describeDrive(drive)}${parts ? `, holding ${parts}` : ''}\n` +
      `Everything on it will be replaced by ${what}${unmount}.\nWrite ${drive.path}? [y/N] `,
  );
}

/** --station and --status: a cluster folder, no --device. */
async function clusterMode(target: string, options: FlashCommandOptions): Promise<void> {
  const mode = options.status ? '--status' : '--station';
  if (options.station && options.status) throw new UserError('--station and --status do not go together; give one.');
  if (options.device !== undefined)
    throw new UserError(`${mode} works on every reader, so it takes no --device; leave --device out.`);
  if (!(await stat(target).catch(() => undefined))?.isDirectory())
    throw new UserError(`${mode} needs a cluster folder (dist/<cluster>), and ${target} is not a folder.`);
  if (options.status) return void process.stdout.write(await stationStatus(target));
  if (!options.yes)
    await ask(
      'the cards',
      `Every removable card inserted from now on will be overwritten with a node of ${target}.\n` +
        'Start the station? [y/N] ',
    );
  await runStation(target, {
    node: options.node,
    unmount: options.unmount,
    forceNonRemovable: options.forceNonRemovable,
    reflash: options.reflash === true,
  });
}

export async function flashCommand(target: string, options: FlashCommandOptions): Promise<void> {
  if (options.station || options.status) return clusterMode(target, options);
  if (options.reflash) throw new UserError('--reflash is for --station; leave it out.');
  if (options.device === undefined)
    throw new UserError(
      'swarmcard flash needs --device, the card to write (e.g. --device /dev/sdb); run "swarmcard drives" to see them.',
    );
  const image = await resolveFlashImage(target, options.node);
  let drive = await findDrive(options.device);
  const refusal = driveRefusal(drive, options);
  if (refusal) throw new UserError(refusal);
  if (roundUp(image.size, drive.logicalSectorSize) > drive.size)
    throw new UserError(
      `${image.name} needs ${formatBytes(image.size)} (${image.size} bytes) and ${drive.path} holds only ` +
        `${formatBytes(drive.size)} (${drive.size} bytes); use a larger card.`,
    );
  const home = await stat(image.path, { bigint: true });
  if (drive.members.includes(majMinOf(home.dev)))
    throw new UserError(`${image.path} is stored on ${drive.path} itself; copy it elsewhere first.`);
  if (!options.yes) await confirm(image, drive);
  if (options.unmount && drive.mounts.length > 0) drive = await unmountAll(drive);
  const outcome = await flashCard(image, drive);
  const node = nodeName(image);
  const what = image.bmap ? `${formatBytes(outcome.written)} of ${formatBytes(image.size)}` : formatBytes(image.size);
  process.stdout.write(
    `${drive.path}  ${image.name}${node ? ` (${node})` : ''}  wrote ${what}, verified against ` +
      `${outcome.verifiedAgainst} (${outcome.seconds.toFixed(1)} s)\n`,
  );
  log.step(`remove the card in ${drive.path}${node ? `: it is ${node} — label it` : ''}`);
}
