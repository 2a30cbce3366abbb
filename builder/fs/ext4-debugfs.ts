/**
 * ext4 through debugfs at a byte offset: no root, no kernel, byte-reproducible with
 * E2FSPROGS_FAKE_TIME. Edits are queued as one command script and applied in a single
 * `debugfs -w -f` run; queued changes sit in an overlay so later calls in the batch see them.
 * debugfs 1.47 quirks (docs/tools.md): `write` takes a name in the cwd (so `cd` first), `mkdir` at
 * the top level needs `cd /`, and errors in -f mode are not fatal, so stderr is checked.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { run } from '../exec/run.js';
import type { DirEntry, EditorContext, FileAttrs, FileStat, FileType } from './editor.js';
import { EditorBase } from './editor-base.js';
import { baseName, childOf, isBelow, parentOf, pathPrefixes } from './paths.js';

const typeNames: Record<string, FileType> = { regular: 'file', directory: 'dir', symlink: 'symlink' };
/** The S_IFMT bits of an inode mode for each type (inode(7)). */
const typeBits: Record<FileType, number> = { file: 0o100000, dir: 0o040000, symlink: 0o120000, other: 0 };
const typeOfMode = (mode: number): FileType =>
  (Object.keys(typeBits) as FileType[]).find((type) => typeBits[type] === (mode & 0o170000)) ?? 'other';

/** Parse one `stat` answer. */
export function parseDebugfsStat(text: string): FileStat | undefined {
  const head = /Type:\s+(\S+(?: special)?)\s+Mode:\s+([0-7]+)/.exec(text);
  if (!head) return undefined;
  const owner = /User:\s+(\d+)\s+Group:\s+(\d+)/.exec(text);
  const size = /Size:\s+(\d+)/.exec(text);
  const mtime = /\bmtime:\s+0x([0-9a-f]+)/.exec(text);
  const link = /Fast link dest:\s+"(.*)"/.exec(text);
  return {
    type: typeNames[head[1]!] ?? 'other',
    mode: Number.parseInt(head[2]!, 8) & 0o7777,
    uid: Number(owner?.[1] ?? 0),
    gid: Number(owner?.[2] ?? 0),
    size: Number(size?.[1] ?? 0),
    mtime: mtime ? Number.parseInt(mtime[1]!, 16) : 0,
    target: link?.[1],
  };
}

/**
 * What debugfs says of a damaged filesystem, if it says so: the most telling line (a corrupt
 * structure or a checksum before the block numbers a broken descriptor points at), shortened.
 */
export function damageOf(problems: string[]): string | undefined {
  const telling = [/corrupt|checksum does not match|bad magic/i, /illegal (block|inode) number|bitmap/i];
  for (const pattern of telling) {
    const line = problems.find((l) => pattern.test(l));
    if (!line) continue;
    const said = line.replace(/^\S*: (?=\S)/, '').trim(); // "/etc: Corrupt …" → "Corrupt …"
    return said.length > 120 ? `${said.slice(0, 117)}…` : said;
  }
  return undefined;
}

/** debugfs's request parser understands double quotes; refuse what it cannot quote. */
function q(path: string): string {
  if (path.includes('"')) throw new UserError(`the path ${path} contains a double quote, which debugfs cannot handle.`);
  return `"${path}"`;
}

export class DebugfsEditor extends EditorBase {
  readonly filesystem = 'ext4';
  readonly backend = 'debugfs';
  protected readonly storesOwnership = true;
  private script: string[] = [];
  /** Paths the queued script changes: reading one of them (or below one) needs a flush first. */
  private touched = new Set<string>();
  /** The logical state (disk plus queued script) of every path seen so far. */
  private readonly state = new Map<string, FileStat | 'absent'>();
  private staged = 0;
  private stagingDir?: string;

  constructor(private readonly ctx: EditorContext) {
    super();
  }

  private get target(): string {
    return `${this.ctx.image}?offset=${this.ctx.offset}`;
  }

  private env(): Record<string, string> {
    return { E2FSPROGS_FAKE_TIME: String(this.ctx.epoch), DEBUGFS_PAGER: '__none__', PAGER: '__none__' };
  }

