/**
 * Profile problems: each names the file, the field (as a dotted path) and its YAML line, and says
 * what to do. All of them are collected and reported together (changesets style).
 */
import { UserError } from '../errors.js';
import { uniqueBy } from '../util/unique.js';
import type { FieldPath, Problem } from './types.js';

export function formatPath(path: FieldPath): string {
  return (
    path.reduce<string>(
      (out, part) => (typeof part === 'number' ? `${out}[${part}]` : out ? `${out}.${part}` : part),
      '',
    ) || '(top level)'
  );
}

/** At most this many problems are listed; a file that is not a profile at all would list thousands. */
export const MAX_LISTED = 20;

function formatProblems(file: string, problems: { line?: number; path: FieldPath; message: string }[]): string {
  const lines = problems
    .slice(0, MAX_LISTED)
    .map((p) => `${file}${p.line ? `:${p.line}` : ''}: ${formatPath(p.path)}: ${p.message}`);
  const more = problems.length - MAX_LISTED;
  if (more > 0) lines.push(`${file}: … and ${more} more problem${more === 1 ? '' : 's'}; fix these first.`);
  return lines.join('\n');
}

export class ProfileError extends UserError {
  constructor(
    readonly file: string,
    readonly problems: { line?: number; path: FieldPath; message: string }[],
  ) {
    super(formatProblems(file, problems));
    this.name = 'ProfileError';
  }
}

/** The error for a profile's problems, each once (a pattern group repeats its problem for every node it makes). */
export function profileError(
  file: string,
  problems: Problem[],
  lineOf: (path: FieldPath) => number | undefined,
): ProfileError {
  const unique = uniqueBy(problems, (p) => `${formatPath(p.path)}\0${p.message}`);
  return new ProfileError(
    file,
    unique.map((p) => ({ ...p, line: lineOf(p.path) })),
  );
}
