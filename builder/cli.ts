#!/usr/bin/env -S node --max-semi-space-size=4
/**
 * The swarmcard command line. This is the one error boundary: user errors exit 1 with one
 * sentence (and a hint), anything unexpected exits 2 with its stack. Results go to stdout, with
 * --json exactly one JSON document there; progress and diagnostics go to stderr.
 *
 * The exit code is set, never forced: the process ends when the event loop is empty, so output
 * written to a pipe is delivered in full before it does.
 *
 * The first line caps V8's young generation at 4 MiB semi-spaces (the default grows them to 16, or
 * 32 on Node 24, as a long build goes on): a build's peak RSS 25 MiB lower, its speed the same
 * (docs/release.md). Node reads the cap only at start, so whatever starts the CLI passes it: this
 * line, the builder image's ENTRYPOINT, and `make`, which run this file as the program it is.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { buildCommand } from './commands/build.js';
import { demoCommand } from './commands/demo.js';
import { drivesCommand } from './commands/drives.js';
import { fixtureCommand } from './commands/fixture.js';
import { flashCommand } from './commands/flash.js';
import { inspectCommand } from './commands/inspect.js';
import { mergeCommand } from './commands/merge.js';
import { planCommand } from './commands/plan.js';
import { schemaCommand } from './commands/schema.js';
import { secretsCommand } from './commands/secrets.js';
import { validateCommand } from './commands/validate.js';
import { buildInDocker, type Engine, engines } from './docker/in-docker.js';
import { toUserError, UserError } from './errors.js';
import { flavourNames } from './fixture/flavours.js';
import { type Ext4Backend, ext4Backends } from './fs/partition.js';
import { log, setVerbose } from './log.js';
import { MAX_NODES } from './profile/schema.js';
import { allowPaths } from './util/confine.js';
import { realMkdirCause } from './util/make-folders.js';
import { installSignalCleanup, interrupted } from './util/scope.js';

/** One option: its parseArgs type, the value it takes (for help) and what it means. */
interface OptionSpec {
  type: 'string' | 'boolean';
  /** May be given more than once (the values form a list). */
  multiple?: boolean;
  value?: string;
  help: string;
}

const options = {
  base: { type: 'string', value: 'IMAGE', help: "a path or https:// URL that replaces the profile's base image" },
  nodes: {
    type: 'string',
    value: 'N',
    help: `how many nodes each pattern group makes (1 to ${MAX_NODES}), replacing its count; explicit nodes stay`,
  },
  only: {
    type: 'string',
    value: 'LIST',
    help: 'build only these node indices, e.g. 2,4-6 (the other images in the output folder are kept)',
  },
  shard: {
    type: 'string',
    value: 'I/N',
    help:
      'build shard I of N: an even, contiguous run of the nodes by index, plus shard.json for ' +
      '"swarmcard merge" (one CI job per shard; the secrets must exist: see "swarmcard secrets")',
  },
  out: { type: 'string', value: 'DIR', help: 'the output folder; images go to DIR/<cluster>/ (default dist)' },
  json: {
    type: 'boolean',
    help: 'print exactly one JSON document on stdout; on failure {"error": {"exitCode", "message"}}',
  },
  compress: {
    type: 'string',
    multiple: true,
    value: 'FORMAT',
    help:
      'xz, zst or none (the raw .img), optionally FORMAT:LEVEL (xz:0-9, default 6; zst:1-19, default 3); ' +
      "repeatable; replaces the profile's output.compress",
  },
  'keep-raw': { type: 'boolean', help: 'keep the raw .img files beside the compressed ones' },
  'release-url': {
    type: 'string',
    value: 'URL',
    help: 'the https:// address the files will be published under: imager.json then gives absolute URLs',
  },
  'allow-path': {
    type: 'string',
    multiple: true,
    value: 'DIR',
    help: "let the profile name files in DIR (repeatable); otherwise they must be inside the profile's folder",
  },
  booted: { type: 'boolean', help: 'add what a booted system leaves behind (machine-id, SSH host keys, …)' },
  'ext4-backend': {
    type: 'string',
    value: ext4Backends.join('|'),
    help: 'how the root filesystem is edited (default debugfs; loop needs root and is not byte-reproducible)',
  },
  device: { type: 'string', value: 'DEV', help: 'the card to write, e.g. /dev/sdb (swarmcard drives lists them)' },
  node: {
    type: 'string',
    value: 'N|HOSTNAME',
    help: 'with a cluster folder as TARGET: the node to write, by index or hostname (from its manifest.json)',
  },
  yes: { type: 'boolean', help: 'write without asking (without it flash asks on the terminal, never on a pipe)' },
  unmount: { type: 'boolean', help: "unmount the card's mounted filesystems first (else a mounted card is refused)" },
  'force-non-removable': {
    type: 'boolean',
    help: 'also write a disk the kernel does not call removable (a USB SSD, a loop device); never the system disk',
  },
  station: {
    type: 'boolean',
    help: 'with a cluster folder: wait for cards and write each newly inserted one with the next node left',
  },
  status: {
    type: 'boolean',
    help: 'with a cluster folder: which nodes are on which cards (flash-log.jsonl), which are left',
  },
  reflash: { type: 'boolean', help: 'with --station: also overwrite a card that already holds a verified node' },
  'in-docker': {
    type: 'boolean',
    help: 'run the build in the builder image (Dockerfile; built on first use), as you, for hosts without the tools',
  },
  engine: {
    type: 'string',
    value: engines.join('|'),
    help: 'with --in-docker: the container engine (default: the one installed)',
  },
} satisfies Record<string, OptionSpec>;
type OptionName = keyof typeof options;

