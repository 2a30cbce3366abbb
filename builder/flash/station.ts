/**
 * The burn station: `swarmcard flash dist/<cluster> --station` waits for cards and writes each newly
 * inserted removable card with the next node not yet flashed (or the one named by --node), several
 * readers at once, one progress line per card, and keeps flash-log.jsonl (flash-log.ts). Cards
 * already in a reader when the station starts are left alone: only an insertion starts a flash.
 *
 * A card is recognised by its content: a card whose MBR disk id is a node's (every node has its
 * own) and whose node the log has verified already holds it, and is not overwritten unless
 * --reflash. Readers are found by polling lsblk (SWARMCARD_STATION_POLL_MS, default 1000), so the
 * tests can script insertions through SWARMCARD_LSBLK.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage, UserError } from '../errors.js';
import { DISK_ID_OFFSET, hasBootSignature } from '../formats/mbr.js';
import { formatBytes, log, type Progress } from '../log.js';
import { checkInterrupted, InterruptedError, interrupted, interruptSignal, withScope } from '../util/scope.js';
import { readCardHead, unmountAll } from './device.js';
import { type Drive, describeDrive, driveRefusal, listDrives } from './drives.js';
import { flashCard } from './flash-card.js';
import { type Attempt, appendLog, newId, readLog, verifiedNodes } from './flash-log.js';
import { type NodeEntry, readManifest, resolveFlashImage } from './image.js';
import { roundUp } from './write.js';

export interface StationOptions {
  /** Write this node (index or hostname) to every card, instead of the next one not yet flashed. */
  node?: string;
  unmount: boolean;
  forceNonRemovable: boolean;
  /** Overwrite a card that already holds a verified node. */
  reflash: boolean;
}

const label = (n: { index: number; hostname: string }) => `${String(n.index).padStart(2, '0')} ${n.hostname}`;

/** One line per card being written, redrawn in place on a terminal; messages scroll above them. */
class Display {
  private readonly tty = process.stderr.isTTY === true;
  private readonly rows = new Map<string, string>();
  private drawn = 0;

  private clear(): void {
    if (this.tty && this.drawn > 0) process.stderr.write(`\x1b[${this.drawn}A\x1b[J`);
    this.drawn = 0;
  }

  private draw(): void {
    if (!this.tty) return;
    for (const row of this.rows.values()) process.stderr.write(`${row}\n`);
    this.drawn = this.rows.size;
  }

  say(message: string, warn = false): void {
    this.clear();
    if (warn) log.warn(message);
    else log.info(message);
    this.draw();
  }

  /** A progress line for the card in `device`. */
  bar(device: string): (what: string, total: number) => Progress {
    return (what, total) => {
      const started = Date.now();
      let last = 0;
      const line = (done: number) => {
        const seconds = Math.max((Date.now() - started) / 1000, 0.001);
        const rate = done / seconds;
        const left = rate > 0 && done < total ? `, ${Math.ceil((total - done) / rate)} s left` : '';
        const pct = ((100 * done) / Math.max(total, 1)).toFixed(0).padStart(3);
        const of = `${formatBytes(done)} of ${formatBytes(total)}`;
        return `${device}: ${what} ${pct}% ${of} (${formatBytes(rate)}/s${left})`;
      };
      return {
        update: (done) => {
          if (!this.tty || Date.now() - last < 100) return;
          last = Date.now();
          this.clear();
          this.rows.set(device, line(done));
          this.draw();
        },
        done: () => {
          if (this.tty) {
            this.clear();
            this.rows.set(device, line(total));
            this.draw();
          } else log.info(line(total));
        },
      };
    };
  }

  finish(device: string): void {
    this.clear();
    this.rows.delete(device);
    this.draw();
  }
}

/** The node whose disk id the card's MBR carries, if any. */
function holder(head: Buffer, nodes: NodeEntry[]): NodeEntry | undefined {
  if (!hasBootSignature(head)) return undefined;
  const diskId = head.readUInt32LE(DISK_ID_OFFSET).toString(16).padStart(8, '0');
  return nodes.find((n) => n.diskId?.toLowerCase() === diskId);
}

