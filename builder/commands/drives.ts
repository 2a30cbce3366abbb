/**
 * swarmcard drives [--json]
 * The drives a card could be written to: path, size, model, serial, transport, removable,
 * read-only, what is mounted from them, and which one holds the running system (marked, never
 * offered to flash).
 */
import { type Drive, describeDrive, driveStatus, listDrives } from '../flash/drives.js';
import { formatBytes } from '../log.js';

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]! + 2))).join(''));
}

function render(drives: Drive[]): string {
  if (drives.length === 0) return 'no drives found\n';
  const rows = [['DEVICE', 'SIZE', 'TRAN', 'RM', 'RO', 'MODEL', 'SERIAL', 'STATUS']];
  for (const d of drives)
    rows.push([
      d.path,
      formatBytes(d.size),
      d.transport ?? (d.sdCard ? 'sd' : d.type === 'loop' ? 'loop' : '-'),
      d.removable ? 'yes' : 'no',
      d.readOnly ? 'yes' : 'no',
      [d.vendor, d.model].filter(Boolean).join(' ') || (d.backingFile ? `(${d.backingFile})` : '-'),
      d.serial ?? '-',
      driveStatus(d),
    ]);
  const lines: string[] = [];
  const formatted = table(rows);
  lines.push(formatted[0]!);
  drives.forEach((d, i) => {
    lines.push(formatted[i + 1]!);
    for (const p of d.partitions) {
      const what = [p.fstype, p.label ? `"${p.label}"` : undefined].filter(Boolean).join(' ');
      const where = p.mountpoints.length > 0 ? `  mounted at ${p.mountpoints.join(', ')}` : '';
      lines.push(`  ${p.path}  ${formatBytes(p.size)}${what ? `  ${what}` : ''}${where}`);
    }
  });
  return `${lines.join('\n')}\n`;
}

export async function drivesCommand(options: { json: boolean }): Promise<void> {
  const drives = await listDrives();
  if (options.json) {
    const document = {
      drives: drives.map((d) => ({ ...d, description: describeDrive(d), status: driveStatus(d) })),
    };
    process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
    return;
  }
  process.stdout.write(render(drives));
}