/** Accepted by every command. */
const globalOptions = {
  verbose: { type: 'boolean', help: 'print every external command' },
  help: { type: 'boolean', help: "show this command's options" },
} satisfies Record<string, OptionSpec>;

interface CommandSpec {
  /** Positional arguments; a last one ending in "…" takes one or more. */
  args: string[];
  summary: string;
  options: OptionName[];
  /** More about the arguments, printed by `swarmcard COMMAND --help`. */
  notes?: string[];
}

const commands: Record<string, CommandSpec> = {
  build: {
    args: ['PROFILE'],
    summary:
      'write DIR/<cluster>/NN-<hostname>.img (or .img.xz/.img.zst) and .img.bmap per node, ' +
      'imager.json, manifest.json and SHA256SUMS',
    options: [
      'base',
      'nodes',
      'only',
      'shard',
      'out',
      'compress',
      'keep-raw',
      'release-url',
      'json',
      'ext4-backend',
      'allow-path',
      'in-docker',
      'engine',
    ],
    notes: [
      'The base image must exist (or be downloadable) when the build starts.',
      'imager.json is a Raspberry Pi Imager repository of the node images: rpi-imager --repo FILE-OR-URL.',
    ],
  },
  merge: {
    args: ['SHARD_DIR…'],
    summary: 'the folders of build --shard 1/N … N/N → one release in DIR/<cluster>/, as one build writes it',
    options: ['out', 'json'],
    notes: [
      'SHARD_DIR is the cluster folder a shard wrote (its OUT/<cluster>), or a folder holding just that one.',
      'Refused, with nothing written: shards of different profiles, bases, epochs, tool versions, settings or',
      "secrets, a shard given twice, a missing shard, a file missing or of the wrong size. The nodes' files are",
      'hard-linked from the shards (copied when on another filesystem); manifest.json, imager.json and',
      'SHA256SUMS are written anew, byte-identical to those of one build of every node. DIR/<cluster> must not',
      'exist or be empty; it appears whole or not at all.',
    ],
  },
  secrets: {
    args: ['PROFILE'],
    summary: "make the secrets the profile's images need (cluster SSH key, admin password), as a first build would",
    options: ['nodes', 'allow-path'],
    notes: [
      'Prints the files, never the values. Run it once before sharded builds (--shard I/N), which never make',
      'secrets, and give every shard the same files (a private commit, or a CI secret in SWARMCARD_SECRETS_DIR).',
    ],
  },
  plan: {
    args: ['PROFILE'],
    summary: "every node's values and edits; no image touched",
    options: ['nodes', 'json', 'allow-path'],
  },
  validate: {
    args: ['PROFILE'],
    summary: 'check a profile: every problem with its YAML line, no image read',
    options: ['nodes', 'allow-path'],
    notes: [
      'Catches everything a build would refuse in the profile (fields, addresses, overlays, files, epoch,',
      'base URL). A local base image that does not exist yet is a warning, not an error: it may appear',
      'before the build, which then refuses to start without it.',
    ],
  },
  inspect: {
    args: ['IMAGE'],
    summary: 'release, architecture, partitions, identity, network, clone hygiene',
    options: ['json'],
    notes: ['IMAGE is a .img, .img.xz, .zip, .img.gz or .img.zst file, or an https:// URL.'],
  },
  demo: {
    args: [],
    summary: 'build the pizero-otg cluster from the built-in demo base',
    options: ['out', 'ext4-backend'],
  },
  fixture: {
    args: ['FLAVOUR', 'OUT'],
    summary: 'write a small Raspberry Pi OS-shaped test image',
    options: ['booted'],
    notes: [`FLAVOUR is one of ${flavourNames.join(', ')}; OUT is the image file to write.`],
  },
  schema: { args: [], summary: 'print the profile JSON Schema', options: [] },
  drives: {
    args: [],
    summary: 'the drives a card can be written to; the one holding the running system is marked, never offered',
    options: ['json'],
    notes: [
      "RM is removable as flash sees it: the kernel's removable flag, or a card in an SD slot. STATUS says what",
      'flash would refuse: the system disk (/, /boot, /usr, /var, /home, swap, an EFI partition) always; a',
      'read-only card; a disk in use; a non-removable disk without --force-non-removable; a mounted card',
      'without --unmount. The lsblk program can be replaced with SWARMCARD_LSBLK.',
    ],
  },
  flash: {
    args: ['TARGET'],
    summary: 'write an image or a cluster node to a card, then read it back from the card to verify it',
    options: ['device', 'node', 'yes', 'unmount', 'force-non-removable', 'station', 'status', 'reflash'],
    notes: [
      'TARGET is a .img, .img.xz or .img.zst file (compressed ones are decompressed on the fly), or a cluster',
      'folder (dist/<cluster>) with --node. With a .bmap beside the image (X.img.bmap) only its mapped blocks',
      "are written. The read-back bypasses the page cache and is compared with the bmap's checksums or the",
      "image's sha256 (the manifest's, for a cluster's image); a difference is an error naming its offset.",
      'Nothing is written to the system disk, a read-only, mounted, in-use or too small card, or a vanished',
      'device; the device is opened exclusively, so a mount racing the write fails.',
      'With --station (a cluster folder, no --device) every removable card inserted from then on gets the next',
      'node not yet flashed (or --node), several readers at once; flash-log.jsonl in the folder records each',
      'card, and --status reads it back.',
    ],
  },
};

