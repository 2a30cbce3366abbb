/**
 * The one door to external programs: argv arrays (never a shell string), the exact command logged
 * in verbose mode and quoted in every failure, and "not installed" turned into the apt-get line.
 */
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { execa, type Options } from 'execa';
import { MissingToolError, UserError } from '../errors.js';
import { log } from '../log.js';
import {
  checkInterrupted,
  InterruptedError,
  inCleanup,
  interruptSignal,
  trackChild,
  withScope,
} from '../util/scope.js';
import { type Tool, toolPath, tools } from './tools.js';

export interface RunOptions {
  env?: Record<string, string>;
  input?: string | Buffer;
  /** Return stdout as a Buffer instead of text. */
  binary?: boolean;
  /** Do not throw on a non-zero exit; the caller inspects `exitCode`. */
  allowFailure?: boolean;
  cwd?: string;
  /**
   * Where the child's output goes: captured (the default), or straight to this process's stdout
   * and stderr ('inherit'), or both to stderr ('stderr': progress that must stay off a --json stdout).
   */
  output?: 'capture' | 'inherit' | 'stderr';
}

export interface RunResult<T = string> {
  stdout: T;
  stderr: string;
  exitCode: number;
}

/** A tool ran and failed. Carries the command line and what it said. */
export class ToolError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stderr: string,
  ) {
    const code = exitCode === undefined ? '' : ` with exit code ${exitCode}`;
    super(`${command} failed${code}${stderr ? `: ${stderr.trim()}` : ''}`);
    this.name = 'ToolError';
  }
}

