#!/usr/bin/env node
/**
 * The swarmcard command line. This is the one error boundary: user errors exit 1 with one
 * sentence (and a hint), anything unexpected exits 2 with its stack. Results go to stdout, with
 * --json exactly one JSON document there; progress and diagnostics go to stderr.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { buildCommand } from './commands/build.js';
import { demoCommand } from './commands/demo.js';
import { fixtureCommand } from './commands/fixture.js';
import { inspectCommand } from './commands/inspect.js';
import { planCommand } from './commands/plan.js';
import { schemaCommand } from './commands/schema.js';
import { validateCommand } from './commands/validate.js';
import { UserError } from './errors.js';
import { type Ext4Backend, ext4Backends } from './fs/partition.js';
import { log, setVerbose } from './log.js';
import { MAX_NODES } from './profile/schema.js';
import { allowPaths } from './util/confine.js';
import { installSignalCleanup, interrupted } from './util/scope.js';

const usage = `usage: swarmcard <command> [options]

commands:
  build PROFILE [--base IMAGE] [--nodes N] [--only LIST] [--out DIR] [--json]
                                               write dist/<cluster>/NN-<hostname>.img per node
  plan PROFILE [--nodes N] [--json]            every node's values and edits; no image touched
  validate PROFILE                             check a profile; every problem with its YAML line
  inspect IMAGE [--json]                       release, architecture, partitions, identity, network
  demo [--out DIR]                             build the pizero-otg cluster from the built-in demo base
  fixture FLAVOUR OUT [--booted]               write a small Raspberry Pi OS-shaped test image
  schema                                       print the profile JSON Schema

options:
  --ext4-backend debugfs|loop                  how the root filesystem is edited (default debugfs;
                                               loop needs root and is not byte-reproducible)
  --allow-path DIR                             let the profile name files in DIR (repeatable); else
                                               they must be inside the profile's directory
  --verbose                                    print every external command
  --version, --help
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function ext4Backend(value: string | undefined): Ext4Backend | undefined {
  if (value === undefined) return undefined;
  if (!(ext4Backends as readonly string[]).includes(value))
    throw new UserError(`--ext4-backend must be one of ${ext4Backends.join(', ')}, not "${value}".`);
  return value as Ext4Backend;
}

function parseOptions(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean', default: false },
        out: { type: 'string', default: 'dist' },
        booted: { type: 'boolean', default: false },
        base: { type: 'string' },
        nodes: { type: 'string' },
        only: { type: 'string' },
        'ext4-backend': { type: 'string' },
        'allow-path': { type: 'string', multiple: true, default: [] },
        verbose: { type: 'boolean', default: false },
        version: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UserError(`${(error as Error).message}; run "swarmcard --help" for the options.`);
  }
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseOptions(argv);
  setVerbose(values.verbose);
  allowPaths(values['allow-path']);
  if (values.version) return void process.stdout.write(`${version()}\n`);
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') return void process.stdout.write(usage);
  const needs = (count: number, what: string) => {
    if (rest.length !== count) throw new UserError(`swarmcard ${command} takes ${what}; run "swarmcard --help".`);
  };
  const nodes = (): number | undefined => {
    if (values.nodes === undefined) return undefined;
    if (!/^[1-9]\d*$/.test(values.nodes) || Number(values.nodes) > MAX_NODES)
      throw new UserError(`--nodes must be a whole number from 1 to ${MAX_NODES}, not "${values.nodes}".`);
    return Number(values.nodes);
  };
  switch (command) {
    case 'build':
      needs(1, 'one PROFILE');
      return buildCommand(rest[0]!, {
        base: values.base,
        nodes: nodes(),
        only: values.only,
        out: values.out,
        json: values.json,
        ext4Backend: ext4Backend(values['ext4-backend']),
        version: version(),
      });
    case 'plan':
      needs(1, 'one PROFILE');
      return planCommand(rest[0]!, { nodes: nodes(), json: values.json });
    case 'validate':
      needs(1, 'one PROFILE');
      return validateCommand(rest[0]!);
    case 'schema':
      needs(0, 'no arguments');
      return schemaCommand();
    case 'inspect':
      needs(1, 'one IMAGE');
      return inspectCommand(rest[0]!, { json: values.json });
    case 'demo':
      needs(0, 'no arguments');
      return demoCommand({ out: values.out, ext4Backend: ext4Backend(values['ext4-backend']), version: version() });
    case 'fixture':
      needs(2, 'a FLAVOUR and an OUT path');
      return fixtureCommand(rest[0]!, rest[1]!, { booted: values.booted });
    default:
      throw new UserError(`"${command}" is not a swarmcard command; run "swarmcard --help".`);
  }
}

installSignalCleanup();
main(process.argv.slice(2)).then(
  // After a signal, the signal handler exits (128+signal) once every cleanup ran.
  () => interrupted() || process.exit(0),
  (error: unknown) => {
    if (interrupted()) return;
    if (error instanceof UserError) {
      log.error(error.message);
      if (error.hint) log.info(error.hint);
      process.exit(1);
    }
    log.error(`internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(2);
  },
);
