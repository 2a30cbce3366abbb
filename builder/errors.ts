/**
 * Errors that reach the user. The CLI's one error boundary maps them to exit codes:
 * UserError → 1 (bad input, missing tool, unsupported image); anything else → 2 (a bug).
 */
export class UserError extends Error {
  /** What to do about it, printed after the message. */
  readonly hint?: string;
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'UserError';
    this.hint = options.hint;
  }
}

/** A required external program is not installed. */
export class MissingToolError extends UserError {
  constructor(
    readonly tool: string,
    readonly debianPackage: string,
  ) {
    super(`${tool} is missing: install it with "apt-get install ${debianPackage}" (or run "make setup").`);
    this.name = 'MissingToolError';
  }
}

/** A checksum did not match its pin (etcher-sdk style: the error carries its data). */
export class ChecksumError extends UserError {
  constructor(
    readonly what: string,
    readonly actual: string,
    readonly expected: string,
  ) {
    super(`${what} has sha256 ${actual} but ${expected} was expected; the file is corrupt or the pin is wrong.`);
    this.name = 'ChecksumError';
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
