/** The first item for each key, in the order given: `uniqueBy(problems, (p) => formatPath(p.path))`. */
export function uniqueBy<T>(items: Iterable<T>, key: (item: T) => unknown): T[] {
  const seen = new Set<unknown>();
  const unique: T[] = [];
  for (const item of items) {
    const k = key(item);
    if (seen.has(k)) continue;
    seen.add(k);
    unique.push(item);
  }
  return unique;
}
