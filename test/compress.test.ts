/**
 * Chunked compression (builder/release/compress.ts) against the real decoders: xz, zstd, bsdcat
 * (libarchive, as Raspberry Pi Imager reads images) and Python's lzma module must all read a
 * compressed node image back to exactly the raw bytes. Node 2 reuses every chunk it did not change;
 * bytes are the same whatever the cache holds; a damaged cache entry is never shipped; a failing or
 * interrupted compressor leaves nothing half-written.
 *
 * The tests that compress in this process share process.env.SWARMCARD_CACHE_DIR, so they run
 * serially; those that need another environment or a signal run compress-op.js as a child.
 */

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, open, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { streamInto } from '../builder/exec/run.js';
import { XzBlockSplitter, xzStreamOf } from '../builder/formats/xz.js';
import {
  CHUNK_BYTES,
  type CompressedFile,
  type CompressFormat,
  compressImage,
  compressorVersion,
  DEFAULT_LEVEL,
} from '../builder/release/compress.js';
import { ReferenceKeys } from '../builder/release/reference-keys.js';
import { XzBlockCompressor, xzBlockArgs } from '../builder/release/xz-blocks.js';
import { ZstdBatches, zstdBatchArgs } from '../builder/release/zstd-batches.js';
import { fixture, scratchCopy, scratchDir } from './helpers/fixtures.js';
import { missingPrograms, testIf } from './helpers/requires.js';

const missing = await missingPrograms(['xz', 'zstd', 'bsdcat', 'python3']);
const serial = testIf(missing, { serial: true });
const parallel = testIf(missing);
const op = fileURLToPath(new URL('helpers/compress-op.js', import.meta.url));

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(piece);
  return hash.digest('hex');
}

/** sha256 of what a decoder writes to stdout (it must also exit 0). */
async function decoded(argv: string[]): Promise<string> {
  const child = execa(argv[0]!, argv.slice(1), { buffer: { stdout: false }, encoding: 'buffer' });
  const hash = createHash('sha256');
  for await (const piece of child.stdout) hash.update(piece as Uint8Array);
  await child;
  return hash.digest('hex');
}

/** Every real reader of the format, each giving the sha256 of the bytes it read. */
function readers(format: CompressFormat, file: string): Record<string, () => Promise<string>> {
  const python = (read: string) => async () =>
    (
      await execa('python3', [
        '-c',
        `import hashlib, lzma, sys; f = sys.argv[1]; print(hashlib.sha256(${read}).hexdigest())`,
        file,
      ])
    ).stdout.trim();
  return format === 'xz'
    ? {
        'xz -d': () => decoded(['xz', '-dc', file]),
        bsdcat: () => decoded(['bsdcat', file]),
        'python lzma.open().read()': python('lzma.open(f).read()'),
        'python lzma.decompress()': python('lzma.decompress(open(f, "rb").read())'),
      }
    : {
        'zstd -d': () => decoded(['zstd', '-dc', file]),
        bsdcat: () => decoded(['bsdcat', file]),
      };
}

/** sha256 of each chunk of a file, as the test sees them. */
async function chunkHashes(path: string, chunkBytes = CHUNK_BYTES): Promise<string[]> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const hashes: string[] = [];
    const buffer = Buffer.alloc(chunkBytes);
    for (let at = 0; at < size; at += chunkBytes) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(chunkBytes, size - at), at);
      hashes.push(createHash('sha256').update(buffer.subarray(0, bytesRead)).digest('hex'));
    }
    return hashes;
  } finally {
    await handle.close();
  }
}

async function writeAt(path: string, offset: number, bytes: Buffer): Promise<void> {
  const handle = await open(path, 'r+');
  await handle.write(bytes, 0, bytes.length, offset).finally(() => handle.close());
}

