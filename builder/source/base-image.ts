/**
 * The base image a build starts from: a local `.img`, `.img.xz`, `.zip`, `.img.gz` or `.img.zst`, or
 * an https:// URL; optionally pinned by sha256 (of the file as given, i.e. the compressed download,
 * as raspberrypi.com publishes it). Downloads and decompressed images live in the cache, keyed by
 * sha256, so a second build does neither again. Progress goes to stderr.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ChecksumError, errorMessage, UserError } from '../errors.js';
import { run, stream, ToolError } from '../exec/run.js';
import { hasBootSignature, SECTOR } from '../formats/mbr.js';
import { log, progress } from '../log.js';
import { baseUrlProblem, isUrl } from '../util/base-url.js';
import { isFile } from '../util/is-file.js';
import { makeFolders } from '../util/make-folders.js';
import { readBytes } from '../util/read-bytes.js';
import { checkInterrupted, interruptSignal, withScope } from '../util/scope.js';
import { cachePaths } from './cache.js';
import { sparseWriter } from './sparse-writer.js';

export type Compression = 'none' | 'xz' | 'zstd' | 'gzip' | 'zip';

export interface BaseImageSpec {
  /** A path or an https:// URL. */
  location: string;
  /** Expected sha256 of the file as given (hex). */
  sha256?: string;
}

export interface ResolvedBaseImage {
  /** A raw, uncompressed disk image, ready to be cloned. Never written to. */
  path: string;
  /** sha256 of the source as given (compressed file or URL download); absent when not asked for. */
  sourceSha256?: string;
  compression: Compression;
}

const sha256Pattern = /^[0-9a-f]{64}$/;

/** Detect the container from its first bytes; the file name only decides when magic cannot. */
export function detectCompression(head: Buffer, name: string): Compression {
  if (head.length === 0)
    throw new UserError(
      `${name} is empty, not a disk image; give the path of a Raspberry Pi OS image (or download it again).`,
    );
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.subarray(0, 4).equals(Buffer.from([0x50, 0x4b, 0x03, 0x04]))) return 'zip';
  if (hasBootSignature(head)) return 'none';
  if (/\.img$/i.test(name)) return 'none';
  throw new UserError(`${name} is neither a disk image nor a .xz, .zst, .gz or .zip archive of one.`);
}

/** Count bytes flowing through, for progress. */
function counter(onBytes: (n: number) => void): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _e, callback) {
      total += chunk.length;
      onBytes(total);
      callback(null, chunk);
    },
  });
}

/** One buffer read into again and again (a stream's fresh buffer per chunk costs 2.7 times as long). */
async function hashFile(path: string, label: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const bar = progress(`hashing ${label}`, size);
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
    for (let done = 0; done < size; ) {
      checkInterrupted();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) throw new Error(`${path} ended at byte ${done} of ${size} while it was being hashed`);
      hash.update(buffer.subarray(0, bytesRead));
      done += bytesRead;
      bar.update(done);
    }
    bar.done();
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

/** sha256 of a local file, remembered by (path, size, mtime, inode) so big images are hashed once. */
async function localSha256(path: string): Promise<string> {
  const real = await realpath(path);
  const st = await stat(real);
  const key = createHash('sha256').update(`${real}\0${st.size}\0${st.mtimeMs}\0${st.ino}`).digest('hex');
  const memo = join(cachePaths.hashes(), key);
  const remembered = await readFile(memo, 'utf8').catch(() => '');
  if (sha256Pattern.test(remembered)) return remembered;
  const digest = await hashFile(real, path);
  await makeFolders(cachePaths.hashes());
  await writeFile(memo, digest);
  return digest;
}

function checkPin(what: string, actual: string, expected: string | undefined): void {
  if (expected && actual !== expected.toLowerCase()) throw new ChecksumError(what, actual, expected.toLowerCase());
}

function checkUrl(location: string): URL {
  const problem = baseUrlProblem(location);
  if (problem) throw new UserError(`${problem}.`);
  return new URL(location);
}