  /** Run a command script; any stderr line besides the version banner is an error. */
  private async debugfs(commands: string[], options: { write?: boolean; tolerate?: RegExp } = {}): Promise<string> {
    const file = join(await this.staging(), `cmds-${this.staged++}`);
    await writeFile(file, `${commands.join('\n')}\n`);
    const args = [...(options.write ? ['-w'] : []), '-f', file, this.target];
    const { stdout, stderr } = await run('debugfs', args, { env: this.env() });
    const problems = stderr
      .split('\n')
      .filter((l) => l.trim() !== '' && !/^debugfs \d/.test(l) && !options.tolerate?.test(l));
    // debugfs could not open the filesystem at all: the image's fault (or this e2fsprogs'), not ours.
    const unopened = problems.map((l) => /^debugfs: (.*) while trying to open/.exec(l)?.[1]).find(Boolean);
    if (unopened)
      throw new UserError(
        `debugfs cannot open the root filesystem of ${this.ctx.image} (${unopened}); the image is damaged ` +
          'or needs a newer e2fsprogs (SWARMCARD_DEBUGFS chooses another debugfs).',
      );
    const damage = damageOf(problems);
    if (damage)
      throw new UserError(
        `the root filesystem of ${this.ctx.image} is damaged (${damage}); check it with "e2fsck -fn" or ` +
          'download the image again.',
      );
    if (problems.length > 0) throw new Error(`debugfs on ${this.ctx.image} failed: ${problems.join('; ')}`);
    return stdout;
  }

  private async staging(): Promise<string> {
    this.stagingDir ??= await this.ctx.scope.tempDir('swarmcard-debugfs-');
    return this.stagingDir;
  }

  /** Split the output of a `-f` run into one answer per command (each is echoed as "debugfs: …"). */
  private static answers(stdout: string): string[] {
    return stdout.split(/^debugfs: .*$/m).slice(1);
  }

  /** What is known of a path: its stat, 'absent' (itself or an ancestor is gone), or unknown. */
  private known(path: string): FileStat | 'absent' | undefined {
    // A removed ancestor hides whatever was learnt below it.
    for (let p = path; p !== '/'; ) {
      p = parentOf(p);
      if (this.state.get(p) === 'absent') return 'absent';
    }
    return this.state.get(path);
  }

  /**
   * A path was removed or replaced: what was learnt below it (perhaps through a symlink) is void.
   * Below a new file or empty directory nothing exists (`absent`); otherwise it is unknown again.
   */
  private forgetBelow(path: string, now?: 'absent'): void {
    for (const p of this.state.keys()) {
      if (!isBelow(p, path)) continue;
      if (now) this.state.set(p, now);
      else this.state.delete(p);
    }
  }

  /** Stat of the logical state; only unknown paths are asked, all in one debugfs run. */
  protected async lstatMany(paths: string[]): Promise<(FileStat | undefined)[]> {
    const ask = [...new Set(paths.filter((p) => this.known(p) === undefined))];
    if (ask.length > 0) {
      // The disk answers for paths the queued script does not change; below a changed one, it must
      // be applied first. A missing path (or one below a file) is an answer here, not an error.
      if (ask.some((p) => this.isTouched(p))) await this.flush();
      const answers = DebugfsEditor.answers(
        await this.debugfs(
          ask.map((p) => `stat ${q(p)}`),
          { tolerate: /File not found by ext2_lookup|Ext2 inode is not a directory/ },
        ),
      );
      for (const [i, p] of ask.entries()) {
        const st = parseDebugfsStat(answers[i] ?? '');
        if (st?.type === 'symlink' && st.target === undefined) st.target = (await this.catRaw(p)).toString();
        this.state.set(p, st ?? 'absent');
      }
    }
    return paths.map((p) => {
      const st = this.known(p);
      return st === 'absent' ? undefined : st;
    });
  }

  /**
   * Every path and ancestor in one debugfs run, before the edits ask one by one (a node's edits
   * would otherwise start some 25 debugfs processes just to stat). Paths behind a symlink are
   * asked again when an edit resolves them.
   */
  override async prefetch(paths: string[]): Promise<void> {
    await this.lstatMany(paths.flatMap(pathPrefixes));
  }

  /** Learn the path and all its ancestors in one run first (the common case: nothing is a symlink). */
  protected override async resolve(path: string, options: { followLast: boolean }): Promise<string> {
    await this.lstatMany(pathPrefixes(path));
    return super.resolve(path, options);
  }

  private async catRaw(path: string): Promise<Buffer> {
    const { stdout } = await run('debugfs', ['-R', `cat ${q(path)}`, this.target], { binary: true, env: this.env() });
    return stdout;
  }

  private isTouched(path: string): boolean {
    for (let p = path; ; p = parentOf(p)) {
      if (this.touched.has(p)) return true;
      if (p === '/') return false;
    }
  }

  protected async readAt(path: string): Promise<Buffer> {
    if (this.isTouched(path)) await this.flush();
    return this.catRaw(path);
  }

