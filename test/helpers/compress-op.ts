/**
 * compressImage in a process of its own, so a test can give it its own environment (SWARMCARD_XZ,
 * SWARMCARD_ZSTD, SWARMCARD_CACHE_DIR) and send it signals:
 * `node compress-op.js RAW OUT FORMAT [CHUNK_BYTES]`. Installs the CLI's signal cleanup (Ctrl-C:
 * children stopped, cleanups run, exit 130). Prints one JSON line: `{ "value": CompressedFile }` or
 * `{ "error": { "name", "message" } }`, the message as the CLI's error boundary would show it
 * (toUserError).
 */
import { toUserError } from '../../builder/errors.js';
import { type CompressFormat, compressImage, DEFAULT_LEVEL } from '../../builder/release/compress.js';
import { installSignalCleanup } from '../../builder/util/scope.js';

const [raw, out, format, chunk] = process.argv.slice(2) as [string, string, CompressFormat, string?];
installSignalCleanup();

try {
  const chunkBytes = chunk ? Number(chunk) : undefined;
  const value = await compressImage(raw, out, { format, level: DEFAULT_LEVEL[format] }, { chunkBytes });
  process.stdout.write(`${JSON.stringify({ value })}\n`);
} catch (caught) {
  const error = toUserError(caught);
  const { name, message } = error instanceof Error ? error : new Error(String(error));
  process.stdout.write(`${JSON.stringify({ error: { name, message } })}\n`);
}