/** What went wrong on the network, in words (never OpenSSL's internals). */
function networkCause(error: unknown): string {
  const cause = ((error as Error).cause ?? error) as NodeJS.ErrnoException & { reason?: string };
  const code = cause?.code ?? '';
  const text = `${code} ${errorMessage(cause)}`;
  if (/SSL|TLS|wrong version number|packet length too long|EPROTO/i.test(text))
    return 'the server does not speak TLS (https) there; check the URL';
  if (/CERT|certificate|self.signed/i.test(text)) return "the server's TLS certificate is not trusted; check the URL";
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'the host name does not resolve; check the URL';
  if (code === 'ECONNREFUSED') return 'the server refuses connections; check the URL';
  if (code === 'ECONNRESET' || /terminated|other side closed|socket/i.test(text))
    return 'the server closed the connection';
  if (code === 'ETIMEDOUT' || /timeout/i.test(text)) return 'the server did not answer in time';
  return (errorMessage(cause).split('\n')[0] ?? 'the connection failed').replace(/\.$/, '');
}

/** Download into the cache (once per content), verifying the pin before the file is kept. */
async function download(location: string, pin: string | undefined): Promise<{ path: string; sha256: string }> {
  const url = checkUrl(location);
  const extension = /(\.img(\.(xz|gz|zst))?|\.zip|\.xz|\.zst|\.gz)$/i.exec(url.pathname)?.[1] ?? extname(url.pathname);
  const urlKey = join(cachePaths.urls(), createHash('sha256').update(location).digest('hex'));
  const known = pin?.toLowerCase() ?? (await readFile(urlKey, 'utf8').catch(() => ''));
  if (sha256Pattern.test(known)) {
    const cached = join(cachePaths.downloads(), `${known}${extension}`);
    if (await isFile(cached)) {
      log.info(`using cached download of ${location}`);
      return { path: cached, sha256: known };
    }
  }
  await makeFolders(cachePaths.downloads());
  return withScope(async (scope) => {
    const partial = join(cachePaths.downloads(), `download-${process.pid}-${Date.now()}.partial`);
    scope.defer(`remove ${partial}`, () => rm(partial, { force: true }));
    let response: Response;
    try {
      response = await fetch(url, { redirect: 'follow', signal: interruptSignal });
    } catch (error) {
      throw new UserError(`cannot download ${location}: ${networkCause(error)}.`);
    }
    if (!response.ok || !response.body)
      throw new UserError(
        `cannot download ${location}: the server answered ${response.status} ${response.statusText}.`,
      );
    const length = Number(response.headers.get('content-length')) || undefined;
    const bar = progress(`downloading ${url.pathname.split('/').at(-1)}`, length);
    const hash = createHash('sha256');
    let received = 0;
    await pipeline(
      Readable.fromWeb(response.body as import('node:stream/web').ReadableStream),
      counter((n) => {
        received = n;
        bar.update(n);
      }),
      new Transform({
        transform(chunk: Buffer, _e, cb) {
          hash.update(chunk);
          cb(null, chunk);
        },
      }),
      createWriteStream(partial),
      { signal: interruptSignal },
    ).catch((error: NodeJS.ErrnoException) => {
      // A local write error (ENOSPC on the cache) names its path; anything else is the connection.
      if (error.path !== undefined) throw error;
      const of = length ? ` of ${length}` : '';
      throw new UserError(
        `the download of ${location} broke off after ${received}${of} bytes (${networkCause(error)}); try again.`,
      );
    });
    if (length !== undefined && !response.headers.get('content-encoding') && received !== length)
      throw new UserError(`the download of ${location} broke off after ${received} of ${length} bytes; try again.`);
    bar.done();
    const digest = hash.digest('hex');
    checkPin(`the download of ${location}`, digest, pin);
    const final = join(cachePaths.downloads(), `${digest}${extension}`);
    await rename(partial, final);
    await makeFolders(cachePaths.urls());
    await writeFile(urlKey, digest);
    return { path: final, sha256: digest };
  });
}

/** The decompressor's argv, reading the compressed data from stdin (zip reads the file itself). */
async function decompressor(source: string, compression: Exclude<Compression, 'none'>) {
  switch (compression) {
    case 'xz':
      return { tool: 'xz' as const, args: ['--decompress', '--stdout', '--threads=0'], stdin: true };
    case 'zstd':
      return { tool: 'zstd' as const, args: ['--decompress', '--stdout', '--long=31', '--quiet'], stdin: true };
    case 'gzip':
      return { tool: 'gzip' as const, args: ['--decompress', '--stdout'], stdin: true };
    case 'zip': {
      const { stdout } = await run('unzip', ['-Z1', source]);
      const images = stdout.split('\n').filter((n) => /\.img$/i.test(n));
      if (images.length !== 1) {
        throw new UserError(
          `${source} must hold exactly one .img file, and holds ${images.length === 0 ? 'none' : images.join(', ')}.`,
        );
      }
      return { tool: 'unzip' as const, args: ['-p', source, images[0]!], stdin: false };
    }
  }
}

