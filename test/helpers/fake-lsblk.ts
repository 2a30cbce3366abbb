/**
 * Stands in for lsblk through SWARMCARD_LSBLK (see lsblkOverride in flash-lab.ts), in one of two ways:
 * - FAKE_LSBLK_RECORDING=FILE: print a recorded `lsblk --json` output, with FAKE_LSBLK_MAP
 *   ("/dev/sda=/dev/loop7,…") putting a real loop device in place of a recorded disk, so a refusal
 *   can be checked against a device whose bytes are known;
 * - FAKE_LSBLK_CARDS=/dev/loop7,…: run the real lsblk with the same arguments and present those loop
 *   devices as cards in a USB reader (removable, transport usb, a model and serial): the one fact a
 *   loop device cannot have. Everything else (size, read-only, mounts) is the kernel's. With
 *   FAKE_LSBLK_INSERTED=FILE (lines "DEVICE SERIAL"), only the devices listed there hold a card
 *   (with that serial); the others are empty readers (size 0), as a reader is when its card is out.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const recording = process.env.FAKE_LSBLK_RECORDING;
if (recording) {
  let text = readFileSync(recording, 'utf8');
  for (const pair of (process.env.FAKE_LSBLK_MAP ?? '').split(',').filter(Boolean)) {
    const [from, to] = pair.split('=') as [string, string];
    text = text.replaceAll(`"${from}"`, `"${to}"`);
  }
  process.stdout.write(text);
} else {
  const cards = (process.env.FAKE_LSBLK_CARDS ?? '').split(',').filter(Boolean);
  const insertedFile = process.env.FAKE_LSBLK_INSERTED;
  const inserted = new Map(
    (insertedFile ? readFileSync(insertedFile, 'utf8') : '')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(' ') as [string, string]),
  );
  const real = execFileSync('lsblk', process.argv.slice(2), { encoding: 'utf8' });
  const data = JSON.parse(real) as { blockdevices: Record<string, unknown>[] };
  for (const device of data.blockdevices) {
    const index = cards.indexOf(device.path as string);
    if (index < 0) continue;
    Object.assign(device, {
      rm: true,
      hotplug: true,
      tran: 'usb',
      vendor: 'Generic ',
      model: 'Test Reader',
      serial: `TESTCARD${index}`,
    });
    if (!insertedFile) continue;
    const serial = inserted.get(device.path as string);
    if (serial) device.serial = serial;
    else Object.assign(device, { size: 0, serial: `READER${index}`, children: undefined, fstype: null });
  }
  process.stdout.write(`${JSON.stringify(data, null, 3)}\n`);
}
