/**
 * Errors that reach the user. The CLI's one error boundary maps them to exit codes:
 * UserError → 1 (bad input, missing tool, unsupported image); anything else → 2 (a bug).
 */
export class UserError extends Error {
  /** What to do about it, printed after the message. */
  readonly hint?: string;
  /** A process this one ran has already given the `--json` answer of the failure on stdout. */
  readonly answered: boolean;
  constructor(message: string, options: { hint?: string; cause?: unknown; answered?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.name = 'UserError';
    this.hint = options.hint;
    this.answered = options.answered === true;
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

const diskFull = 'free some space or choose another location';
const diskReadOnly = 'choose a writable location';

/** What a filesystem errno means to a user, and what to do about it. */
const errnoCauses: Record<string, (path: string) => string> = {
  EACCES: (p) => `${p} is not accessible (permission denied); fix its permissions or choose another path.`,
  EPERM: (p) => `${p} may not be changed (operation not permitted); fix its permissions or choose another path.`,
  EROFS: (p) => `${p} is on a read-only filesystem; ${diskReadOnly}.`,
  ENOSPC: (p) => `the disk holding ${p} is full; ${diskFull}.`,
  EDQUOT: (p) => `the disk quota for ${p} is exhausted; ${diskFull}.`,
  ENOTDIR: (p) => `part of ${p} is a file where a folder is needed; move that file away or choose another path.`,
  EISDIR: (p) => `${p} is a folder where a file is needed; give a file path instead.`,
  EEXIST: (p) => `${p} already exists and is in the way; move it away or choose another path.`,
  ENOENT: (p) => `${p} does not exist (or a folder on its way does not); check the path.`,
  ENAMETOOLONG: (p) => `${p} is too long a path; choose a shorter one.`,
  ELOOP: (p) => `${p} loops through symbolic links; fix the links or choose another path.`,
  EMFILE: () => 'too many files are open; raise the limit (ulimit -n) and try again.',
};

/** The first nonblank line a tool printed, shortened. */
const firstLine = (text: string): string => {
  const line = text.split('\n').find((l) => l.trim() !== '') ?? '';
  return line.length > 160 ? `${line.slice(0, 157)}…` : line.trim();
};

/**
 * The one mapping, at the CLI's boundary, from the errors the outside world raises to UserErrors:
 * a filesystem errno on a path (EACCES, EROFS, ENOSPC, ENOTDIR, …) names the path and a plain
 * cause; an external tool that fails outside its expected protocol names the tool and the
 * SWARMCARD_* variable that chooses it. Anything else is returned as it is (a bug: exit 2).
 */
export function toUserError(error: unknown): unknown {
  if (error instanceof UserError || !(error instanceof Error)) return error;
  const errno = error as NodeJS.ErrnoException & { dest?: string };
  if (typeof errno.code === 'string' && errnoCauses[errno.code]) {
    const path = errno.dest ?? errno.path;
    if (path !== undefined || errno.code === 'ENOSPC' || errno.code === 'EMFILE')
      return new UserError(errnoCauses[errno.code]!(path ?? 'the output'), { cause: error });
  }
  if (error.name === 'ToolError') {
    const { command, stderr, exitCode } = error as Error & { command: string; stderr: string; exitCode?: number };
    const program = command.split(' ')[0]!;
    const overridden = Object.keys(process.env).find((k) => k.startsWith('SWARMCARD_') && process.env[k] === program);
    const name = overridden
      ? overridden
          .slice('SWARMCARD_'.length)
          .toLowerCase()
          .replace('_', overridden.includes('MKFS') ? '.' : '-')
      : program.split('/').at(-1)!;
    const variable = overridden ?? `SWARMCARD_${name.replace(/[.-]/g, '_').toUpperCase()}`;
    const said = firstLine(stderr) || (exitCode === undefined ? 'it did not run' : `exit code ${exitCode}`);
    // The tool is fine; the disk it wrote to is full or read-only.
    const disk = /No space left on device|Disk quota exceeded|Read-only file system/.exec(stderr)?.[0];
    if (disk)
      return new UserError(`${name} failed: ${said}; ${disk === 'Read-only file system' ? diskReadOnly : diskFull}.`, {
        cause: error,
      });
    // Nor is it when it may not write where it was told to (an immutable or foreign folder).
    if (/Permission denied|Operation not permitted/.test(said))
      return new UserError(`${name} failed: ${said}; fix the permissions there or choose another location.`, {
        cause: error,
      });
    if (overridden)
      return new UserError(
        `${program} (from ${variable}) failed: ${said}; point ${variable} at a working ${name} or unset it.`,
        { cause: error },
      );
    return new UserError(`${name} failed: ${said}; the image may be damaged, or set ${variable} to another ${name}.`, {
      cause: error,
    });
  }
  return error;
}
