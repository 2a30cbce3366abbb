/**
 * The content-addressed cache: downloads and decompressed images keyed by the sha256 of their
 * source bytes, so a second build neither downloads nor decompresses again. Location:
 * $SWARMCARD_CACHE_DIR, else $XDG_CACHE_HOME/swarmcard, else ~/.cache/swarmcard.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export function cacheDir(): string {
  if (process.env.SWARMCARD_CACHE_DIR) return process.env.SWARMCARD_CACHE_DIR;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'swarmcard');
}

export const cachePaths = {
  /** Downloaded files, named `<sha256><extension>`. */
  downloads: () => join(cacheDir(), 'downloads'),
  /** Which sha256 a URL served last: `urls/<sha256 of the URL>`. */
  urls: () => join(cacheDir(), 'urls'),
  /** sha256 of local files, keyed by path+size+mtime+inode, so pins are not re-hashed every run. */
  hashes: () => join(cacheDir(), 'hashes'),
  /** Decompressed images, named `<sha256 of the compressed source>.img`. */
  images: () => join(cacheDir(), 'images'),
  /**
   * Compressed chunks of node images (release/compress.ts): `chunks/<format>-<level>-<chunk size>-<id>/`
   * (id: a hash of the compressor's version and arguments), then `<ab>/<sha256 of the raw chunk>.chunk`.
   */
  chunks: () => join(cacheDir(), 'chunks'),
};
