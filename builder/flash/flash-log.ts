/**
 * The burn station's log, `flash-log.jsonl` in the cluster folder: one JSON object per line,
 * only ever appended (and flushed), so a crash or Ctrl-C leaves every line before it readable. A
 * flash is a `start` line and, when it ends, an `end` line with the same id; a start without an
 * end (the process was killed) counts as incomplete, like an interrupted one.
 */
import { randomUUID } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export const LOG_FILE = 'flash-log.jsonl';

export interface CardFacts {
  /** The reader's device path: /dev/sdb. */
  device: string;
  serial?: string;
  model?: string;
  size: number;
}

export interface StartEntry extends CardFacts {
  event: 'start';
  id: string;
  node: number;
  hostname: string;
  file: string;
  /** The raw image's sha256 (the manifest's), when known. */
  sha256?: string;
  diskId?: string;
  time: string;
}

export type Result = 'verified' | 'failed' | 'incomplete';

export interface EndEntry {
  event: 'end';
  id: string;
  result: Result;
  error?: string;
  time: string;
}

/** A start and its end. */
export interface Attempt extends StartEntry {
  result: Result;
  end?: string;
  error?: string;
}

export const newId = (): string => randomUUID();

export async function appendLog(dir: string, entry: StartEntry | EndEntry): Promise<void> {
  const handle = await open(join(dir, LOG_FILE), 'a');
  try {
    await handle.write(`${JSON.stringify(entry)}\n`);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Every attempt in the log, oldest first; a line cut short by a crash is skipped. */
export async function readLog(dir: string): Promise<Attempt[]> {
  const text = await readFile(join(dir, LOG_FILE), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw error;
  });
  const attempts = new Map<string, Attempt>();
  for (const line of text.split('\n')) {
    let entry: StartEntry | EndEntry;
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if (entry?.event === 'start' && typeof entry.id === 'string' && Number.isInteger(entry.node))
      attempts.set(entry.id, { ...entry, result: 'incomplete' });
    else if (entry?.event === 'end') {
      const attempt = attempts.get(entry.id);
      if (attempt) Object.assign(attempt, { result: entry.result, end: entry.time, error: entry.error });
    }
  }
  return [...attempts.values()];
}

/** The nodes with a verified flash, by index, each with its verified attempts. */
export function verifiedNodes(attempts: Attempt[]): Map<number, Attempt[]> {
  const nodes = new Map<number, Attempt[]>();
  for (const a of attempts) if (a.result === 'verified') nodes.set(a.node, [...(nodes.get(a.node) ?? []), a]);
  return nodes;
}