const synopsis = (name: string, spec: CommandSpec): string =>
  [
    name,
    ...spec.args,
    ...spec.options.map((o) => {
      const value = (options[o] as OptionSpec).value;
      return `[--${o}${value ? ` ${value}` : ''}]`;
    }),
  ].join(' ');

const usage = (): string =>
  [
    'usage: swarmcard <command> [options]',
    '',
    'commands:',
    ...Object.entries(commands).map(([name, spec]) => `  ${synopsis(name, spec)}\n      ${spec.summary}`),
    '',
    'every command also takes --verbose (print every external command) and --help;',
    'run "swarmcard <command> --help" for what its options mean. swarmcard --version prints the version.',
    '',
  ].join('\n');

function commandHelp(name: string): string {
  const spec = commands[name]!;
  const all: [string, OptionSpec][] = [
    ...spec.options.map((o): [string, OptionSpec] => [o, options[o]]),
    ...Object.entries(globalOptions),
  ];
  const rows = all.map(([o, s]) => [`--${o}${s.value ? ` ${s.value}` : ''}`, s.help] as const);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return [
    `usage: swarmcard ${synopsis(name, spec)}`,
    '',
    spec.summary,
    ...(spec.notes ? ['', ...spec.notes] : []),
    '',
    'options:',
    ...rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`),
    '',
  ].join('\n');
}

/** The command was asked for --json: a failure is one JSON document on stdout as well. */
let answerInJson = false;
const jsonFailure = (exitCode: 1 | 2, message: string, hint?: string) => {
  if (answerInJson)
    process.stdout.write(`${JSON.stringify({ error: { exitCode, message, ...(hint ? { hint } : {}) } }, null, 2)}\n`);
};

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The commands that take an option, for "plan does not take --only (build does)". */
const takers = (option: string): string[] =>
  Object.entries(commands)
    .filter(([, spec]) => (spec.options as string[]).includes(option))
    .map(([name]) => name);

/** One sentence for what parseArgs refuses (its own text is several lines of advice). */
function refusal(command: string, error: Error & { code?: string }, argv: string[]): UserError {
  const help = `run "swarmcard ${command} --help"`;
  const option = /'(-[^']*)'/.exec(error.message)?.[1] ?? argv.find((a) => a.startsWith('-')) ?? '';
  const name = option.replace(/^-+/, '').replace(/[= ].*$/, '');
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const others = takers(name);
    const verb = others.length > 1 ? 'do' : 'does';
    if (others.length > 0)
      return new UserError(`swarmcard ${command} does not take --${name} (${others.join(', ')} ${verb}); ${help}.`);
    return new UserError(`${option} is not a swarmcard option; ${help}.`);
  }
  const spec = (options as Record<string, OptionSpec>)[name] ?? (globalOptions as Record<string, OptionSpec>)[name];
  if (spec?.type === 'boolean') return new UserError(`--${name} takes no value; ${help}.`);
  if (spec) return new UserError(`--${name} needs a value (${spec.value}); ${help}.`);
  return new UserError(`${option || 'an option'} is not understood; ${help}.`);
}

/**
 * A string option followed by something that starts with "-" and is not an option ("--nodes -1")
 * takes it as its value, so the value's own check can say what is wrong with it.
 */
function glueValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = arg.startsWith('--') && !arg.includes('=') ? arg.slice(2) : undefined;
    const next = argv[i + 1];
    const isOption = (a: string) => /^--?[a-z]/i.test(a);
    if (
      name !== undefined &&
      (options as Record<string, OptionSpec>)[name]?.type === 'string' &&
      next?.startsWith('-') &&
      !isOption(next)
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

function parseCommandLine(argv: string[]) {
  // Only --help, --version and --verbose may come before the command.
  let i = 0;
  let verbose = false;
  for (; i < argv.length && argv[i]!.startsWith('-'); i++) {
    const arg = argv[i]!;
    if (arg === '--version') return { version: true as const };
    if (arg === '--help' || arg === '-h') return { help: undefined };
    if (arg === '--verbose') verbose = true;
    else if (arg === '--') {
      i++;
      break;
    } else
      throw new UserError(`${arg} must come after the command, e.g. "swarmcard build PROFILE ${arg}"; see --help.`);
  }
  const command = argv[i];
  if (command === undefined) return { help: undefined, none: true as const };
  if (command === 'help') return { help: argv[i + 1] };
  const spec = commands[command];
  if (!spec) throw new UserError(`"${command}" is not a swarmcard command; run "swarmcard --help".`);
  const rest = glueValues(argv.slice(i + 1));
  // Known before the options are checked, so that a refused option is answered in JSON too.
  answerInJson = spec.options.includes('json') && rest.includes('--json');
  const accepted: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    ...globalOptions,
  };
  for (const o of spec.options) {
    const { type, multiple } = options[o] as OptionSpec;
    accepted[o] = multiple ? { type, multiple } : { type };
  }
  accepted.help = { type: 'boolean', short: 'h' };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, strict: true, options: accepted, tokens: true });
  } catch (error) {
    throw refusal(command, error as Error, rest);
  }
  // parseArgs keeps the last of a repeated option: a silent choice between two values the user gave.
  const given = new Map<string, string[]>();
  for (const token of parsed.tokens ?? [])
    if (token.kind === 'option' && accepted[token.name]?.type === 'string' && !accepted[token.name]?.multiple)
      given.set(token.name, [...(given.get(token.name) ?? []), token.value ?? '']);
  for (const [name, values] of given)
    if (values.length > 1)
      throw new UserError(`--${name} is given ${values.length} times (${values.join(', ')}); give it once.`);
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  if (values.help) return { help: command };
  setVerbose(verbose || values.verbose === true);
  const variadic = spec.args.at(-1)?.endsWith('…') === true;
  const counted = parsed.positionals.length;
  if (variadic ? counted < spec.args.length : counted !== spec.args.length) {
    const wanted = spec.args.length === 0 ? 'no arguments' : spec.args.join(' and ');
    throw new UserError(
      `swarmcard ${command} takes ${wanted}, not ${parsed.positionals.length}; run "swarmcard ${command} --help".`,
    );
  }
  return { command, positionals: parsed.positionals, values };
}

function stringValue(values: Record<string, unknown>, name: OptionName): string | undefined {
  const value = values[name] as string | undefined;
  if (value !== undefined && value.trim() === '')
    throw new UserError(
      `--${name} is empty; give ${(options[name] as OptionSpec).value ?? 'a value'} or leave the option out.`,
    );
  return value;
}

function nodesValue(values: Record<string, unknown>): number | undefined {
  const value = stringValue(values, 'nodes');
  if (value === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(value) || Number(value) > MAX_NODES)
    throw new UserError(`--nodes must be a whole number from 1 to ${MAX_NODES}, not "${value}".`);
  return Number(value);
}

/** An option that takes one of a fixed list of values. */
function choiceValue<T extends string>(
  values: Record<string, unknown>,
  name: OptionName,
  choices: readonly T[],
): T | undefined {
  const value = stringValue(values, name);
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value))
    throw new UserError(`--${name} must be one of ${choices.join(', ')}, not "${value}".`);
  return value as T;
}

const ext4Backend = (values: Record<string, unknown>): Ext4Backend | undefined =>
  choiceValue(values, 'ext4-backend', ext4Backends);
const engineValue = (values: Record<string, unknown>): Engine | undefined => choiceValue(values, 'engine', engines);

/** The command line for the CLI inside the container: the same, less the options that chose it. */
function withoutInDocker(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--in-docker' || argv[i]!.startsWith('--engine=')) continue;
    if (argv[i] === '--engine') i++;
    else out.push(argv[i]!);
  }
  return out;
}

async function main(argv: string[]): Promise<void> {
  const line = parseCommandLine(argv);
  if ('version' in line) return void process.stdout.write(`${version()}\n`);
  if (!('command' in line)) {
    // Asked for, the usage is the answer; with no command at all, it explains a mistake.
    if ('none' in line) {
      process.stderr.write(usage());
      throw new UserError('no command given; run one of the commands above, e.g. "swarmcard build PROFILE".');
    }
    if (line.help === undefined) return void process.stdout.write(usage());
    if (!commands[line.help]) throw new UserError(`"${line.help}" is not a swarmcard command; run "swarmcard --help".`);
    return void process.stdout.write(commandHelp(line.help));
  }
  const { command, positionals, values } = line;
  allowPaths((values?.['allow-path'] as string[] | undefined) ?? []);
  const [first, second] = positionals as [string, string];
  switch (command) {
    case 'build':
      if (values['in-docker'] === true) {
        if (ext4Backend(values) === 'loop')
          throw new UserError(
            '--ext4-backend loop needs root and loop devices, which the builder container has not; leave it out.',
          );
        return buildInDocker({
          args: withoutInDocker(argv),
          profileFile: first,
          base: stringValue(values, 'base'),
          nodes: nodesValue(values),
          out: stringValue(values, 'out') ?? 'dist',
          allowPaths: (values['allow-path'] as string[] | undefined) ?? [],
          engine: engineValue(values),
          version: version(),
        });
      }
      if (values.engine !== undefined)
        throw new UserError('--engine only applies with --in-docker; add --in-docker or leave it out.');
      return buildCommand(first, {
        base: stringValue(values, 'base'),
        nodes: nodesValue(values),
        only: stringValue(values, 'only'),
        shard: stringValue(values, 'shard'),
        out: stringValue(values, 'out') ?? 'dist',
        json: values.json === true,
        ext4Backend: ext4Backend(values),
        version: version(),
        release: {
          compress: values.compress as string[] | undefined,
          keepRaw: values['keep-raw'] === true ? true : undefined,
          releaseUrl: stringValue(values, 'release-url'),
        },
      });
    case 'merge':
      return mergeCommand(positionals, { out: stringValue(values, 'out') ?? 'dist', json: values.json === true });
    case 'secrets':
      return secretsCommand(first, { nodes: nodesValue(values) });
    case 'plan':
      return planCommand(first, { nodes: nodesValue(values), json: values.json === true });
    case 'validate':
      return validateCommand(first, { nodes: nodesValue(values) });
    case 'schema':
      return schemaCommand();
    case 'inspect':
      return inspectCommand(first, { json: values.json === true });
    case 'demo':
      return demoCommand({
        out: stringValue(values, 'out') ?? 'dist',
        ext4Backend: ext4Backend(values),
        version: version(),
      });
    case 'fixture':
      return fixtureCommand(first, second, { booted: values.booted === true });
    case 'drives':
      return drivesCommand({ json: values.json === true });
    case 'flash':
      return flashCommand(first, {
        device: stringValue(values, 'device'),
        node: stringValue(values, 'node'),
        yes: values.yes === true,
        unmount: values.unmount === true,
        forceNonRemovable: values['force-non-removable'] === true,
        station: values.station === true,
        status: values.status === true,
        reflash: values.reflash === true,
      });
  }
}

installSignalCleanup();
// A command whose promise can no longer settle (nothing left that could resolve it) must not pass for a success.
let settled = false;
process.once('beforeExit', () => {
  if (settled || interrupted()) return;
  log.error('internal error: the command stopped before it finished (a promise that can never settle)');
  process.exitCode = 2;
});
main(process.argv.slice(2)).then(
  () => {
    settled = true;
    // After a signal, its handler exits (128 + signal) once every cleanup has run.
    if (!interrupted()) process.exitCode = 0;
  },
  (thrown: unknown) => {
    settled = true;
    if (interrupted()) return;
    const error = toUserError(realMkdirCause(thrown));
    if (error instanceof UserError) {
      log.error(error.message);
      if (error.hint) log.info(error.hint);
      if (!error.answered) jsonFailure(1, error.message, error.hint);
      process.exitCode = 1;
      return;
    }
    log.error(`internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    jsonFailure(2, `internal error: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 2;
  },
);
