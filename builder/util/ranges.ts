/**
 * Inclusive integer ranges (blocks, clusters): merge, subtract, and byte spans to the blocks they
 * touch. Pure.
 */

/** `first`..`last`, both included, `first` ≤ `last`. */
export interface Range {
  first: number;
  last: number;
}

/** Sorted, with overlapping and adjacent ranges joined. */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a.first - b.first || a.last - b.last);
  const out: Range[] = [];
  for (const { first, last } of sorted) {
    const previous = out.at(-1);
    if (previous && first <= previous.last + 1) previous.last = Math.max(previous.last, last);
    else out.push({ first, last });
  }
  return out;
}

/** What of `whole` is not in `holes` (any order, may overlap or reach outside `whole`). */
export function subtractRanges(whole: Range, holes: readonly Range[]): Range[] {
  const out: Range[] = [];
  let next = whole.first;
  for (const hole of mergeRanges(holes)) {
    if (hole.last < next) continue;
    if (hole.first > whole.last) break;
    if (hole.first > next) out.push({ first: next, last: hole.first - 1 });
    next = hole.last + 1;
  }
  if (next <= whole.last) out.push({ first: next, last: whole.last });
  return out;
}

/** Every block of `size` bytes that the byte span [start, end) touches; undefined when it is empty. */
export function blocksTouched(start: number, end: number, size: number): Range | undefined {
  if (end <= start) return undefined;
  return { first: Math.floor(start / size), last: Math.floor((end - 1) / size) };
}

export const countBlocks = (ranges: readonly Range[]): number =>
  ranges.reduce((sum, r) => sum + r.last - r.first + 1, 0);

/** `ranges` cut wherever they cross a multiple of `every`, so no piece spans two such windows. */
export function splitRanges(ranges: readonly Range[], every: number): Range[] {
  const out: Range[] = [];
  for (const { first, last } of ranges) {
    for (let from = first; from <= last; ) {
      const to = Math.min(last, (Math.floor(from / every) + 1) * every - 1);
      out.push({ first: from, last: to });
      from = to + 1;
    }
  }
  return out;
}
