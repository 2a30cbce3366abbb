/**
 * `swarmcard build --compress …`: a cluster's release as a new user makes it. Every artifact is read
 * with the real clients people use (xz, zstd, bsdcat/libarchive, Python's lzma, bmaptool,
 * sha256sum) and compared with what the manifest and imager.json say; rebuilds and growth keep
 * every node's bytes.
 */

import { existsSync } from 'node:fs';
import { chmod, cp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import type { Manifest } from '../builder/output/manifest.js';
import { swarmcard } from './helpers/cli.js';
import { fixture, scratchDir } from './helpers/fixtures.js';
import { partitionOffsets, sfdisk, sha256File } from './helpers/independent.js';
import { missingLoop, testIf } from './helpers/requires.js';
import { extFiles, fatFiles, flashOverUsedCard, fsckExt, fsckFat, oldCardBytes, slice } from './helpers/used-card.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const loopMissing = await missingLoop();

/** A private copy of a shipped profile (its secrets and password files are made beside it). */
async function profileCopy(t: ExecutionContext, name: string): Promise<{ dir: string; file: string }> {
  const dir = await scratchDir(t);
  await cp(join(root, 'profiles', `${name}.yaml`), join(dir, `${name}.yaml`));
  await cp(join(root, 'profiles', 'stacks'), join(dir, 'stacks'), { recursive: true });
  return { dir, file: join(dir, `${name}.yaml`) };
}

async function build(dir: string, file: string, base: string, extra: string[], out = 'dist') {
  return swarmcard(['build', file, '--base', base, '--out', join(dir, out), ...extra], {
    env: { SWARMCARD_CACHE_DIR: join(dir, 'cache') },
  });
}

/** sha256 of what a decoder writes to stdout, streamed (never a whole image in memory). */
async function decodedSha256(file: string, args: string[]): Promise<string> {
  const { stdout } = await execa(file, args, { buffer: false }).pipe('sha256sum');
  return stdout.split(' ')[0]!;
}

const python = (file: string, how: 'open' | 'decompress') =>
  [
    '-c',
    how === 'open'
      ? 'import hashlib,lzma,sys\nh=hashlib.sha256()\nwith lzma.open(sys.argv[1]) as f:\n' +
        '  for b in iter(lambda: f.read(1<<20), b""): h.update(b)\nprint(h.hexdigest())'
      : 'import hashlib,lzma,sys\nprint(hashlib.sha256(lzma.decompress(open(sys.argv[1],"rb").read())).hexdigest())',
    file,
  ] as string[];

/** Every real client reads each compressed artifact in full, as the raw image the manifest names. */
async function checkDecoders(t: ExecutionContext, dir: string, manifest: Manifest) {
  for (const node of manifest.nodes) {
    for (const artifact of node.artifacts) {
      const path = join(dir, artifact.file);
      const readers: [string, string[]][] =
        artifact.kind === 'xz'
          ? [
              ['xz', ['-dc', path]],
              ['bsdcat', [path]],
            ]
          : artifact.kind === 'zst'
            ? [
                ['zstd', ['-dcq', path]],
                ['bsdcat', [path]],
              ]
            : [];
      for (const [tool, args] of readers)
        t.is(await decodedSha256(tool, args), node.sha256, `${tool} reads ${artifact.file} in full`);
      if (artifact.kind === 'xz') {
        t.is((await execa('xz', ['-t', path], { reject: false })).exitCode, 0, `xz -t ${artifact.file}`);
        t.is((await execa('python3', python(path, 'open'))).stdout, node.sha256, `lzma.open ${artifact.file}`);
        t.is((await execa('python3', python(path, 'decompress'))).stdout, node.sha256, `lzma ${artifact.file}`);
      }
    }
  }
}

const sums = async (dir: string) =>
  new Map(
    (await readFile(join(dir, 'SHA256SUMS'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => [l.slice(66), l.slice(0, 64)] as const),
  );

interface ImagerEntry {
  name: string;
  url: string;
  extract_size: number;
  extract_sha256: string;
  image_download_size: number;
  image_download_sha256: string;
  release_date: string;
  devices: string[];
  init_format: string;
}

test('a release as a new user makes it: pi4-ethernet --compress xz --compress zst, read by every client', async (t) => {
  const { dir, file } = await profileCopy(t, 'pi4-ethernet');
  const base = await fixture('trixie-arm64');
  const result = await build(dir, file, base, ['--nodes', '2', '--compress', 'xz', '--compress', 'zst']);
  t.is(result.exitCode, 0, result.stderr);
  const out = join(dir, 'dist', 'pi4-ethernet');
  const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as Manifest;
  const names = manifest.nodes.map((n) => n.file);
  t.deepEqual(names, ['00-manager1.img', '01-worker1.img', '02-worker2.img']);

  // Exactly the release's files: no raw image, no partial, nothing else.
  const expected = [
    ...names.flatMap((n) => [`${n}.bmap`, `${n}.xz`, `${n}.zst`]),
    'SHA256SUMS',
    'imager.json',
    'manifest.json',
  ].sort();
  t.deepEqual((await readdir(out)).sort(), expected);

  // SHA256SUMS covers every other file, and sha256sum agrees.
  t.deepEqual([...(await sums(out)).keys()].sort(), expected.filter((f) => f !== 'SHA256SUMS').sort());
  const check = await execa('sha256sum', ['-c', '--strict', 'SHA256SUMS'], { cwd: out, reject: false });
  t.is(check.exitCode, 0, check.stdout + check.stderr);

  // The manifest: each node's artifacts with their real sizes and hashes; the tools that wrote them.
  for (const node of manifest.nodes) {
    t.deepEqual(
      node.artifacts.map((a) => a.kind),
      ['xz', 'zst', 'bmap'],
    );
    for (const a of node.artifacts) {
      t.is(a.size, (await stat(join(out, a.file))).size, a.file);
      t.is(a.sha256, await sha256File(join(out, a.file)), a.file);
    }
  }
  t.deepEqual(Object.keys(manifest.tools).sort(), ['e2fsprogs', 'mtools', 'xz', 'zstd']);
  t.regex(manifest.tools.xz!, /\d+\.\d+/);

  await checkDecoders(t, out, manifest);

  // imager.json: one cluster entry, one subitem per node, every figure true of the files.
  const imager = JSON.parse(await readFile(join(out, 'imager.json'), 'utf8')) as {
    os_list: { name: string; subitems: ImagerEntry[] }[];
  };
  t.is(imager.os_list.length, 1);
  t.is(imager.os_list[0]!.name, 'pi4-ethernet cluster (3 nodes)');
  const entries = imager.os_list[0]!.subitems;
  t.is(entries.length, 3);
  for (const [i, entry] of entries.entries()) {
    const node = manifest.nodes[i]!;
    const xz = join(out, `${node.file}.xz`);
    t.is(entry.url, `${node.file}.xz`, 'relative without --release-url');
    t.is(entry.image_download_size, (await stat(xz)).size);
    t.is(entry.image_download_sha256, await sha256File(xz));
    t.is(entry.extract_sha256, await decodedSha256('xz', ['-dc', xz]));
    t.is(entry.extract_size, Number((await execa('sh', ['-c', `xz -dc "${xz}" | wc -c`])).stdout));
    t.is(entry.release_date, '2023-11-14', 'from sourceDateEpoch 1700000000');
    t.deepEqual(entry.devices, ['pi4-64bit']);
    t.is(entry.init_format, 'none');
    t.regex(entry.name, new RegExp(`^0${i} ${node.hostname} — ${node.role}, Pi 4$`));
  }
});

testIf(loopMissing)(
  "bmaptool flashes a compressed node image onto a used card: the files are the image's",
  async (t) => {
    const { dir, file } = await profileCopy(t, 'pi4-ethernet');
    const result = await build(dir, file, await fixture('bookworm-arm64'), ['--nodes', '1', '--compress', 'xz:1']);
    t.is(result.exitCode, 0, result.stderr);
    const out = join(dir, 'dist', 'pi4-ethernet');
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as Manifest;
    const node = manifest.nodes[1]!;
    const [xz, bmap] = [`${node.file}.xz`, `${node.file}.bmap`].map((f) => join(out, f)) as [string, string];
    // The reference: the raw image as xz gives it back.
    const raw = join(dir, 'raw.img');
    await execa('sh', ['-c', `xz -dc "${xz}" > "${raw}"`]);
    t.is(await sha256File(raw), node.sha256);
    // A used card (random old bytes, a loop device over them) written by the real client from the .xz.
    const card = join(dir, 'card.img');
    await oldCardBytes(card, node.size, 'release test');
    const flash = await flashOverUsedCard(xz, bmap, card, true);
    t.is(flash.exitCode, 0, flash.output);
    const { boot, root: rootfs } = await partitionOffsets(raw);
    const { partitions } = await sfdisk(raw);
    const sizes = partitions.map((p) => p.size * 512);
    const fat = await fsckFat(await slice(card, boot, sizes[0]!, join(dir, 'boot.part')));
    t.true(fat.ok, fat.output);
    const ext = await fsckExt(await slice(card, rootfs, sizes[1]!, join(dir, 'root.part')));
    t.true(ext.ok, ext.output);
    t.deepEqual(await fatFiles(card, boot, join(dir, 'card-boot')), await fatFiles(raw, boot, join(dir, 'raw-boot')));
    t.deepEqual(
      await extFiles(card, rootfs, join(dir, 'card-root')),
      await extFiles(raw, rootfs, join(dir, 'raw-root')),
    );
  },
);

test('rebuilds and growth keep every node artifact byte for byte', async (t) => {
  const { dir, file } = await profileCopy(t, 'pizero-otg');
  const base = await fixture('trixie-armhf');
  const flags = ['--compress', 'xz:1', '--compress', 'zst', '--keep-raw'];
  const first = await build(dir, file, base, ['--nodes', '2', ...flags], 'a');
  t.is(first.exitCode, 0, first.stderr);
  const again = await build(dir, file, base, ['--nodes', '2', ...flags], 'b');
  t.is(again.exitCode, 0, again.stderr);
  const grown = await build(dir, file, base, ['--nodes', '3', ...flags], 'c');
  t.is(grown.exitCode, 0, grown.stderr);
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((o) => sums(join(dir, o, 'pizero-otg'))));
  t.deepEqual([...b!], [...a!], 'a rebuild writes the same bytes, every artifact');
  const kinds = [...a!.keys()];
  t.true(['.img', '.img.xz', '.img.zst', '.img.bmap'].every((k) => kinds.some((f) => f.endsWith(k))));
  // The host lists every worker (its gadget links), so it changes; the workers' files do not.
  const workers = [...a!].filter(([name]) => /^0[12]-/.test(name));
  t.is(workers.length, 8);
  for (const [name, sum] of workers) t.is(c!.get(name), sum, `${name} is unchanged when node 3 is added`);
  t.not(c!.get('00-otghost1.img'), a!.get('00-otghost1.img'));
  t.true(c!.has('03-otg3.img.xz'));
});

test('one format failing stops the others at once: exit 1, no compressed file, no compressor left', async (t) => {
  const { dir, file } = await profileCopy(t, 'pizero-otg');
  const base = await fixture('trixie-armhf');
  // zstd fails once it has read its input; xz would take two minutes unless it is stopped.
  const fake = async (name: string, real: string, body: string) => {
    const script = join(dir, `fake-${name}`);
    const head = `#!/bin/sh\ncase "$1" in --version) exec ${real} --version;; esac\necho $$ >> "${dir}/pids"\n`;
    await writeFile(script, `${head}${body}\n`);
    await chmod(script, 0o755);
    return script;
  };
  const env = {
    SWARMCARD_CACHE_DIR: join(dir, 'cache'),
    SWARMCARD_XZ: await fake('xz', 'xz', 'exec sleep 120'),
    SWARMCARD_ZSTD: await fake('zstd', 'zstd', 'cat > /dev/null\necho "zstd: no space left" >&2\nexit 1'),
  };
  const args = ['build', file, '--base', base, '--out', join(dir, 'dist'), '--nodes', '1'];
  const result = await swarmcard([...args, '--compress', 'xz', '--compress', 'zst'], { env, timeout: 90_000 });
  t.is(result.exitCode, 1, result.stderr);
  t.regex(result.stderr, /^error: \S+fake-zstd \(from SWARMCARD_ZSTD\) failed: zstd: no space left; point SWARMCARD_/m);
  const left = await readdir(join(dir, 'dist', 'pizero-otg')).catch(() => []);
  t.deepEqual(
    left.filter((f) => /\.(xz|zst|partial)$/.test(f)),
    [],
    `nothing compressed or half-written: ${left.join(' ')}`,
  );
  const pids = (await readFile(join(dir, 'pids'), 'utf8')).trim().split('\n');
  t.true(pids.length >= 2, 'both compressors ran');
  const running = pids.filter((pid) => existsSync(`/proc/${pid}`));
  t.deepEqual(running, [], 'no compressor outlives the build');
});

test('changing the formats replaces the old artifacts; --only keeps the other nodes and their files', async (t) => {
  const { dir, file } = await profileCopy(t, 'pizero-otg');
  const base = await fixture('trixie-armhf');
  const out = join(dir, 'dist', 'pizero-otg');
  t.is((await build(dir, file, base, ['--nodes', '2', '--compress', 'zst'])).exitCode, 0);
  t.true((await readdir(out)).includes('01-otg1.img.zst'));
  t.false((await readdir(out)).includes('01-otg1.img'));
  // Raw only now: the compressed copies of a previous build are not left beside a manifest without them.
  const raw = await build(dir, file, base, ['--nodes', '2']);
  t.is(raw.exitCode, 0, raw.stderr);
  let files = await readdir(out);
  t.false(
    files.some((f) => f.endsWith('.zst')),
    files.join(' '),
  );
  t.true(files.includes('01-otg1.img') && files.includes('01-otg1.img.bmap'));
  // One node again with zst: it gets its new files; the others keep theirs and their manifest entries.
  const only = await build(dir, file, base, ['--nodes', '2', '--only', '1', '--compress', 'zst']);
  t.is(only.exitCode, 0, only.stderr);
  files = await readdir(out);
  t.true(files.includes('01-otg1.img.zst') && !files.includes('01-otg1.img'), files.join(' '));
  t.true(files.includes('02-otg2.img') && files.includes('00-otghost1.img'));
  const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as Manifest;
  t.deepEqual(
    manifest.nodes.map((n) => n.artifacts.map((a) => a.file)),
    [
      ['00-otghost1.img', '00-otghost1.img.bmap'],
      ['01-otg1.img.zst', '01-otg1.img.bmap'],
      ['02-otg2.img', '02-otg2.img.bmap'],
    ],
  );
  const check = await execa('sha256sum', ['-c', '--strict', 'SHA256SUMS'], { cwd: out, reject: false });
  t.is(check.exitCode, 0, check.stdout + check.stderr);
});

test('--release-url and output: in the profile: absolute URLs in imager.json, the profile formats used', async (t) => {
  const { dir, file } = await profileCopy(t, 'pizero-otg');
  await writeFile(file, `${await readFile(file, 'utf8')}\noutput:\n  compress: [zst]\n  keepRaw: true\n`);
  const result = await build(dir, file, await fixture('trixie-armhf'), [
    '--nodes',
    '1',
    '--release-url',
    'https://github.com/me/cluster/releases/download/v1',
  ]);
  t.is(result.exitCode, 0, result.stderr);
  const out = join(dir, 'dist', 'pizero-otg');
  t.true((await readdir(out)).includes('01-otg1.img.zst'));
  t.true((await readdir(out)).includes('01-otg1.img'), 'keepRaw: true keeps the raw image');
  const imager = JSON.parse(await readFile(join(out, 'imager.json'), 'utf8')) as {
    os_list: { subitems: ImagerEntry[] }[];
  };
  const otg1 = imager.os_list[0]!.subitems[1]!;
  t.is(otg1.url, 'https://github.com/me/cluster/releases/download/v1/01-otg1.img.zst');
  t.deepEqual(otg1.devices, ['pi1-32bit'], 'a Pi Zero is in the pi1 family of Imager');
});
