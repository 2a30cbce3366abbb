/**
 * Scoped resources with stacked cleanups (debos style), run in reverse on success, on error and on
 * Ctrl-C. Every temp dir, loop device and mount is registered here the moment it exists.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { log } from '../log.js';

type Cleanup = () => unknown | Promise<unknown>;

const openScopes = new Set<Scope>();

export class Scope {
  private readonly cleanups: { label: string; fn: Cleanup }[] = [];
  private closed = false;

  constructor() {
    openScopes.add(this);
  }

  /** Register a cleanup; it runs when the scope closes, most recent first. */
  defer(label: string, fn: Cleanup): void {
    this.cleanups.push({ label, fn });
  }

  /** A private temporary directory, removed when the scope closes. */
  async tempDir(prefix = 'swarmcard-'): Promise<string> {
    const dir = await mkdtemp(join(process.env.SWARMCARD_TMPDIR ?? tmpdir(), prefix));
    this.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    openScopes.delete(this);
    let first: unknown;
    for (const { label, fn } of this.cleanups.reverse()) {
      try {
        await fn();
      } catch (error) {
        log.warn(`cleanup "${label}" failed: ${error instanceof Error ? error.message : String(error)}`);
        first ??= error;
      }
    }
    if (first !== undefined) throw first;
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

/** Close every open scope, newest first: used by the signal handlers before exiting. */
export async function closeAllScopes(): Promise<void> {
  for (const scope of [...openScopes].reverse()) {
    await scope.close().catch(() => undefined);
  }
}

let installed = false;
/** On SIGINT/SIGTERM/SIGHUP run every cleanup, then exit with 128+signal as shells expect. */
export function installSignalCleanup(): void {
  if (installed) return;
  installed = true;
  const codes: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
  let stopping = false;
  for (const signal of Object.keys(codes) as NodeJS.Signals[]) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      log.warn(`${signal} received: cleaning up`);
      void closeAllScopes().finally(() => process.exit(codes[signal]));
    });
  }
}
