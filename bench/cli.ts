/** The built CLI, and the flags its first line starts Node with (`#!/usr/bin/env -S node FLAGS…`). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const cli = fileURLToPath(new URL('../builder/cli.js', import.meta.url));

/** For a process measured in the CLI's place: Node started as the CLI starts it. */
export const cliNodeFlags = readFileSync(cli, 'utf8').split('\n', 1)[0]!.split(' ').slice(3);