/** Every file under `dir`, recursively. */
async function files(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** compressImage with its chunk cache in `cache` (this process's environment: serial tests only). */
async function compressWith(
  cache: string,
  raw: string,
  out: string,
  format: CompressFormat,
  chunkBytes?: number,
  reference?: string,
): Promise<CompressedFile> {
  process.env.SWARMCARD_CACHE_DIR = cache;
  try {
    return await compressImage(raw, out, { format, level: DEFAULT_LEVEL[format] }, { chunkBytes, reference });
  } finally {
    delete process.env.SWARMCARD_CACHE_DIR;
  }
}

async function checkReaders(t: ExecutionContext, format: CompressFormat, file: string, rawSha: string) {
  for (const [name, read] of Object.entries(readers(format, file))) t.is(await read(), rawSha, `${name} reads ${file}`);
  await execa(format === 'xz' ? 'xz' : 'zstd', ['-t', file]);
}

for (const format of ['xz', 'zst'] as const) {
  serial(
    `${format}: every real decoder reads the chunked file back byte for byte, one chunk or hundreds`,
    async (t) => {
      const base = await fixture('trixie-armhf');
      const dir = await scratchDir(t);
      const rawSha = await sha256File(base);
      const { size: rawSize } = await stat(base);
      // The default chunk size (the last chunk of the 196 MiB fixture is short) and 1 MiB chunks (196
      // streams/frames).
      for (const chunkBytes of [CHUNK_BYTES, 1024 * 1024]) {
        const out = join(dir, `node-${chunkBytes}.img.${format}`);
        const result = await compressWith(join(dir, 'cache'), base, out, format, chunkBytes);
        t.is(result.chunks, Math.ceil(rawSize / chunkBytes));
        t.deepEqual(
          { rawSha256: result.rawSha256, rawSize: result.rawSize, sha256: result.sha256, size: result.size },
          { rawSha256: rawSha, rawSize, sha256: await sha256File(out), size: (await stat(out)).size },
        );
        await checkReaders(t, format, out, rawSha);
        if (format === 'xz') {
          // One complete xz stream per chunk: the file really is chunked, and its index adds up.
          const totals = (await execa('xz', ['--robot', '--list', out])).stdout
            .split('\n')
            .find((l) => l.startsWith('totals'));
          const [, streams, , , uncompressed] = totals!.split('\t');
          t.is(Number(streams), result.chunks);
          t.is(Number(uncompressed), rawSize);
        }
      }
    },
  );
}

serial(
  'node 2 reuses every chunk but the ones it changed; identical chunks in one image are compressed once',
  async (t) => {
    const base = await fixture('trixie-armhf');
    const dir = await scratchDir(t);
    const cache = join(dir, 'cache');
    const node1 = await scratchCopy(t, base, 'node1.img');
    const node2 = await scratchCopy(t, base, 'node2.img');
    const { size } = await stat(node2);
    // A new disk id in the MBR (chunk 0), a block in the middle (chunk 5), the last bytes (the last chunk).
    const changes = [440, 5 * CHUNK_BYTES + 4096 + 17, size - 100];
    for (const [i, offset] of changes.entries()) await writeAt(node2, offset, Buffer.from(`node2 change ${i}`));
    const changed = new Set(changes.map((offset) => Math.floor(offset / CHUNK_BYTES)));
    t.is(changed.size, 3);

    const first = await compressWith(cache, node1, `${node1}.xz`, 'xz');
    const distinct = new Set(await chunkHashes(node1)).size;
    t.true(distinct < first.chunks, 'the fixture has repeated (zero) chunks');
    t.is(first.reused, first.chunks - distinct, 'node 1, cold cache: each distinct chunk compressed once');

    const second = await compressWith(cache, node2, `${node2}.xz`, 'xz');
    t.is(second.chunks, first.chunks);
    t.is(second.reused, second.chunks - changed.size, 'node 2 compresses only its 3 changed chunks');
    t.is(await decoded(['xz', '-dc', `${node2}.xz`]), await sha256File(node2));
    t.is(second.rawSha256, await sha256File(node2));
  },
);

serial("a chunk equal to its base's takes the base's key: hashed for the first node only", async (t) => {
  const base = await fixture('trixie-armhf');
  const dir = await scratchDir(t);
  const node = await scratchCopy(t, base, 'node.img');
  const changes = [440, 5 * CHUNK_BYTES + 4096 + 17];
  for (const offset of changes) await writeAt(node, offset, Buffer.from('a change'));
  const expected = await chunkHashes(node);

  /** The key of every chunk of `image` against `reference`, and the chunks that were hashed. */
  const keys = async (image: string, reference: string) => {
    const [mine, theirs] = await Promise.all([open(image, 'r'), open(reference, 'r')]);
    try {
      const references = await ReferenceKeys.of(theirs, CHUNK_BYTES);
      const hashed: number[] = [];
      const { size } = await mine.stat();
      const found = await Promise.all(
        Array.from({ length: Math.ceil(size / CHUNK_BYTES) }, async (_, index) => {
          const bytes = Buffer.alloc(CHUNK_BYTES);
          const { bytesRead } = await mine.read(bytes, 0, bytes.length, index * CHUNK_BYTES);
          return references.keyOf(index, bytes.subarray(0, bytesRead), async (b) => {
            hashed.push(index);
            return createHash('sha256').update(b).digest('hex');
          });
        }),
      );
      return { found, hashed: hashed.sort((a, b) => a - b) };
    } finally {
      await Promise.all([mine.close(), theirs.close()]);
    }
  };
  const every = expected.map((_, index) => index);
  const first = await keys(node, base);
  t.deepEqual(first.found, expected, 'node 1: every key is right');
  t.deepEqual(first.hashed, every, 'node 1: every chunk is hashed');
  const second = await keys(node, base);
  t.deepEqual(second.found, expected, 'node 2: every key is right');
  t.deepEqual(second.hashed, [0, 5], 'node 2: only the chunks that differ from the base are hashed');
  // The base against itself learns its chunks 0 and 5 too; a node still gets its own keys there.
  const whole = await keys(base, base);
  t.deepEqual(whole.found, await chunkHashes(base));
  t.deepEqual(whole.hashed, [0, 5]);
  const third = await keys(node, base);
  t.deepEqual(third.found, expected, "a chunk that differs from the base's never takes its key");
  t.deepEqual(third.hashed, [0, 5]);
  // A node shorter than its base: its short last chunk is not the base's, though it begins alike.
  const short = await scratchCopy(t, base, 'short.img');
  await truncate(short, 5 * CHUNK_BYTES + 1024 * 1024);
  t.deepEqual((await keys(short, base)).found, await chunkHashes(short), 'a short last chunk gets its own key');

  // A reference that changed since starts over.
  const copy = await scratchCopy(t, base, 'base-copy.img');
  t.deepEqual((await keys(node, copy)).hashed, every, 'another reference file: its keys are its own');
  await writeAt(copy, 5 * CHUNK_BYTES + 4096 + 17, Buffer.from('a change'));
  const changed = await keys(node, copy);
  t.deepEqual(changed.found, expected, 'a changed reference: every key is still right');
  t.deepEqual(changed.hashed, every, 'a changed reference: its keys are learnt again');

  // Through compressImage: the same bytes with a reference as without, and every reader agrees.
  for (const format of ['xz', 'zst'] as const) {
    const plain = await compressWith(join(dir, 'cache'), node, join(dir, `plain.${format}`), format);
    const against = await compressWith(
      join(dir, 'cache-2'),
      node,
      join(dir, `against.${format}`),
      format,
      undefined,
      base,
    );
    t.is(against.sha256, plain.sha256, `${format}: a reference changes no byte`);
    t.is(against.rawSha256, plain.rawSha256);
    await checkReaders(t, format, join(dir, `against.${format}`), await sha256File(node));
  }
});

serial('the same image gives the same bytes: two runs, cold and warm cache', async (t) => {
  const base = await fixture('trixie-armhf');
  const dir = await scratchDir(t);
  for (const format of ['xz', 'zst'] as const) {
    const cold = await compressWith(join(dir, `cache-a-${format}`), base, join(dir, `a.${format}`), format);
    const warm = await compressWith(join(dir, `cache-a-${format}`), base, join(dir, `b.${format}`), format);
    const again = await compressWith(join(dir, `cache-b-${format}`), base, join(dir, `c.${format}`), format);
    t.is(warm.reused, warm.chunks, `${format}: a warm cache compresses nothing`);
    t.true(cold.reused < cold.chunks);
    t.is(warm.sha256, cold.sha256, `${format}: warm = cold`);
    t.is(again.sha256, cold.sha256, `${format}: a second cold run = the first`);
    t.deepEqual(await readFile(join(dir, `b.${format}`)), await readFile(join(dir, `a.${format}`)));
  }
});

parallel("xz: a chunk's stream is the same from 2 threads as from 4, fed alone or among others", async (t) => {
  const base = await fixture('trixie-armhf');
  const handle = await open(base, 'r');
  const chunks = await Promise.all(
    [0, 1, 2].map(async (i) => {
      const bytes = Buffer.alloc(CHUNK_BYTES / 4);
      await handle.read(bytes, 0, bytes.length, (i + 2) * bytes.length);
      return bytes;
    }),
  );
  await handle.close();
  const args = xzBlockArgs(DEFAULT_LEVEL.xz, CHUNK_BYTES / 4);
  const streams = async (threads: number, feed: Buffer[]) => {
    const xz = new XzBlockCompressor(args, threads, {});
    // Each block is given back once copied, as compress.ts does: xz's output waits while 2 are held.
    const made = feed.map(async (bytes) => {
      const { pieces, release } = await xz.compress(bytes, () => undefined);
      const whole = Buffer.concat(pieces);
      release();
      return whole;
    });
    xz.end();
    const streams = await Promise.all(made);
    await xz.close();
    return streams;
  };
  const [two, four, alone] = [await streams(2, chunks), await streams(4, chunks), await streams(2, [chunks[1]!])];
  t.deepEqual(four, two, '4 threads give what 2 give');
  t.deepEqual(alone[0], two[1], 'a chunk fed alone gives what it gives among others');
  t.is(two.length, 3);
  // Each is a whole .xz stream: xz itself decodes it to the chunk.
  for (const [i, stream] of two.entries()) {
    const { stdout } = await execa('xz', ['-dc'], { input: stream, encoding: 'buffer' });
    t.true(Buffer.from(stdout).equals(chunks[i]!), `chunk ${i} decodes`);
  }
});

parallel(
  'zstd: a chunk is compressed without waiting for a full batch when zstd is idle or it is needed',
  async (t) => {
    const dir = await scratchDir(t);
    const batches = new ZstdBatches(dir, zstdBatchArgs(3), {}, 2);
    const chunk = (i: number) => Buffer.alloc(256 * 1024, i);
    const frames = new Map<string, Buffer>();
    const compress = (name: string) =>
      batches.compress(
        chunk(name.charCodeAt(0)),
        name,
        () => undefined,
        async (frame) => {
          const pieces: Buffer[] = [];
          for await (const piece of frame) pieces.push(Buffer.from(piece));
          frames.set(name, Buffer.concat(pieces));
        },
      );
    // None of these waits for a full batch or for end(). Nothing runs: `a` starts at once.
    await compress('a');
    // While `d` runs, `b` is needed before it is staged; `c` waits for company until it is needed.
    const d = compress('d');
    batches.need('b');
    const b = compress('b');
    const c = compress('c');
    await Promise.all([d, b]);
    batches.need('c');
    await c;
    for (const name of ['a', 'b', 'c', 'd']) {
      const { stdout } = await execa('zstd', ['-dc'], { input: frames.get(name)!, encoding: 'buffer' });
      t.true(Buffer.from(stdout).equals(chunk(name.charCodeAt(0))), `${name} decodes to its chunk`);
    }
  },
);

parallel(
  "streamInto: all of a tool's output comes through one small reused buffer, in order, paused and resumed",
  async (t) => {
    const data = randomBytes(3 * 1024 * 1024);
    const { stdout: packed } = await execa('xz', ['-0', '-c'], { input: data, encoding: 'buffer' });
    const buffer = Buffer.alloc(4096);
    const got: Buffer[] = [];
    let pieces = 0;
    let elsewhere = 0;
    let xz: Awaited<ReturnType<typeof streamInto>> | undefined;
    const onData = (piece: Buffer) => {
      if (piece.buffer !== buffer.buffer) elsewhere++;
      got.push(Buffer.from(piece));
      piece.fill(0xee); // as the next read would
      if (++pieces % 50 !== 0) return true;
      setTimeout(() => xz?.resume(), 5);
      return false;
    };
    xz = await streamInto('xz', ['-dc'], buffer, onData);
    xz.stdin.end(Buffer.from(packed));
    await xz.done;
    t.true(Buffer.concat(got).equals(data), 'every byte, in order');
    t.is(elsewhere, 0, 'every piece is a view of the one buffer');
    t.true(pieces >= data.length / buffer.length);

    const bad = await streamInto('xz', ['-dc'], buffer, () => true);
    bad.stdin.end(Buffer.from('not an xz stream'));
    const error = await t.throwsAsync(bad.done);
    t.regex(error?.message ?? '', /xz.*format/i, 'a failing tool rejects done with what it said');
  },
);

parallel(
  'xz: blocks are cut out of a stream however its bytes arrive (one at a time, or all at once, in one reused buffer)',
  async (t) => {
    const data = Buffer.concat([randomBytes(70_000), Buffer.alloc(200_000, 7), randomBytes(5)]);
    const { stdout } = await execa('xz', ['-T2', '-6', '--block-size=100000', '-c'], {
      input: data,
      encoding: 'buffer',
    });
    const stream = Buffer.from(stdout);
    for (const step of [1, 3, 4096, stream.length]) {
      const splitter = new XzBlockSplitter();
      const blocks = [];
      // As xz's output is read: into one buffer, overwritten by the next piece.
      const reused = Buffer.alloc(step);
      for (let at = 0; at < stream.length; at += step) {
        const length = stream.copy(reused, 0, at, at + step);
        blocks.push(...splitter.push(reused.subarray(0, length)));
        reused.fill(0xee);
      }
      t.deepEqual(
        blocks.map((b) => b.uncompressedSize),
        [100_000, 100_000, 70_005],
        `fed ${step} byte(s) at a time`,
      );
      // Each block wrapped as a stream of its own; their concatenation is the data again.
      const wrapped = Buffer.concat(blocks.flatMap((b) => xzStreamOf(b)));
      const { stdout: back } = await execa('xz', ['-dc'], { input: wrapped, encoding: 'buffer' });
      t.true(Buffer.from(back).equals(data), `fed ${step} byte(s) at a time: decodes to the data`);
    }
  },
);

serial('a corrupt or truncated cache entry is compressed again and never shipped', async (t) => {
  const base = await fixture('trixie-armhf');
  const dir = await scratchDir(t);
  const cache = join(dir, 'cache');
  const good = await compressWith(cache, base, join(dir, 'good.xz'), 'xz');
  const hashes = await chunkHashes(base);
  const entryOf = async (hash: string) => {
    const hit = (await files(join(cache, 'chunks'))).filter((f) => f.endsWith(`/${hash}.chunk`));
    t.is(hit.length, 1);
    return hit[0]!;
  };

  // A flipped byte in chunk 0's compressed bytes (its xz stream would still start fine).
  const flipped = await entryOf(hashes[0]!);
  const bytes = await readFile(flipped);
  bytes[bytes.length - 40]! ^= 0x55;
  await writeFile(flipped, bytes);
  const afterFlip = await compressWith(cache, base, join(dir, 'flip.xz'), 'xz');
  t.is(afterFlip.sha256, good.sha256, 'the shipped file is the good one');
  t.is(afterFlip.reused, afterFlip.chunks - 1, 'exactly the damaged chunk was compressed again');
  t.notDeepEqual(await readFile(flipped), bytes, 'the entry was repaired');

  // A truncated entry, of a chunk that occurs several times (zeros): compressed once, reused after.
  const zeroHash = hashes.find((h, i) => hashes.indexOf(h) !== i)!;
  await truncate(await entryOf(zeroHash), 70);
  const afterTruncate = await compressWith(cache, base, join(dir, 'truncated.xz'), 'xz');
  t.is(afterTruncate.sha256, good.sha256);
  t.is(afterTruncate.reused, afterTruncate.chunks - 1);
  await checkReaders(t, 'xz', join(dir, 'truncated.xz'), good.rawSha256);
  const repaired = await compressWith(cache, base, join(dir, 'repaired.xz'), 'xz');
  t.is(repaired.reused, repaired.chunks);
});

const programs = { xz: 'xz', zst: 'zstd' } as const;
const overrides = { xz: 'SWARMCARD_XZ', zst: 'SWARMCARD_ZSTD' } as const;

/** A stand-in for xz or zstd: answers --version like the real one, then runs BODY as the compressor. */
async function fakeCompressor(dir: string, format: CompressFormat, body: string): Promise<string> {
  const script = join(dir, `fake-${programs[format]}`);
  await writeFile(
    script,
    `#!/bin/sh\ncase "$1" in --version) exec ${programs[format]} --version;; esac\n` +
      `echo $$ >> "$FAKE_PIDS"\n${body}\n`,
  );
  await chmod(script, 0o755);
  return script;
}

async function inChild(dir: string, base: string, format: CompressFormat, env: Record<string, string>, chunk = '') {
  const out = join(dir, 'out', `node.img.${format}`);
  const child = execa('node', [op, base, out, format, ...(chunk ? [chunk] : [])], {
    reject: false,
    // A run whose compressors are not stopped would wait for them (fake-xz sleeps for 120 s).
    timeout: 45_000,
    env: { SWARMCARD_CACHE_DIR: join(dir, 'cache'), FAKE_PIDS: join(dir, 'pids'), ...env },
  });
  return { child, out };
}

async function leftovers(dir: string, out: string): Promise<string[]> {
  const partials = (await files(dir)).filter((f) => f.endsWith('.partial'));
  const outThere = await stat(out).then(
    () => [out],
    () => [],
  );
  return [...partials, ...outThere];
}

async function alive(dir: string): Promise<string[]> {
  const pids = (await readFile(join(dir, 'pids'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const running = await Promise.all(
    pids.map((pid) =>
      stat(`/proc/${pid}`).then(
        () => pid,
        () => undefined,
      ),
    ),
  );
  return running.filter((pid): pid is string => pid !== undefined);
}

for (const format of ['xz', 'zst'] as const) {
  const name = overrides[format];
  parallel(
    `${format}: a failing compressor is named by ${name} and leaves no .partial (image nor cache)`,
    async (t) => {
      const base = await fixture('trixie-armhf');
      for (const [what, override] of [
        ['/bin/false (fails --version)', async () => '/bin/false'],
        [
          'a compressor that writes, then fails',
          (dir: string) => fakeCompressor(dir, format, 'head -c 3000 /dev/urandom\nexit 3'),
        ],
      ] as const) {
        const dir = await scratchDir(t);
        const program = await override(dir);
        const { child, out } = await inChild(dir, base, format, { [name]: program });
        const { stdout } = await child;
        const answer = JSON.parse(stdout.trim().split('\n').at(-1)!);
        t.is(answer.error?.name, 'UserError', what);
        t.regex(answer.error?.message ?? '', new RegExp(name), what);
        t.true(String(answer.error?.message).includes(program), what);
        t.deepEqual(await leftovers(dir, out), [], `${what}: nothing half-written`);
        t.deepEqual(await alive(dir), [], `${what}: no compressor left running`);
      }
    },
  );

  parallel(`${format}: a compressor failing while more chunks come stops the whole run at once`, async (t) => {
    // 256 distinct 64 KiB chunks: many zstd batches (or xz blocks), more than are staged at once, so
    // the first failure comes while the rest of the image still waits to be read.
    const dir = await scratchDir(t);
    const image = join(dir, 'random.img');
    await writeFile(image, randomBytes(16 * 1024 * 1024));
    const fake = await fakeCompressor(dir, format, 'cat > /dev/null\nexit 3');
    const { child, out } = await inChild(dir, image, format, { [name]: fake }, '65536');
    const { stdout } = await child;
    const answer = JSON.parse(stdout.trim().split('\n').at(-1)!);
    t.is(answer.error?.name, 'UserError', stdout);
    t.regex(answer.error?.message ?? '', new RegExp(name));
    t.deepEqual(await leftovers(dir, out), []);
    t.deepEqual(await alive(dir), []);
  });

  parallel(
    `${format}: Ctrl-C while compressing stops every compressor, removes the .partial files, exits 130`,
    async (t) => {
      const base = await fixture('trixie-armhf');
      const dir = await scratchDir(t);
      const fake = await fakeCompressor(dir, format, 'exec sleep 120');
      const { child, out } = await inChild(dir, base, format, { [name]: fake });
      // Wait until a compressor runs (it notes its pid: xz, one for the image's chunks; zstd, one per
      // batch) and reading has stopped for free buffers, so only the interrupt can stop it.
      for (let i = 0; i < 600 && (await alive(dir)).length < 1; i++) await new Promise((r) => setTimeout(r, 50));
      t.true((await alive(dir)).length >= 1, 'the compressor started');
      await new Promise((r) => setTimeout(r, 1000));
      child.kill('SIGINT');
      const result = await child;
      t.is(result.exitCode, 130);
      t.deepEqual(await leftovers(dir, out), []);
      t.deepEqual(await alive(dir), []);
    },
  );
}

test('levels out of range are refused; the version names the compressor', async (t) => {
  await t.throwsAsync(compressImage('/nonexistent', '/nonexistent.xz', { format: 'xz', level: 12 }), {
    name: 'UserError',
    message: /xz level 12 is out of range; use 0 to 9/,
  });
  await t.throwsAsync(compressImage('/nonexistent', '/nonexistent.zst', { format: 'zst', level: 0 }), {
    name: 'UserError',
  });
  if (!missing) {
    t.regex(await compressorVersion('xz'), /^xz \(XZ Utils\) \d+\.\d+/);
    t.regex(await compressorVersion('zst'), /^Zstandard CLI .*v\d+\.\d+/);
  }
});
