/**
 * cmdline.txt is one line of space-separated tokens with a trailing newline; the firmware reads
 * only the first line. Edit it as tokens, never with a regex over the whole line.
 */
export type Cmdline = string[];

export function parseCmdline(text: string): Cmdline {
  const firstLine = text.split('\n', 1)[0] ?? '';
  return firstLine.split(/\s+/).filter((t) => t.length > 0);
}

export function formatCmdline(tokens: Cmdline): string {
  return `${tokens.join(' ')}\n`;
}

const keyOf = (token: string): string => {
  const eq = token.indexOf('=');
  return eq === -1 ? token : token.slice(0, eq);
};

export function getToken(tokens: Cmdline, key: string): string | undefined {
  const token = tokens.find((t) => keyOf(t) === key);
  if (token === undefined) return undefined;
  const eq = token.indexOf('=');
  return eq === -1 ? '' : token.slice(eq + 1);
}

/**
 * Set `key=value` (or a bare flag when value is undefined): replaced in place if present, otherwise
 * inserted before any `init=`-style token so that those stay last, as Raspberry Pi OS keeps them.
 */
export function setToken(tokens: Cmdline, key: string, value?: string): Cmdline {
  const token = value === undefined ? key : `${key}=${value}`;
  const index = tokens.findIndex((t) => keyOf(t) === key);
  if (index !== -1)
    return tokens.map((t, i) => (i === index ? token : t)).filter((t, i) => i === index || keyOf(t) !== key);
  const initIndex = tokens.findIndex((t) => keyOf(t) === 'init' || keyOf(t) === 'systemd.run');
  if (initIndex === -1) return [...tokens, token];
  return [...tokens.slice(0, initIndex), token, ...tokens.slice(initIndex)];
}

export function removeToken(tokens: Cmdline, key: string): Cmdline {
  return tokens.filter((t) => keyOf(t) !== key);
}

/** Merge a comma-list token such as `modules-load=dwc2,g_ether` without duplicating entries. */
export function addToList(tokens: Cmdline, key: string, items: string[]): Cmdline {
  const current = getToken(tokens, key);
  const list = current ? current.split(',').filter(Boolean) : [];
  for (const item of items) if (!list.includes(item)) list.push(item);
  return setToken(tokens, key, list.join(','));
}
