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

export function setMarkedBlock(text: string, body: string[], options: BlockOptions): string {
  const [begin, end] = markers(options);
  const block = [begin, ...(options.section ? [`[${options.section}]`] : []), ...body, end];
  const lines = text.length === 0 ? [] : text.replace(/\n$/, '').split('\n');
  const start = lines.indexOf(begin);
  const stop = start === -1 ? -1 : lines.indexOf(end, start);
  const next =
    start !== -1 && stop !== -1 ? [...lines.slice(0, start), ...block, ...lines.slice(stop + 1)] : [...lines, ...block];
  return `${next.join('\n')}\n`;
}

export function getMarkedBlock(text: string, options: BlockOptions): string[] | undefined {
  const [begin, end] = markers(options);
  const lines = text.split('\n');
  const start = lines.indexOf(begin);
  const stop = start === -1 ? -1 : lines.indexOf(end, start);
  return start === -1 || stop === -1 ? undefined : lines.slice(start + 1, stop);
}
