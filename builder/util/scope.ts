/**
 * Scoped resources with stacked cleanups (debos style), run in reverse on success, on error and on
 * Ctrl-C. Every temp dir, partial file, loop device and mount is registered here the moment before
 * it can exist, so an interrupt at any instant finds it.
 *
 * Interrupts (SIGINT, SIGTERM, SIGHUP) go through one mechanism: `interruption` is aborted, which
 * stops every child process at once (run.ts passes its signal to each one) and makes the main path
 * refuse to start anything new (`checkInterrupted`). The handler waits for every child to exit,
 * lets the main path unwind its own scopes (reverse order, as on an error), closes whatever is still
 * open, and exits 128+signal. The CLI leaves the exit to the handler once `interrupted()` is true.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { log } from '../log.js';

type Cleanup = () => unknown | Promise<unknown>;

/** The build was interrupted: raised by anything that would start new work after the signal. */
export class InterruptedError extends Error {
  constructor() {
    super('interrupted');
    this.name = 'InterruptedError';
  }
}

/** Aborted by the first SIGINT/SIGTERM/SIGHUP; every child process and download listens to it. */
const interruption = new AbortController();
export const interruptSignal: AbortSignal = interruption.signal;

/** True while cleanups run: they may still start tools (umount, losetup --detach) after a signal. */
const cleaning = new AsyncLocalStorage<boolean>();
export const inCleanup = (): boolean => cleaning.getStore() === true;

/** True once a signal arrived. */
export const interrupted = (): boolean => interruptSignal.aborted;

/** Throw InterruptedError when a signal arrived, except inside a cleanup. */
export function checkInterrupted(): void {
  if (interrupted() && !inCleanup()) throw new InterruptedError();
}

/** Child processes still running (run.ts registers each), so the handler can wait for them to exit. */
const children = new Set<Promise<unknown>>();
export function trackChild(child: Promise<unknown>): void {
  children.add(child);
  const forget = () => children.delete(child);
  child.then(forget, forget);
}

async function childrenExited(): Promise<void> {
  while (children.size > 0) await Promise.allSettled([...children]);
}

/** Cleanups registered on a scope that had already closed (a resource created as the signal came). */
const late = new Set<Promise<unknown>>();

const openScopes = new Set<Scope>();

export class Scope {
  private readonly cleanups: { label: string; fn: Cleanup }[] = [];
  private closing?: Promise<void>;

  constructor() {
    checkInterrupted();
    openScopes.add(this);
  }

  /** Register a cleanup; it runs when the scope closes, most recent first. */
  defer(label: string, fn: Cleanup): void {
    if (this.closing) {
      // Too late for the stack: run it now so the resource does not outlive the scope.
      const running = Promise.resolve(cleaning.run(true, () => runCleanup(label, fn)));
      late.add(running);
      void running.finally(() => late.delete(running));
      return;
    }
    this.cleanups.push({ label, fn });
  }

  /**
   * A private temporary directory, removed when the scope closes. A mount point is only ever
   * removed with rmdir, so a failed unmount can never delete what is mounted on it.
   */
  async tempDir(prefix = 'swarmcard-', options: { mountPoint?: boolean } = {}): Promise<string> {
    checkInterrupted();
    const dir = await mkdtemp(join(process.env.SWARMCARD_TMPDIR ?? tmpdir(), prefix));
    this.defer(`remove ${dir}`, () =>
      options.mountPoint
        ? rmdir(dir).catch((error: NodeJS.ErrnoException) => {
            if (error.code !== 'ENOENT') throw error;
          })
        : rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }),
    );
    return dir;
  }

  /** Run every cleanup, most recent first; a second call waits for the first. */
  close(): Promise<void> {
    this.closing ??= cleaning.run(true, async () => {
      let first: unknown;
      for (const { label, fn } of this.cleanups.reverse()) {
        try {
          await runCleanup(label, fn);
        } catch (error) {
          first ??= error;
        }
      }
      openScopes.delete(this);
      if (first !== undefined) throw first;
    });
    return this.closing;
  }
}

async function runCleanup(label: string, fn: Cleanup): Promise<void> {
  try {
    await fn();
  } catch (error) {
    // After a signal the one line has been printed; a cleanup problem is still worth a warning.
    log.warn(`cleanup "${label}" failed: ${error instanceof Error ? error.message : String(error)}`);
    throw error;
  }
}

export async function withScope<T>(body: (scope: Scope) => Promise<T>): Promise<T> {
  const scope = new Scope();
  try {
    return await body(scope);
  } finally {
    await scope.close();
  }
}

/** Close every open scope, newest first (inner before outer), until none is left. */
export async function closeAllScopes(): Promise<void> {
  while (openScopes.size > 0) {
    for (const scope of [...openScopes].reverse()) await scope.close().catch(() => undefined);
  }
  while (late.size > 0) await Promise.allSettled([...late]);
}

/** How long the main path gets to unwind its own scopes after its children stopped. */
const UNWIND_MS = 2000;

async function unwound(): Promise<void> {
  const deadline = Date.now() + UNWIND_MS;
  while (openScopes.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

let installed = false;
/**
 * On SIGINT/SIGTERM/SIGHUP: one line, stop every child (and wait for it), run every cleanup, then
 * exit with 128+signal as shells expect. Later signals are ignored while cleaning up.
 */
export function installSignalCleanup(): void {
  if (installed) return;
  installed = true;
  const codes: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
  for (const signal of Object.keys(codes) as NodeJS.Signals[]) {
    process.on(signal, () => {
      if (interrupted()) return;
      log.warn(`${signal} received: cleaning up`);
      log.mute();
      interruption.abort();
      void (async () => {
        await childrenExited();
        await unwound();
        await closeAllScopes();
        await childrenExited();
      })().finally(() => process.exit(codes[signal]));
    });
  }
}