async function decompress(
  source: string,
  compression: Exclude<Compression, 'none'>,
  sourceSha: string,
): Promise<string> {
  const final = join(cachePaths.images(), `${sourceSha}.img`);
  if (await isFile(final)) {
    log.info(`using cached decompressed image ${final}`);
    return final;
  }
  await makeFolders(cachePaths.images());
  return withScope(async (scope) => {
    const partial = join(cachePaths.images(), `${sourceSha}.${process.pid}.partial`);
    scope.defer(`remove ${partial}`, () => rm(partial, { force: true }));
    const { tool, args, stdin } = await decompressor(source, compression);
    const size = (await stat(source)).size;
    const output = await sparseWriter(partial);
    scope.defer(`close ${partial}`, () => output.destroyed || output.destroy());
    // Nothing may be awaited between starting the tool and attaching its stdout.
    const child = stream(tool, args);
    scope.defer(`stop ${tool}`, async () => {
      child.subprocess.kill();
      await child.done.catch(() => undefined);
    });
    const bar = progress(`decompressing ${source.split('/').at(-1)}`, stdin ? size : undefined);
    const feeding = stdin
      ? pipeline(
          createReadStream(source, { highWaterMark: 4 * 1024 * 1024 }),
          counter((n) => bar.update(n)),
          child.stdin!,
        )
      : Promise.resolve(child.stdin?.end());
    let writeError: NodeJS.ErrnoException | undefined;
    const draining = (
      stdin
        ? pipeline(child.stdout!, output)
        : pipeline(
            child.stdout!,
            counter((n) => bar.update(n)),
            output,
          )
    ).catch((error: NodeJS.ErrnoException) => {
      writeError = error;
      throw error;
    });
    await Promise.all([feeding, draining, child.done]).catch(async (error) => {
      // The cache disk full or read-only: the decompressor then dies of a broken pipe, not its fault.
      if (writeError?.syscall) throw Object.assign(writeError, { path: cachePaths.images() });
      // A decompressor's own message ("Unexpected end of input") says more than EPIPE.
      await child.done.catch((toolError: unknown) => {
        const said =
          toolError instanceof ToolError ? toolError.stderr.trim().split('\n').at(-1) : errorMessage(toolError);
        throw new UserError(
          `${source} cannot be decompressed (${said}); it is truncated or corrupt, so download it again.`,
        );
      });
      throw error;
    });
    bar.done();
    if (!hasBootSignature(await readBytes(partial, 0, SECTOR)))
      throw new UserError(`${source} does not contain a disk image (no partition table after decompressing).`);
    await rename(partial, final);
    return final;
  });
}

/**
 * `hash: false` skips hashing a raw, unpinned .img (inspect does not need it); compressed sources
 * are always hashed because the hash is their cache key.
 */
export async function resolveBaseImage(
  spec: BaseImageSpec,
  options: { hash?: boolean } = {},
): Promise<ResolvedBaseImage> {
  if (spec.sha256 !== undefined && !sha256Pattern.test(spec.sha256.toLowerCase())) {
    throw new UserError(`the sha256 pin "${spec.sha256}" is not 64 hex digits.`);
  }
  let source: string;
  let sourceSha256: string | undefined;
  if (isUrl(spec.location)) {
    ({ path: source, sha256: sourceSha256 } = await download(spec.location, spec.sha256));
  } else {
    source = spec.location;
    const st = await stat(source).catch(() => undefined);
    if (!st)
      throw new UserError(
        `${source} does not exist; give the path of a Raspberry Pi OS image ` +
          '(.img, .img.xz, .zip, .img.gz or .img.zst) or an https:// URL.',
      );
    if (!st.isFile()) throw new UserError(`${source} is not a regular file; give the path of a Raspberry Pi OS image.`);
  }
  // A download is named by its URL, not by its place in the cache.
  const compression = detectCompression(
    await readBytes(source, 0, SECTOR),
    isUrl(spec.location) ? spec.location : source,
  );
  if (sourceSha256 === undefined && (options.hash !== false || spec.sha256 !== undefined || compression !== 'none')) {
    sourceSha256 = await localSha256(source);
    checkPin(source, sourceSha256, spec.sha256);
  }
  const path = compression === 'none' ? source : await decompress(source, compression, sourceSha256!);
  return { path, sourceSha256, compression };
}
