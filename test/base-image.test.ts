/** Base image input: every container, the sha256 pin, the cache, and a URL on a loopback server. */

import { createReadStream } from 'node:fs';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import type { BaseImageSpec } from '../builder/source/base-image.js';
import { fixture, scratchCopy, scratchDir } from './helpers/fixtures.js';
import { sha256File } from './helpers/independent.js';
import { resolveWithCache } from './helpers/isolated.js';

/**
 * A private directory whose cache/ the builder uses: resolveBaseImage runs in a child process with
 * SWARMCARD_CACHE_DIR set there, so tests run concurrently without sharing process.env.
 */
async function ownCache(t: ExecutionContext) {
  const dir = await scratchDir(t);
  return { dir, resolve: (spec: BaseImageSpec) => resolveWithCache(join(dir, 'cache'), spec) };
}

const compressors: Record<string, (src: string, dst: string) => Promise<unknown>> = {
  '.img.xz': (s, d) => execa('sh', ['-c', 'xz -T0 -c "$0" > "$1"', s, d]),
  '.img.zst': (s, d) => execa('zstd', ['-q', '-f', s, '-o', d]),
  '.img.gz': (s, d) => execa('sh', ['-c', 'gzip -c "$0" > "$1"', s, d]),
  '.zip': (s, d) => execa('zip', ['-q', '-j', d, s]),
};

for (const [extension, compress] of Object.entries(compressors)) {
  test(`${extension}: decompressed once into the cache, sparse, identical to the raw image`, async (t) => {
    const { dir, resolve } = await ownCache(t);
    const raw = await scratchCopy(t, await fixture('bookworm-armhf'), 'raspios.img');
    const archive = join(dir, `raspios${extension}`);
    await compress(raw, archive);
    const pin = await sha256File(archive);
    const first = await resolve({ location: archive, sha256: pin });
    t.is(first.sourceSha256, pin);
    t.is(await sha256File(first.path), await sha256File(raw));
    const st = await stat(first.path);
    t.true(st.blocks * 512 < st.size / 4, 'zero blocks stay holes');
    const second = await resolve({ location: archive, sha256: pin });
    t.is(second.path, first.path);
    t.is((await stat(second.path)).mtimeMs, st.mtimeMs, 'not decompressed again');
    t.deepEqual(
      (await readdir(join(dir, 'cache', 'images'))).filter((n) => n.endsWith('.partial')),
      [],
    );
  });
}

test('a raw .img is used in place and its pin is enforced', async (t) => {
  const { resolve } = await ownCache(t);
  const raw = await scratchCopy(t, await fixture('bullseye-armhf'), 'raspios.img');
  const pin = await sha256File(raw);
  t.is((await resolve({ location: raw, sha256: pin.toUpperCase() })).path, raw);
  const error = await t.throwsAsync(resolve({ location: raw, sha256: '0'.repeat(64) }), {
    name: 'ChecksumError',
  });
  t.regex(error!.message, new RegExp(`has sha256 ${pin} but 0{64} was expected`));
  await t.throwsAsync(resolve({ location: raw, sha256: 'abc' }), {
    name: 'UserError',
    message: /not 64 hex digits/,
  });
});

test('a truncated archive is refused with one sentence and leaves nothing in the cache', async (t) => {
  const { dir, resolve } = await ownCache(t);
  const raw = await scratchCopy(t, await fixture('bookworm-armhf'), 'raspios.img');
  const archive = join(dir, 'raspios.img.xz');
  await compressors['.img.xz']!(raw, archive);
  await execa('truncate', ['-s', '20000', archive]);
  await t.throwsAsync(resolve({ location: archive }), {
    name: 'UserError',
    message: new RegExp(
      String.raw`raspios\.img\.xz cannot be decompressed \(.*xz: .*Unexpected end of input\); ` +
        String.raw`it is truncated or corrupt, so download it again\.`,
    ),
  });
  t.deepEqual(await readdir(join(dir, 'cache', 'images')), []);
});

test('a file that is not an image is refused', async (t) => {
  const { dir, resolve } = await ownCache(t);
  const notes = join(dir, 'notes.txt');
  await writeFile(notes, 'hello, these are notes and not an image\n');
  await t.throwsAsync(resolve({ location: notes }), {
    name: 'UserError',
    message: /is neither a disk image nor/,
  });
});

async function serve(file: string): Promise<{ server: Server; url: string; requests: () => number }> {
  let count = 0;
  const size = (await stat(file)).size;
  const server = createServer((request, response) => {
    count++;
    if (request.url !== '/images/raspios.img.xz') {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-length': size, 'content-type': 'application/x-xz' });
    createReadStream(file).pipe(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => count };
}

test('a URL is downloaded once, verified against its pin, cached and decompressed', async (t) => {
  const { dir, resolve } = await ownCache(t);
  const raw = await scratchCopy(t, await fixture('trixie-armhf'), 'raspios.img');
  const archive = join(dir, 'raspios.img.xz');
  await compressors['.img.xz']!(raw, archive);
  const pin = await sha256File(archive);
  const { server, url, requests } = await serve(archive);
  t.teardown(() => server.close());
  const first = await resolve({ location: `${url}/images/raspios.img.xz`, sha256: pin });
  t.is(first.compression, 'xz');
  t.is(await sha256File(first.path), await sha256File(raw));
  t.is(requests(), 1);
  const again = await resolve({ location: `${url}/images/raspios.img.xz`, sha256: pin });
  t.is(again.path, first.path);
  const unpinned = await resolve({ location: `${url}/images/raspios.img.xz` });
  t.is(unpinned.sourceSha256, pin, 'the URL remembers what it served');
  t.is(requests(), 1, 'no second download');
  await t.throwsAsync(resolve({ location: `${url}/images/missing.img.xz` }), {
    name: 'UserError',
    message: /server answered 404/,
  });
});

test('a download that does not match its pin is refused and not kept', async (t) => {
  const { dir, resolve } = await ownCache(t);
  const archive = join(dir, 'raspios.img.xz');
  await compressors['.img.xz']!(await fixture('trixie-armhf'), archive);
  const { server, url } = await serve(archive);
  t.teardown(() => server.close());
  await t.throwsAsync(resolve({ location: `${url}/images/raspios.img.xz`, sha256: 'f'.repeat(64) }), {
    name: 'ChecksumError',
  });
  t.deepEqual(await readdir(join(dir, 'cache', 'downloads')), []);
});

test('plain http is only accepted on loopback', async (t) => {
  const { resolve } = await ownCache(t);
  await t.throwsAsync(resolve({ location: 'http://downloads.example.org/raspios.img.xz' }), {
    name: 'UserError',
    message: /must use https:\/\//,
  });
});