  protected async listAt(path: string): Promise<DirEntry[]> {
    await this.flush();
    const [answer = ''] = DebugfsEditor.answers(await this.debugfs([`ls -p ${q(path)}`]));
    const entries: DirEntry[] = [];
    for (const line of answer.split('\n')) {
      // `ls -p` prints /inode/mode/uid/gid/name/size/
      const m = /^\/\d+\/([0-7]+)\/\d+\/\d+\/(.*)\/\d*\/$/.exec(line);
      if (!m || m[2] === '.' || m[2] === '..' || m[2] === '') continue;
      entries.push({ name: m[2]!, type: typeOfMode(Number.parseInt(m[1]!, 8)) });
    }
    return entries.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Queue mode (not for symlinks), owner and times, and record the result in the logical state. */
  private setAttrs(path: string, type: FileType, attrs: FileAttrs, defaultMode: number): FileStat {
    const st: FileStat = {
      type,
      mode: attrs.mode ?? defaultMode,
      uid: attrs.uid ?? 0,
      gid: attrs.gid ?? 0,
      mtime: attrs.mtime ?? this.ctx.epoch,
    };
    const p = q(path);
    this.touched.add(path);
    if (type !== 'symlink') this.script.push(`sif ${p} mode 0${(typeBits[type] | st.mode).toString(8)}`);
    this.script.push(`sif ${p} uid ${st.uid}`, `sif ${p} gid ${st.gid}`);
    for (const field of ['mtime', 'atime', 'ctime']) this.script.push(`sif ${p} ${field} @${st.mtime}`);
    this.state.set(path, st);
    return st;
  }

  protected async writeAt(path: string, data: Buffer, attrs: FileAttrs, existing?: FileStat): Promise<FileAttrs> {
    this.forgetBelow(path, 'absent');
    const local = join(await this.staging(), `file-${this.staged++}`);
    await writeFile(local, data);
    if (existing) this.script.push(`rm ${q(path)}`);
    this.script.push(`cd ${q(parentOf(path))}`, `write ${q(local)} ${q(baseName(path))}`);
    return { ...this.setAttrs(path, 'file', attrs, 0o644) };
  }

  protected async mkdirAt(path: string, attrs: FileAttrs, options: { exists: boolean }): Promise<FileAttrs> {
    if (!options.exists) {
      this.forgetBelow(path, 'absent');
      this.script.push(`cd ${q(parentOf(path))}`, `mkdir ${q(baseName(path))}`);
    }
    return { ...this.setAttrs(path, 'dir', attrs, 0o755) };
  }

  protected override async symlinkAt(
    path: string,
    target: string,
    attrs: FileAttrs,
    existing?: FileStat,
  ): Promise<FileAttrs> {
    this.forgetBelow(path);
    if (existing) this.script.push(`rm ${q(path)}`);
    this.script.push(`cd ${q(parentOf(path))}`, `symlink ${q(baseName(path))} ${q(target)}`);
    const st = this.setAttrs(path, 'symlink', attrs, 0o777);
    this.state.set(path, { ...st, mode: 0o777, target });
    return st;
  }

  protected async removeAt(path: string, existing: FileStat, options: { recursive?: boolean }): Promise<void> {
    if (existing.type === 'dir') {
      if (options.recursive) {
        // Listing flushes first, so queued children are removed too.
        for (const child of await this.list(path)) await this.remove(childOf(path, child.name), options);
      }
      this.script.push(`rmdir ${q(path)}`);
    } else {
      this.script.push(`rm ${q(path)}`);
    }
    this.touched.add(path);
    this.state.set(path, 'absent');
    this.forgetBelow(path);
  }

  /** Apply the queued script in one debugfs run. */
  async flush(): Promise<void> {
    if (this.script.length === 0) return;
    const script = this.script;
    this.script = [];
    this.touched = new Set();
    await this.debugfs(script, { write: true });
  }

  /**
   * Read back every promised change straight from disk (not from `state`) in one debugfs run:
   * `stat` each path and `dump` each written file into the staging dir.
   */
  async commit(): Promise<void> {
    await this.flush();
    const paths = [...this.expected.keys()].sort();
    if (paths.length === 0) return;
    const dir = await this.staging();
    const batch = this.staged++;
    const commands: string[] = [];
    const statAnswer = new Map<string, number>();
    const dumps = new Map<string, string>();
    for (const [i, path] of paths.entries()) {
      statAnswer.set(path, commands.push(`stat ${q(path)}`) - 1);
      const want = this.expected.get(path);
      if (want === 'absent' || want?.type !== 'file') continue;
      dumps.set(path, join(dir, `verify-${batch}-${i}`));
      commands.push(`dump ${q(path)} ${q(dumps.get(path)!)}`);
    }
    const answers = DebugfsEditor.answers(await this.debugfs(commands, { tolerate: /File not found by ext2_lookup/ }));
    await this.verify({
      stat: async (path) => parseDebugfsStat(answers[statAnswer.get(path)!] ?? ''),
      read: (path) => readFile(dumps.get(path)!),
    });
  }
}
