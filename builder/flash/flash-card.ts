/**
 * One card: open the device exclusively, write the image's ranges, flush the device, read every
 * range back from the device (bypassing the page cache) and compare. The caller has already
 * checked the drive (drives.ts) and asked the user; nothing here decides whether to write.
 */
import type { FileHandle } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { formatBytes, log, type Progress, progress } from '../log.js';
import { withScope } from '../util/scope.js';
import { ioSentence, openExclusive } from './device.js';
import type { Drive } from './drives.js';
import type { FlashImage } from './image.js';
import { Slots } from './source.js';
import { firstBadRange, firstDifference } from './verify.js';
import { DeviceIoError, planRanges, type WriteRange, writeRanges } from './write.js';

export interface FlashOutcome {
  device: string;
  image: FlashImage;
  mode: 'bmap' | 'whole';
  /** Bytes written (and read back). */
  written: number;
  /** What the read-back was compared with. */
  verifiedAgainst: string;
  seconds: number;
}

const SLOTS = 8;

function against(ranges: WriteRange[], image: FlashImage): string {
  if (!image.bmap) return image.sha256 ? "the manifest's sha256" : "the image's sha256";
  const extra = ranges.filter((r) => r.from === 'source').reduce((sum, r) => sum + r.end - r.start, 0);
  const left = extra ? ` (and ${formatBytes(extra)} of FAT system area it left out)` : '';
  return `the bmap's ${ranges[0]?.hash ?? 'sha256'} of each range${left}`;
}

/**
 * Test hook (SWARMCARD_TEST_CORRUPT_OFFSET): flip one byte on the device between the write and the
 * read-back, as a failing card would, so the suite can prove the read-back catches it.
 */
async function corruptForTest(fh: FileHandle, slots: Slots, sectorSize: number) {
  const offset = Number(process.env.SWARMCARD_TEST_CORRUPT_OFFSET);
  if (!Number.isSafeInteger(offset) || offset < 0) return;
  const data = await slots.acquire();
  try {
    const block = Math.floor(offset / 4096) * 4096;
    await fh.read(data, 0, Math.max(4096, sectorSize), block);
    data[offset - block] = data[offset - block]! ^ 0xff;
    await fh.write(data, 0, Math.max(4096, sectorSize), block);
    await fh.sync();
  } finally {
    slots.release(data);
  }
}

export interface FlashCardOptions {
  /** A progress line for a phase ("writing 03-otg3.img", "verifying /dev/sdb"); the log's own by default. */
  progress?: (label: string, total: number) => Progress;
  /** No "==> writing …" line (the station shows its own). */
  quiet?: boolean;
}

export async function flashCard(
  image: FlashImage,
  drive: Drive,
  options: FlashCardOptions = {},
): Promise<FlashOutcome> {
  const bar = options.progress ?? ((label: string, total: number) => progress(label, total, { eta: true }));
  const started = Date.now();
  const device = drive.path;
  return withScope(async (scope) => {
    const fh = await openExclusive(device);
    // Until every byte is written and flushed, an error or Ctrl-C leaves a half-written card.
    let written = false;
    scope.defer(`close ${device}`, async () => {
      await fh.close();
      if (!written) log.warn(`${device} was left incomplete: flash it again before using the card.`);
    });
    const ranges = await planRanges(image);
    const total = ranges.reduce((sum, r) => sum + (r.end - r.start), 0);
    const slots = new Slots(SLOTS);
    const sectorSize = drive.logicalSectorSize;
    const io = (operation: 'write' | 'read') => (error: unknown) => {
      if (error instanceof DeviceIoError) throw new UserError(ioSentence(device, error.code, error.offset, operation));
      throw error;
    };
    const of = image.bmap ? ` (${formatBytes(total)} mapped of ${formatBytes(image.size)})` : '';
    if (!options.quiet) log.step(`writing ${image.name} to ${device}${of}`);
    const writing = bar(`writing ${image.name}`, total);
    const digests = await writeRanges(fh, image, ranges, { slots, sectorSize, progress: writing }).catch(io('write'));
    await fh
      .sync()
      .catch((error: NodeJS.ErrnoException) =>
        io('write')(new DeviceIoError(error.code ?? 'EIO', total, 'write', error)),
      );
    writing.done();
    written = true;
    await corruptForTest(fh, slots, sectorSize);

    const checking = bar(`verifying ${device}`, total);
    const references = ranges.map((r, i) => r.expected ?? digests[i]!);
    const bad = await firstBadRange(fh, ranges, references, { slots, sectorSize, progress: checking }).catch(
      io('read'),
    );
    if (bad !== undefined) {
      const range = ranges[bad]!;
      const offset = await firstDifference(fh, image, range, { slots: new Slots(12), sectorSize }).catch(io('read'));
      const where = range.blocks ? ` (bmap blocks ${range.blocks[0]}–${range.blocks[1]})` : '';
      if (offset === undefined)
        throw new UserError(
          `${device} reads back the same bytes as ${image.path} at ${range.start}–${range.end - 1}${where} ` +
            'but their ' +
            `${range.hash} is not ${against(ranges, image)}: the image changed while flashing; flash it again.`,
        );
      throw new UserError(
        `${device} does not hold what was written: the first bad byte is at offset ${offset} ` +
          `(0x${offset.toString(16)})${where}; the card or reader is faulty, so try another card.`,
      );
    }
    checking.done();
    return {
      device,
      image,
      mode: image.bmap ? 'bmap' : 'whole',
      written: total,
      verifiedAgainst: against(ranges, image),
      seconds: (Date.now() - started) / 1000,
    };
  });
}
