/**
 * The word a typo most likely meant (pure): the nearest candidate by edit distance, if it is near
 * enough to be a slip of the keyboard (a third of the word's length, at least one edit) and no
 * other candidate is as near.
 */
import { distance } from 'fastest-levenshtein';

export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const limit = Math.max(1, Math.floor(word.length / 3));
  const ranked = [...new Set(candidates)]
    .map((candidate) => ({ candidate, edits: distance(word.toLowerCase(), candidate.toLowerCase()) }))
    .filter(({ edits }) => edits <= limit)
    .sort((a, b) => a.edits - b.edits);
  return ranked.length > 0 && ranked[0]!.edits !== ranked[1]?.edits ? ranked[0]!.candidate : undefined;
}
