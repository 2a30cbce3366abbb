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
import {
  baseName,
  canonicalPath,
  type DirEntry,
  EditorBase,
  type EditorContext,
  type FileAttrs,
  FileNotFoundError,
  type FileStat,
  type FileType,
  type FsEditor,
  parentOf,
  pathSegments,
} from './editor.js';

const typeNames: Record<string, FileType> = { regular: 'file', directory: 'dir', symlink: 'symlink' };
const typeBits: Record<FileType, number> = { file: 0o100000, dir: 0o040000, symlink: 0o120000, other: 0 };

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

/** debugfs's request parser understands double quotes; refuse what it cannot quote. */
function q(path: string): string {
  if (path.includes('"')) throw new UserError(`the path ${path} contains a double quote, which debugfs cannot handle.`);
  return `"${path}"`;
}

export class DebugfsEditor extends EditorBase implements FsEditor {
  readonly filesystem = 'ext4';
  readonly backend = 'debugfs';
  protected readonly checksOwnership = true;
  private script: string[] = [];
  /** Paths the queued script changes: reading one of them (or below one) needs a flush first. */
  private touched = new Set<string>();
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
    const dir = await this.staging();
    const file = join(dir, `cmds-${this.staged++}`);
    await writeFile(file, `${commands.join('\n')}\n`);
    const args = [...(options.write ? ['-w'] : []), '-f', file, this.target];
    const { stdout, stderr } = await run('debugfs', args, { env: this.env() });
    const problems = stderr
      .split('\n')
      .filter((l) => l.trim() !== '' && !/^debugfs \d/.test(l) && !options.tolerate?.test(l));
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
    for (let p = path; ; p = parentOf(p)) {
      const state = this.state.get(p);
      if (state === 'absent') return 'absent';
      if (p === path && state) return state;
      if (p === '/') return undefined;
    }
  }

  /** Stat of the logical state; only unknown paths are asked, all in one debugfs run. */
  private async lstatMany(paths: string[]): Promise<(FileStat | undefined)[]> {
    const ask = [...new Set(paths.filter((p) => this.known(p) === undefined))];
    if (ask.length > 0) {
      // Queued edits change nothing on disk for these paths (they are unknown), so no flush.
      // A missing path is an answer here, not an error.
      const answers = DebugfsEditor.answers(
        await this.debugfs(
          ask.map((p) => `stat ${q(p)}`),
          { tolerate: /File not found by ext2_lookup/ },
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

  /** Learn a path and all its prefixes in one run (the common case: nothing is a symlink). */
  private async prefetch(path: string): Promise<void> {
    const segments = pathSegments(path);
    await this.lstatMany(segments.map((_, i) => `/${segments.slice(0, i + 1).join('/')}`));
  }

  private async catRaw(path: string): Promise<Buffer> {
    const { stdout } = await run('debugfs', ['-R', `cat ${q(path)}`, this.target], { binary: true, env: this.env() });
    return stdout;
  }

  async stat(path: string): Promise<FileStat | undefined> {
    const resolved = await this.resolve(path, false);
    return (await this.lstatMany([resolved]))[0];
  }

  private isTouched(path: string): boolean {
    for (let p = path; ; p = parentOf(p)) {
      if (this.touched.has(p)) return true;
      if (p === '/') return false;
    }
  }

  /** Canonical path; the parent is always resolved, the last component only when asked. */
  private async resolve(path: string, followLast: boolean): Promise<string> {
    await this.prefetch(path);
    const lstat = (paths: string[]) => this.lstatMany(paths);
    if (followLast) return canonicalPath(path, lstat, { followLast: true });
    if (pathSegments(path).length === 0) return '/';
    const parent = await canonicalPath(parentOf(path), lstat, { followLast: true });
    return `${parent === '/' ? '' : parent}/${baseName(path)}`;
  }

  async read(path: string): Promise<Buffer> {
    const resolved = await this.resolve(path, true);
    const st = (await this.lstatMany([resolved]))[0];
    if (!st) throw new FileNotFoundError(path);
    if (st.type !== 'file') throw new Error(`${path} is a ${st.type}, not a file`);
    if (this.isTouched(resolved)) await this.flush();
    return this.catRaw(resolved);
  }

  async list(path: string): Promise<DirEntry[]> {
    await this.flush();
    const resolved = await this.resolve(path, true);
    const st = (await this.lstatMany([resolved]))[0];
    if (!st) throw new FileNotFoundError(path);
    if (st.type !== 'dir') throw new Error(`${path} is not a directory`);
    const [answer = ''] = DebugfsEditor.answers(await this.debugfs([`ls -p ${q(resolved)}`]));
    const entries: DirEntry[] = [];
    for (const line of answer.split('\n')) {
      // `ls -p` prints /inode/mode/uid/gid/name/size/
      const m = /^\/\d+\/([0-7]+)\/\d+\/\d+\/(.*)\/\d*\/$/.exec(line);
      if (!m || m[2] === '.' || m[2] === '..' || m[2] === '') continue;
      const kind = Number.parseInt(m[1]!, 8) & 0o170000;
      const type: FileType =
        kind === 0o100000 ? 'file' : kind === 0o040000 ? 'dir' : kind === 0o120000 ? 'symlink' : 'other';
      entries.push({ name: m[2]!, type });
    }
    return entries.sort((a, b) => a.name.localeCompare(b.name));
  }

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

  async write(path: string, data: string | Buffer, attrs: FileAttrs = {}): Promise<void> {
    const target = await this.resolve(path, false);
    const [existing] = await this.lstatMany([target]);
    if (existing?.type === 'dir') throw new UserError(`cannot write the file ${path}: a directory is in the way.`);
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const local = join(await this.staging(), `file-${this.staged++}`);
    await writeFile(local, bytes);
    if (existing) this.script.push(`rm ${q(target)}`);
    this.script.push(`cd ${q(parentOf(target))}`, `write ${q(local)} ${q(baseName(target))}`);
    const st = this.setAttrs(target, 'file', attrs, 0o644);
    this.expectWrite(target, bytes, { ...st });
  }

  async mkdir(path: string, attrs: FileAttrs & { parents?: boolean } = {}): Promise<void> {
    const target = await this.resolve(path, true);
    const segments = pathSegments(target);
    const prefixes = segments.map((_, i) => `/${segments.slice(0, i + 1).join('/')}`);
    const stats = await this.lstatMany(prefixes);
    for (const [i, prefix] of prefixes.entries()) {
      const st = stats[i];
      const last = i === prefixes.length - 1;
      if (st && st.type !== 'dir')
        throw new UserError(`cannot create the directory ${path}: ${prefix} is a ${st.type}.`);
      if (st && !last) continue;
      if (!st && !last && !attrs.parents)
        throw new UserError(`cannot create the directory ${path}: ${prefix} does not exist.`);
      if (st && last && attrs.mode === undefined && attrs.uid === undefined && attrs.gid === undefined) return;
      if (!st) this.script.push(`cd ${q(parentOf(prefix))}`, `mkdir ${q(baseName(prefix))}`);
      const applied = this.setAttrs(prefix, 'dir', last ? attrs : { mtime: attrs.mtime }, 0o755);
      this.expect(prefix, { type: 'dir', attrs: { ...applied } });
    }
  }

  async symlink(path: string, linkTarget: string, attrs: FileAttrs = {}): Promise<void> {
    const target = await this.resolve(path, false);
    const [existing] = await this.lstatMany([target]);
    if (existing?.type === 'dir') throw new UserError(`cannot create the symlink ${path}: a directory is in the way.`);
    if (existing) this.script.push(`rm ${q(target)}`);
    this.script.push(`cd ${q(parentOf(target))}`, `symlink ${q(baseName(target))} ${q(linkTarget)}`);
    const st = this.setAttrs(target, 'symlink', attrs, 0o777);
    this.state.set(target, { ...st, mode: 0o777, target: linkTarget });
    this.expect(target, { type: 'symlink', target: linkTarget, attrs: { uid: st.uid, gid: st.gid } });
  }

  async remove(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    const target = await this.resolve(path, false);
    const [existing] = await this.lstatMany([target]);
    if (!existing) return;
    if (existing.type === 'dir') {
      const children = await this.list(target); // flushes first, so queued children are listed too
      if (children.length > 0 && !options.recursive)
        throw new UserError(`cannot remove ${path}: the directory is not empty.`);
      for (const child of children) await this.remove(`${target}/${child.name}`, options);
      this.script.push(`rmdir ${q(target)}`);
    } else {
      this.script.push(`rm ${q(target)}`);
    }
    this.touched.add(target);
    this.state.set(target, 'absent');
    this.expect(target, 'absent');
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
    const dumps = new Map(
      paths
        .filter((p) => this.expected.get(p) !== 'absent')
        .map((p, i) => [p, join(dir, `verify-${this.staged}-${i}`)]),
    );
    const commands = paths.flatMap((p) => [
      `stat ${q(p)}`,
      ...(dumps.has(p) && (this.expected.get(p) as { type: string }).type === 'file'
        ? [`dump ${q(p)} ${q(dumps.get(p)!)}`]
        : []),
    ]);
    this.staged++;
    const stdout = await this.debugfs(commands, { tolerate: /File not found by ext2_lookup/ });
    const answers = DebugfsEditor.answers(stdout);
    const onDisk = new Map<string, FileStat | undefined>();
    let index = 0;
    for (const command of commands) {
      const answer = answers[index++] ?? '';
      const path = /^stat "(.*)"$/.exec(command)?.[1];
      if (path !== undefined) onDisk.set(path, parseDebugfsStat(answer));
    }
    await this.verify({
      stat: async (p) => onDisk.get(p),
      read: (p) => readFile(dumps.get(p)!),
    });
  }
}
