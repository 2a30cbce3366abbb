/**
 * Profile problems: each names the file, the field (as a dotted path) and its YAML line, and says
 * what to do. All of them are collected and reported together (changesets style).
 */
import { UserError } from '../errors.js';

export type FieldPath = (string | number)[];

export interface Problem {
  path: FieldPath;
  message: string;
}

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
