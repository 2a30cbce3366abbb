/** Small parsers for files under /etc whose format is fixed: os-release and fstab. */

/** `/etc/os-release`: KEY=value lines, values optionally quoted (os-release(5)). */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!match) continue;
    let value = match[2]!;
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1).replace(/\\(["'$`\\])/g, '$1');
    out[match[1]!] = value;
  }
  return out;
}

export interface FstabEntry {
  spec: string;
  file: string;
  vfstype: string;
  options: string;
  freq: string;
  passno: string;
}

export function parseFstab(text: string): FstabEntry[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(/\s+/))
    .map(([spec = '', file = '', vfstype = '', options = 'defaults', freq = '0', passno = '0']) => ({
      spec,
      file,
      vfstype,
      options,
      freq,
      passno,
    }));
}

/**
 * Rewrite `PARTUUID=<old>-0N` references to a new disk id in fstab or cmdline.txt text, keeping
 * everything else byte for byte.
 */
export function replacePartUuids(text: string, oldDiskId: string, newDiskId: string): string {
  return text.replace(
    new RegExp(`PARTUUID=${oldDiskId}-(\\d{2})`, 'gi'),
    (_m, n: string) => `PARTUUID=${newDiskId}-${n}`,
  );
}
