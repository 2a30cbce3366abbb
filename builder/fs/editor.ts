/**
 * The filesystem-editor interface every backend implements (balena-image-fs style: callers write
 * ordinary file code against one partition). Paths are absolute inside the partition; `..` may
 * not climb above its root and symlinks resolve inside it (chroot semantics), so nothing can be
 * read or written outside the partition (see paths.ts). The rules every backend shares live in
 * editor-base.ts.
 */
import type { Scope } from '../util/scope.js';

export type FileType = 'file' | 'dir' | 'symlink' | 'other';

export interface FileAttrs {
  /** Permission bits, e.g. 0o600. Ignored on FAT. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch; defaults to the editor's build epoch. */
  mtime?: number;
}

export interface FileStat {
  type: FileType;
  /** Permission bits only (no file-type bits). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes; unknown (undefined) on FAT. */
  size?: number;
  mtime: number;
  /** For symlinks: the stored target. */
  target?: string;
}

export interface DirEntry {
  name: string;
  type: FileType;
}

export interface FsEditor {
  readonly filesystem: 'fat' | 'ext4';
  readonly backend: 'mtools' | 'debugfs' | 'loop';
  /** Read a file, following symlinks. */
  read(path: string): Promise<Buffer>;
  readText(path: string): Promise<string>;
  /** Like lstat: the final component is not followed. `undefined` when absent. */
  stat(path: string): Promise<FileStat | undefined>;
  exists(path: string): Promise<boolean>;
  list(path: string): Promise<DirEntry[]>;
  /** Create or replace a regular file (a symlink at `path` is replaced, not followed). */
  write(path: string, data: string | Buffer, attrs?: FileAttrs): Promise<void>;
  /** Create a directory; with `parents`, missing ancestors too (like `mkdir -p`). */
  mkdir(path: string, attrs?: FileAttrs & { parents?: boolean }): Promise<void>;
  symlink(path: string, target: string, attrs?: FileAttrs): Promise<void>;
  /** Remove a file, symlink or (with `recursive`) directory tree. Absent paths are fine. */
  remove(path: string, options?: { recursive?: boolean }): Promise<void>;
  /**
   * A hint: these paths are about to be used, so a backend that pays per question (debugfs starts a
   * process each time) may learn them and their ancestors at once. Changes nothing.
   */
  prefetch(paths: string[]): Promise<void>;
  /** Apply everything pending and read every change back; throws if anything differs. */
  commit(): Promise<void>;
}

/** Reading something that is not there. Callers that probe (inspect) catch exactly this. */
export class FileNotFoundError extends Error {
  constructor(readonly path: string) {
    super(`${path} does not exist in the image`);
    this.name = 'FileNotFoundError';
  }
}

/** Where a partition lives inside an image file. */
export interface PartitionLocation {
  image: string;
  offset: number;
  size: number;
}

export interface EditorContext extends PartitionLocation {
  /** Timestamp (seconds) for everything written: SOURCE_DATE_EPOCH / the profile's sourceDateEpoch. */
  epoch: number;
  /** Holds temp dirs, loop devices and mounts; closed by the caller (see `withPartition`). */
  scope: Scope;
}