const identity = (d: Drive) => `${d.serial ?? ''}|${d.model ?? ''}|${d.size}`;
const reader = (d: Drive) => [d.vendor, d.model].filter(Boolean).join(' ') || d.path;

async function clusterNodes(dir: string): Promise<NodeEntry[]> {
  const manifest = await readManifest(dir);
  if (!manifest || manifest.nodes.length === 0)
    throw new UserError(
      `${dir} is not a built cluster (no manifest.json with nodes); --station and --status need one.`,
    );
  return [...manifest.nodes].sort((a, b) => a.index - b.index);
}

export async function runStation(dir: string, options: StationOptions): Promise<void> {
  const nodes = await clusterNodes(dir);
  const named = options.node === undefined ? undefined : (await resolveFlashImage(dir, options.node)).node;
  const fixed = named && nodes.find((n) => n.index === named.index);
  const verified = verifiedNodes(await readLog(dir));
  const inProgress = new Set<number>();
  const left = () => nodes.filter((n) => !verified.has(n.index));
  if (!fixed && left().length === 0) {
    log.step(`every node of ${dir} is flashed and verified already; "swarmcard flash ${dir} --status" lists the cards`);
    return;
  }
  const display = new Display();
  const present = new Map<string, string>();
  for (const d of await listDrives())
    if (d.size > 0) {
      present.set(d.path, identity(d));
      if (d.removable && d.system.length === 0)
        display.say(
          `${d.path} (${describeDrive(d)}) was there before the station started: remove and insert it to flash it`,
        );
    }
  const what = fixed
    ? `node ${label(fixed)} on every card`
    : `${left().length} node(s) left: ${left().map(label).join(', ')}`;
  log.step(`station for ${dir}: ${what}; insert cards (Ctrl-C stops)`);

  const busy = new Set<string>();
  const jobs = new Set<Promise<void>>();
  const job = async (d: Drive) => {
    const refusal = driveRefusal(d, options);
    if (refusal) return display.say(`not flashed: ${refusal}`, true);
    const head = await readCardHead(d.path).catch(() => Buffer.alloc(0));
    const holds = holder(head, nodes);
    if (holds && verified.has(holds.index) && !options.reflash)
      return display.say(
        `the card in ${d.path} already holds ${label(holds)} (verified); not overwritten — remove it, ` +
          'or restart the station with --reflash to overwrite such cards',
      );
    // Chosen with no await before it is marked, so two readers never get the same node.
    const node = fixed ?? left().find((n) => !inProgress.has(n.index));
    if (!node) return display.say(`every node is flashed or being flashed: remove the card in ${d.path}`);
    inProgress.add(node.index);
    busy.add(d.path);
    try {
      await withScope(async (scope) => {
        const image = await resolveFlashImage(dir, String(node.index));
        if (roundUp(image.size, d.logicalSectorSize) > d.size)
          throw new UserError(
            `${image.name} needs ${formatBytes(image.size)} and the card holds ${formatBytes(d.size)}`,
          );
        const drive = options.unmount && d.mounts.length > 0 ? await unmountAll(d) : d;
        const id = newId();
        const card = { device: d.path, serial: d.serial, model: reader(d), size: d.size };
        await appendLog(dir, {
          event: 'start',
          id,
          node: node.index,
          hostname: node.hostname,
          file: image.name,
          ...(image.sha256 ? { sha256: image.sha256 } : {}),
          ...(node.diskId ? { diskId: node.diskId } : {}),
          ...card,
          time: new Date().toISOString(),
        });
        let ended = false;
        const end = async (result: Attempt['result'], error?: string) => {
          ended = true;
          await appendLog(dir, {
            event: 'end',
            id,
            result,
            ...(error ? { error } : {}),
            time: new Date().toISOString(),
          });
        };
        // Ctrl-C or a crash of this flash: the log says incomplete, and the node is offered again.
        scope.defer(`log ${d.path}`, () => (ended ? undefined : end('incomplete')));
        display.say(`${d.path}: writing ${label(node)} (${image.name}) to ${describeDrive(drive)}`);
        try {
          await flashCard(image, drive, { quiet: true, progress: display.bar(d.path) });
        } catch (error) {
          if (error instanceof InterruptedError || interrupted()) throw error;
          await end('failed', errorMessage(error));
          throw error;
        }
        await end('verified');
        const attempt = { node: node.index } as Attempt;
        verified.set(node.index, [...(verified.get(node.index) ?? []), attempt]);
        display.finish(d.path);
        display.say(`remove the card in ${d.path} (${reader(d)}): it is ${label(node)} — label it`);
      });
    } catch (error) {
      display.finish(d.path);
      if (error instanceof InterruptedError || interrupted()) throw error;
      display.say(`${d.path}: ${errorMessage(error).replace(/\.$/, '')}; ${label(node)} is offered again`, true);
    } finally {
      inProgress.delete(node.index);
      busy.delete(d.path);
    }
  };

  const failures: unknown[] = [];
  while (fixed || left().length > 0 || jobs.size > 0) {
    checkInterrupted();
    if (failures.length > 0) throw failures[0];
    const drives = await listDrives();
    const withCard = new Map(drives.filter((d) => d.size > 0).map((d) => [d.path, d]));
    for (const path of [...present.keys()]) if (!withCard.has(path)) present.delete(path);
    for (const [path, d] of withCard) {
      if (present.get(path) === identity(d)) continue;
      present.set(path, identity(d));
      if (busy.has(path) || d.system.length > 0) continue;
      const running: Promise<void> = job(d)
        .catch((error: unknown) => {
          failures.push(error);
        })
        .finally(() => jobs.delete(running));
      jobs.add(running);
    }
    if (!fixed && left().length === 0 && jobs.size === 0) break;
    await sleep(Number(process.env.SWARMCARD_STATION_POLL_MS) || 1000, undefined, { signal: interruptSignal }).catch(
      () => checkInterrupted(),
    );
  }
  await Promise.all(jobs);
  if (failures.length > 0) throw failures[0];
  log.step(
    `all ${nodes.length} node(s) of ${dir} are flashed and verified; "swarmcard flash ${dir} --status" lists them`,
  );
}

