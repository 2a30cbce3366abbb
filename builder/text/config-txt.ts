/**
 * config.txt is read top to bottom; a `[filter]` line ([all], [pi0], [cm5], …) applies to every line
 * after it until the next filter. Bookworm already ends with `[cm5] dtoverlay=dwc2,dr_mode=host`, so
 * a block appended blindly would apply to CM5 only: blocks always start with their own section.
 */
export interface ConfigSection {
  /** The filter without brackets; `undefined` for the lines before the first filter. */
  filter: string | undefined;
  lines: string[];
}

export function parseConfigTxt(text: string): ConfigSection[] {
  const sections: ConfigSection[] = [{ filter: undefined, lines: [] }];
  for (const line of text.split('\n')) {
    const match = /^\s*\[([^\]]+)\]\s*$/.exec(line);
    if (match) sections.push({ filter: match[1]!.trim(), lines: [] });
    else sections.at(-1)!.lines.push(line);
  }
  // A trailing newline produces one empty last line; it belongs to the file, not a setting.
  const last = sections.at(-1)!;
  if (last.lines.at(-1) === '') last.lines.pop();
  return sections;
}

/** Settings (non-comment, non-blank lines) per section, for `inspect`. */
export function configSettings(sections: ConfigSection[]): { filter: string; settings: string[] }[] {
  return sections
    .map((s) => ({
      filter: s.filter ?? '(global)',
      settings: s.lines.map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')),
    }))
    .filter((s) => s.settings.length > 0 || s.filter !== '(global)');
}
