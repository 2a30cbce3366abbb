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

export class ProfileError extends UserError {
  constructor(
    readonly file: string,
    readonly problems: { line?: number; path: FieldPath; message: string }[],
  ) {
    super(problems.map((p) => `${file}${p.line ? `:${p.line}` : ''}: ${formatPath(p.path)}: ${p.message}`).join('\n'));
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
