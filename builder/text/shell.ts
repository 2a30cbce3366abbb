/**
 * One POSIX sh quoter for everything swarmcard writes that a shell reads: templates (the
 * `shellQuote` helper), the stacks' env files and the host kit's install script.
 */

/** Quote one word for POSIX sh, 'it'\''s' style (safe for any byte but NUL); the empty word is ''. */
export function shellQuote(value: unknown): string {
  const text = String(value);
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}