/** `--status`: which nodes are on which cards, which are left. */
export async function stationStatus(dir: string): Promise<string> {
  const nodes = await clusterNodes(dir);
  const attempts = await readLog(dir);
  const verified = verifiedNodes(attempts);
  const width = Math.max(...nodes.map((n) => label(n).length));
  const lines: string[] = [];
  for (const n of nodes) {
    const name = label(n).padEnd(width);
    const cards = verified.get(n.index) ?? [];
    if (cards.length === 0) {
      const last = attempts.filter((a) => a.node === n.index).at(-1);
      const why = last ? ` (last attempt ${last.result} on ${last.device} at ${last.end ?? last.time})` : '';
      lines.push(`${name}  left${why}`);
      continue;
    }
    cards.forEach((a, i) => {
      const card = [a.model, a.serial ? `serial ${a.serial}` : undefined, formatBytes(a.size)]
        .filter(Boolean)
        .join(', ');
      lines.push(`${i === 0 ? name : ' '.repeat(width)}  verified ${a.end ?? a.time} in ${a.device}: ${card}`);
    });
  }
  const done = nodes.filter((n) => verified.has(n.index)).length;
  const rest = nodes.filter((n) => !verified.has(n.index)).map(label);
  const leftOver = rest.length ? `, left: ${rest.join(', ')}` : '';
  const head = `${dir}: ${nodes.length} node(s), ${done} flashed and verified${leftOver}`;
  return `${head}\n${lines.join('\n')}\n`;
}