export function quoteCommand(argv: readonly string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./?-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`)).join(' ');
}

/**
 * Every child shares the interrupt signal: a Ctrl-C sends each one SIGTERM, then SIGKILL after
 * KILL_AFTER_MS. Cleanups (umount, losetup --detach) run after the signal, so they do not listen.
 */
const KILL_AFTER_MS = 2000;
const lifecycle = () => (inCleanup() ? {} : { cancelSignal: interruptSignal, forceKillAfterDelay: KILL_AFTER_MS });

/** Every tool runs with the C locale, so the output we parse is the same everywhere. */
function start(tool: Tool, args: readonly string[], env: Record<string, string> | undefined) {
  // After a signal the main path starts nothing new.
  checkInterrupted();
  const file = toolPath(tool);
  const command = quoteCommand([file, ...args]);
  log.debug(`$ ${command}`);
  return { file, command, env: { LC_ALL: 'C', ...env } };
}

function outputOptions(output: RunOptions['output']): Options {
  if (output === 'inherit') return { stdout: 'inherit', stderr: 'inherit' };
  // Kept too (the error message quotes it), and shown as it comes.
  if (output === 'stderr') return { stdout: ['pipe', process.stderr], stderr: ['pipe', process.stderr] } as Options;
  return {};
}

/** The program could not be started because it is not there. */
const notFound = (cause: unknown): boolean => (cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';

export async function run(
  tool: Tool,
  args: readonly string[],
  options: RunOptions & { binary: true },
): Promise<RunResult<Buffer>>;
export async function run(tool: Tool, args: readonly string[], options?: RunOptions): Promise<RunResult<string>>;
export async function run(
  tool: Tool,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult<string | Buffer>> {
  const { file, command, env } = start(tool, args, options.env);
  const execaOptions: Options = {
    env,
    input: options.input,
    cwd: options.cwd,
    reject: false,
    stripFinalNewline: false,
    encoding: options.binary ? 'buffer' : 'utf8',
    maxBuffer: 1024 * 1024 * 1024,
    ...outputOptions(options.output),
    ...lifecycle(),
  };
  const child = execa(file, args, execaOptions);
  trackChild(child);
  const result = await child;
  if (result.isCanceled) throw new InterruptedError();
  const stderr =
    typeof result.stderr === 'string' ? result.stderr : Buffer.from((result.stderr as Uint8Array) ?? []).toString();
  if (result.failed && result.exitCode === undefined) {
    if (notFound(result.cause)) throw new MissingToolError(file, tools[tool]);
    if (result.isTerminated) throw new ToolError(command, undefined, `terminated by ${result.signal}`);
    throw new ToolError(command, undefined, result.shortMessage ?? String(result.cause));
  }
  const exitCode = result.exitCode ?? 0;
  if (exitCode === 127) throw new MissingToolError(file, tools[tool]);
  if (exitCode !== 0 && !options.allowFailure) throw new ToolError(command, exitCode, stderr);
  const stdout = options.binary ? Buffer.from((result.stdout as Uint8Array) ?? []) : ((result.stdout as string) ?? '');
  return { stdout, stderr, exitCode };
}

/**
 * Start a tool with piped stdin and stderr, its stdout a pipe or the given socket; `done` resolves
 * when it exits well and rejects with why it did not (a ToolError, or InterruptedError).
 */
function startStreaming<Out extends 'pipe' | Socket>(
  tool: Tool,
  args: readonly string[],
  env: Record<string, string> | undefined,
  out: Out,
) {
  const started = start(tool, args, env);
  const subprocess = execa(started.file, args, {
    env: started.env,
    stdin: 'pipe',
    stdout: out,
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    reject: false,
    encoding: 'buffer',
    ...lifecycle(),
  });
  trackChild(subprocess);
  const done = subprocess.then((result) => {
    if (result.isCanceled) throw new InterruptedError();
    const stderr = Buffer.from((result.stderr as Uint8Array | undefined) ?? []).toString();
    if (notFound(result.cause)) throw new MissingToolError(started.file, tools[tool]);
    if (result.failed)
      throw new ToolError(
        started.command,
        result.exitCode,
        stderr || (result.signal ? `terminated by ${result.signal}` : ''),
      );
  });
  return { subprocess, done };
}

/**
 * Start a tool whose stdout is consumed as a stream (decompressors). The caller pipes input and
 * reads `stdout`; `done` resolves when it exits and rejects with a ToolError on failure.
 */
export function stream(tool: Tool, args: readonly string[], options: { env?: Record<string, string> } = {}) {
  const { subprocess, done } = startStreaming(tool, args, options.env, 'pipe');
  return { subprocess, stdout: subprocess.stdout, stdin: subprocess.stdin, done };
}

/** Longest socket path Linux takes (sun_path is 108 bytes, NUL included). */
const MAX_SOCKET_PATH = 107;

/**
 * Two connected local sockets: `theirs` to give a child as its stdout, `ours` reading what it
 * writes into `buffer` through Node's `onread`. The socket's name lives in a private (0700)
 * temporary folder only until they are connected: no other user can connect first.
 */
async function socketPair(buffer: Buffer, onData: (bytes: Buffer) => boolean) {
  return withScope(async (scope) => {
    const path = join(await scope.tempDir('swarmcard-pipe-'), 's');
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH)
      throw new UserError(
        `the temporary folder's path is too long for a local socket (${path}); ` +
          'set SWARMCARD_TMPDIR (or TMPDIR) to a shorter one',
      );
    const server = createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
    try {
      const accepted = once(server, 'connection') as Promise<[Socket]>;
      const callback = (bytes: number) => onData(buffer.subarray(0, bytes));
      const ours = connect({ path, onread: { buffer, callback } });
      const [[theirs]] = await Promise.all([accepted, once(ours, 'connect')]);
      return { theirs, ours };
    } finally {
      server.close();
    }
  });
}

/**
 * stream(), with stdout read into `buffer` again and again (`onData` gets each piece as a view of
 * it, valid until it returns) rather than into a new Buffer per read: a slow tool's pieces lived
 * until a full garbage collection, tens of MiB of them. `onData` returning false pauses reading
 * until `resume()`. `done` also waits for the last of the output to be read.
 */
export async function streamInto(
  tool: Tool,
  args: readonly string[],
  buffer: Buffer,
  onData: (bytes: Buffer) => boolean,
  options: { env?: Record<string, string> } = {},
) {
  const { theirs, ours } = await socketPair(buffer, onData);
  let started: ReturnType<typeof startStreaming<Socket>>;
  try {
    started = startStreaming(tool, args, options.env, theirs);
  } catch (error) {
    theirs.destroy();
    ours.destroy();
    throw error;
  }
  const { subprocess } = started;
  // The child holds its own copy of `theirs`: once it has exited, closing ours ends the output.
  void subprocess.finally(() => theirs.destroy());
  const read = new Promise<void>((resolve, reject) => {
    ours.once('end', resolve).once('error', reject);
  });
  const done = Promise.all([started.done, read]).then(
    () => undefined,
    (error: unknown) => {
      ours.destroy();
      throw error;
    },
  );
  return { subprocess, stdin: subprocess.stdin, done, resume: () => ours.resume() };
}
