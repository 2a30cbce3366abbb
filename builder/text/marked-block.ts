/**
 * A block of lines owned by swarmcard inside a text file, between two marker comments. Replacing it
 * is idempotent: a rebuild or a second overlay run rewrites the block, never duplicates it.
 */
export interface BlockOptions {
  /** Identifies the block: `# BEGIN swarmcard <id>` … `# END swarmcard <id>`. */
  id: string;
  /** Comment leader, `#` for shell-like files. */
  comment?: string;
  /** For config.txt: the block starts with this section filter line, e.g. `all`. */
  section?: string;
}

const markers = (o: BlockOptions): [string, string] => {
  const c = o.comment ?? '#';
  return [`${c} BEGIN swarmcard ${o.id}`, `${c} END swarmcard ${o.id}`];
};

/** Line indexes of the block's BEGIN and END markers, or undefined when it is not (wholly) there. */
function findBlock(lines: string[], options: BlockOptions): [number, number] | undefined {
  const [begin, end] = markers(options);
  const start = lines.indexOf(begin);
  const stop = start === -1 ? -1 : lines.indexOf(end, start);
  return start === -1 || stop === -1 ? undefined : [start, stop];
}

export function setMarkedBlock(text: string, body: string[], options: BlockOptions): string {
  const [begin, end] = markers(options);
  const block = [begin, ...(options.section ? [`[${options.section}]`] : []), ...body, end];
  const lines = text.length === 0 ? [] : text.replace(/\n$/, '').split('\n');
  const found = findBlock(lines, options);
  const next = found ? [...lines.slice(0, found[0]), ...block, ...lines.slice(found[1] + 1)] : [...lines, ...block];
  return `${next.join('\n')}\n`;
}

export function getMarkedBlock(text: string, options: BlockOptions): string[] | undefined {
  const lines = text.split('\n');
  const found = findBlock(lines, options);
  return found && lines.slice(found[0] + 1, found[1]);
}
