/**
 * The .bmap of a node image, proven with the real client: `bmaptool copy` over a card full of old
 * bytes gives filesystems that fsck finds clean and that hold exactly the image's files, and a map
 * of the non-zero blocks only (what a sparse-file bmap amounts to) does not. The XML is parsed here
 * independently, bmaptool's own checks refuse tampering, the bytes are deterministic, and failures
 * and Ctrl-C leave no .partial.
 */

import { createCipheriv, createHash } from 'node:crypto';
import {
  access,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { bmapXml } from '../builder/formats/bmap-xml.js';
import { parseDumpe2fs, usedBlocks } from '../builder/formats/dumpe2fs.js';
import { allocatedClusters, type FatBits, parseFatGeometry } from '../builder/formats/fat-table.js';
import { BMAP_BLOCK, writeBmap } from '../builder/release/bmap.js';
import { mappedRanges } from '../builder/release/mapped-blocks.js';
import { HASH_WINDOW, hashFile, identityOf } from '../builder/util/hash-file.js';
import { splitRanges } from '../builder/util/ranges.js';
import { fixture, scratchCopy, scratchDir } from './helpers/fixtures.js';
import { missingLoop, missingPrograms, testIf } from './helpers/requires.js';
import {
  type Check,
  extFiles,
  fatFiles,
  flashOverUsedCard,
  fsckExt,
  fsckFat,
  nonZeroBmap,
  oldCardBytes,
  slice,
} from './helpers/used-card.js';

// Probed before any test is declared: ava wants every test declared in the module's first turn.
const loopMissing = await missingLoop();
const toolsMissing = await missingPrograms(['bmaptool', 'fsck.vfat', 'e2fsck', 'mcopy', 'debugfs', 'dumpe2fs']);
const useLoop = loopMissing === undefined;
const holdScript = fileURLToPath(new URL('helpers/bmap-hold.js', import.meta.url));

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

// Pure parts.

/** FAT12 packs two entries into three bytes, low nibble first. */
function fat12(entries: number[]): Buffer {
  const out = Buffer.alloc(Math.ceil((entries.length * 3) / 2));
  entries.forEach((value, i) => {
    const at = Math.floor((i * 3) / 2);
    if (i % 2 === 0) {
      out[at] = value & 0xff;
      out[at + 1] = (out[at + 1]! & 0xf0) | (value >> 8);
    } else {
      out[at] = (out[at]! & 0x0f) | ((value & 0x0f) << 4);
      out[at + 1] = value >> 4;
    }
  });
  return out;
}

function table(bits: FatBits, entries: number[]): Buffer {
  if (bits === 12) return fat12(entries);
  const out = Buffer.alloc((entries.length * bits) / 8);
  entries.forEach((v, i) => {
    if (bits === 16) out.writeUInt16LE(v, i * 2);
    else out.writeUInt32LE(v, i * 4);
  });
  return out;
}

test('FAT12, FAT16 and FAT32 tables: every entry ≠ 0 is an allocated cluster, FAT32 ignores its top 4 bits', (t) => {
  const end = { 12: 0xfff, 16: 0xffff, 32: 0x0fffffff } as const;
  for (const bits of [12, 16, 32] as const) {
    const eoc = end[bits];
    const bad = eoc - 8; // 0xFF7, 0xFFF7, 0x0FFFFFF7
    // entries 0 and 1 are the media byte and flags; clusters 2, 3 a chain, 6 bad, 8-9 a chain.
    const entries = [eoc - 7, eoc, 3, eoc, 0, 0, bad, 0, 9, eoc, 0, 0];
    const whole = table(bits, entries);
    t.deepEqual(
      allocatedClusters(whole, bits, 0, 2, entries.length),
      [
        { first: 2, last: 3 },
        { first: 6, last: 6 },
        { first: 8, last: 9 },
      ],
      `FAT${bits}`,
    );
    // A slice starting at entry 4, and a limit that stops inside the last chain.
    const from4 = table(bits, entries.slice(4));
    t.deepEqual(allocatedClusters(from4, bits, 4, 2, 9), [
      { first: 6, last: 6 },
      { first: 8, last: 8 },
    ]);
  }
  const reservedBitsOnly = table(32, [0x0ffffff8, 0x0fffffff, 0xf0000000, 0x10000003, 0x0fffffff]);
  t.deepEqual(allocatedClusters(reservedBitsOnly, 32, 0, 2, 5), [{ first: 3, last: 4 }]);
  t.throws(() => allocatedClusters(fat12([0, 0]), 12, 1, 2, 3), { message: /even entry/ });
});

/** A boot sector with the given BPB fields. */
function bootSector(f: {
  bps?: number;
  spc: number;
  reserved: number;
  fats?: number;
  rootEntries: number;
  total: number;
  fat16: number;
  fat32?: number;
}): Buffer {
  const s = Buffer.alloc(512);
  s.writeUInt16LE(f.bps ?? 512, 11);
  s[13] = f.spc;
  s.writeUInt16LE(f.reserved, 14);
  s[16] = f.fats ?? 2;
  s.writeUInt16LE(f.rootEntries, 17);
  if (f.total < 0x10000 && f.fat16 !== 0) s.writeUInt16LE(f.total, 19);
  else s.writeUInt32LE(f.total, 32);
  s.writeUInt16LE(f.fat16, 22);
  s.writeUInt32LE(f.fat32 ?? 0, 36);
  s[510] = 0x55;
  s[511] = 0xaa;
  return s;
}

test('FAT geometry from the BPB: areas and width, and refusal of what cannot be read safely', (t) => {
  // The trixie fixture's boot partition (minfo): 64 MiB, 1-sector clusters, 32 reserved, FAT32 of 1009 sectors.
  const fat32 = parseFatGeometry(
    bootSector({ spc: 1, reserved: 32, rootEntries: 0, total: 131072, fat16: 0, fat32: 1009 }),
  );
  t.like(fat32, { bits: 32, fatOffset: 32 * 512, fatBytes: 1009 * 512, fats: 2, rootDirBytes: 0 });
  t.is(fat32?.dataOffset, (32 + 2 * 1009) * 512);
  t.is(fat32?.clusterCount, 129022); // what fsck.vfat reports for it
  const fat16 = parseFatGeometry(bootSector({ spc: 4, reserved: 4, rootEntries: 512, total: 49152, fat16: 48 }));
  t.like(fat16, { bits: 16, rootDirOffset: (4 + 96) * 512, rootDirBytes: 32 * 512, dataOffset: (4 + 96 + 32) * 512 });
  t.is(fat16?.clusterCount, Math.floor((49152 - 132) / 4));
  const fat12 = parseFatGeometry(bootSector({ spc: 2, reserved: 1, rootEntries: 512, total: 4096, fat16: 6 }));
  t.like(fat12, { bits: 12, clusterCount: Math.floor((4096 - 1 - 12 - 32) / 2), clusterBytes: 1024 });
  // The FAT12/FAT16 boundary: 4084 clusters is FAT12, 4085 FAT16 (Linux, dosfstools, Microsoft).
  const clusters = (n: number) =>
    bootSector({ spc: 1, reserved: 1, rootEntries: 16, total: 1 + 2 * 16 + 1 + n, fat16: 16 });
  t.is(parseFatGeometry(clusters(4084))?.bits, 12);
  t.is(parseFatGeometry(clusters(4085))?.bits, 16);
  // A FAT too small for its clusters, a sector size FAT does not have, no signature.
  t.is(parseFatGeometry(bootSector({ spc: 4, reserved: 4, rootEntries: 512, total: 49152, fat16: 8 })), undefined);
  t.is(
    parseFatGeometry(bootSector({ bps: 500, spc: 4, reserved: 4, rootEntries: 512, total: 49152, fat16: 48 })),
    undefined,
  );
  t.is(parseFatGeometry(Buffer.alloc(512)), undefined);
});

const DUMPE2FS = `dumpe2fs 1.47.0 (5-Feb-2023)
Filesystem volume name:   rootfs
Free blocks:              20
First block:              1
Block size:               1024
Block count:              25


Group 0: (Blocks 1-8) csum 0x355c [ITABLE_ZEROED]
  Primary superblock at 1, Group descriptors at 2-2
  Free blocks: 6-7
  Free inodes: 79-2048
Group 1: (Blocks 9-16) csum 0xcfd4 [INODE_UNINIT, BLOCK_UNINIT, ITABLE_ZEROED]
  Block bitmap at 261 (bg #0 + 260), csum 0x00000000
  Free blocks: 9-10, 12, 14-16
  Free inodes: 4097-6144
Group 2: (Blocks 17-24) csum 0x174c [INODE_UNINIT, ITABLE_ZEROED]
  Free blocks: 
  Free inodes: 6145-8192
`;

test('dumpe2fs: the used blocks are all but the free lists, boot block included; odd output is refused', (t) => {
  const usage = parseDumpe2fs(DUMPE2FS);
  t.like(usage, { blockSize: 1024, firstBlock: 1, blocksCount: 25 });
  t.deepEqual(usedBlocks(usage), [
    { first: 0, last: 5 },
    { first: 8, last: 8 },
    { first: 11, last: 11 },
    { first: 13, last: 13 },
    { first: 17, last: 24 },
  ]);
  const broken = {
    'a missing group': DUMPE2FS.replace(/Group 1:[\s\S]*?(?=Group 2)/, ''),
    'a group without its free list': DUMPE2FS.replace('  Free blocks: 6-7\n', ''),
    'a free range outside its group': DUMPE2FS.replace('Free blocks: 6-7', 'Free blocks: 6-9'),
    'groups short of the block count': DUMPE2FS.replace('Block count:              25', 'Block count:              26'),
    'garbage in a free list': DUMPE2FS.replace('Free blocks: 6-7', 'Free blocks: 6-7 (8)'),
    'no header': DUMPE2FS.replace('Block size:', 'Size:'),
  };
  for (const [what, text] of Object.entries(broken))
    t.throws(() => parseDumpe2fs(text), { message: /unexpected dumpe2fs output/ }, what);
});

test('splitRanges: ranges cut at every multiple of the piece, nothing lost or added', (t) => {
  const ranges = [
    { first: 0, last: 0 },
    { first: 1000, last: 3100 },
    { first: 4096, last: 5119 },
  ];
  t.deepEqual(splitRanges(ranges, 1024), [
    { first: 0, last: 0 },
    { first: 1000, last: 1023 },
    { first: 1024, last: 2047 },
    { first: 2048, last: 3071 },
    { first: 3072, last: 3100 },
    { first: 4096, last: 5119 },
  ]);
  t.deepEqual(splitRanges([], 1024), []);
});

test('hashFile with a reference: each range gets the hash of its own bytes, whatever is known', async (t) => {
  const [W, B] = [HASH_WINDOW, 4096];
  const dir = await scratchDir(t);
  const image = pseudoRandom(5 * W + 5000, 'node');
  const file = join(dir, 'node.img');
  await writeFile(file, image);
  // The reference: the same bytes and two blocks more, one byte different in window 2.
  const longer = join(dir, 'longer.img');
  const theirs = Buffer.concat([image, pseudoRandom(8192, 'tail')]);
  theirs[2 * W + 100]! ^= 0xff;
  await writeFile(longer, theirs);
  const shorter = join(dir, 'shorter.img');
  await writeFile(shorter, image.subarray(0, 3 * W));
  const ranges = [
    { first: 0, last: 0 }, // a piece, equal
    { first: 10, last: 1500 }, // across windows 0 and 1: hashed, never compared
    { first: 2048, last: 3071 }, // a piece that differs
    { first: 3072, last: 3100 }, // a piece, equal; past the shorter reference
    { first: 5120, last: 5121 }, // after a window holding no range; the image ends in block 5121
  ];
  const plain = ranges.map((r) =>
    createHash('sha256')
      .update(image.subarray(r.first * B, (r.last + 1) * B))
      .digest('hex'),
  );
  const whole = createHash('sha256').update(image).digest('hex');
  const bogus = 'f'.repeat(64);
  const identity = async (path: string) => identityOf(await stat(path, { bigint: true }));
  for (const wholeToo of [true, false]) {
    const asked: string[] = [];
    const read = (path: string, known: (string | undefined)[]) =>
      hashFile(file, {
        ranges,
        block: B,
        whole: wholeToo,
        reference: {
          path,
          known: (id) => {
            asked.push(id);
            return known;
          },
        },
      });
    const learnt = await read(longer, []);
    t.deepEqual(learnt.ranges, plain);
    t.is(learnt.sha256, wholeToo ? whole : undefined);
    // The last block is 5000 bytes here and 4096 there: not the same piece.
    t.deepEqual(learnt.same, [true, false, false, true, false]);
    t.is(learnt.reused, 0);
    // The hashes known are asked for the reference as the read found it, and said which it was.
    t.deepEqual([asked, learnt.referenceId], [[await identity(longer)], await identity(longer)]);
    const known = learnt.same.map((same, i) => (same ? learnt.ranges[i] : bogus));
    const reusing = await read(longer, known);
    t.deepEqual(reusing.ranges, plain, 'a range that is not equal never takes a known hash');
    t.is(reusing.reused, 2);
    const short = await read(shorter, []);
    t.deepEqual([short.ranges, short.same], [plain, [true, false, true, false, false]]);
  }
  // A read that fails in the worker closes the files too (they are opened by the caller).
  const beyond = [{ first: 5122, last: 5122 }];
  const failed = hashFile(file, {
    ranges: beyond,
    block: B,
    whole: false,
    reference: { path: longer, known: () => [] },
  });
  await t.throwsAsync(failed, { message: /is shorter than its ranges/ });
  t.deepEqual(await openIn(dir), [], 'no file of the test is left open');
});

/** The files under DIR this process holds open. */
async function openIn(dir: string): Promise<string[]> {
  const fds = await readdir('/proc/self/fd');
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
  return targets.filter((target) => target.startsWith(`${dir}/`));
}

test('bmapXml: bmap 2.0 as bmaptool reads it, a single block as N, the file checksum over itself', (t) => {
  const sha = (c: string) => c.repeat(64);
  const xml = bmapXml({
    imageSize: 3 * 4096 + 1,
    ranges: [
      { first: 0, last: 0, sha256: sha('a') },
      { first: 2, last: 3, sha256: sha('b') },
    ],
  });
  t.true(xml.startsWith('<?xml version="1.0" ?>\n'));
  t.regex(xml, /\n<bmap version="2\.0">\n/);
  for (const line of [
    '    <ImageSize> 12289 </ImageSize>',
    '    <BlockSize> 4096 </BlockSize>',
    '    <BlocksCount> 4 </BlocksCount>',
    '    <MappedBlocksCount> 3 </MappedBlocksCount>',
    '    <ChecksumType> sha256 </ChecksumType>',
    `        <Range chksum="${sha('a')}"> 0 </Range>`,
    `        <Range chksum="${sha('b')}"> 2-3 </Range>`,
    '    </BlockMap>',
  ])
    t.true(xml.includes(`\n${line}\n`), line);
  t.true(xml.endsWith('</bmap>\n'));
  const own = /<BmapFileChecksum> ([0-9a-f]{64}) <\/BmapFileChecksum>/.exec(xml)![1]!;
  t.is(
    createHash('sha256')
      .update(xml.replace(own, '0'.repeat(64)))
      .digest('hex'),
    own,
  );
  t.is(
    bmapXml({
      imageSize: 12289,
      ranges: [
        { first: 0, last: 0, sha256: sha('a') },
        { first: 2, last: 3, sha256: sha('b') },
      ],
    }),
    xml,
  );
  const bad = [
    [
      { first: 2, last: 2, sha256: sha('a') },
      { first: 1, last: 1, sha256: sha('a') },
    ],
    [
      { first: 0, last: 2, sha256: sha('a') },
      { first: 2, last: 3, sha256: sha('a') },
    ],
    [{ first: 3, last: 4, sha256: sha('a') }],
    [{ first: 0, last: 0, sha256: 'xyz' }],
  ];
  for (const ranges of bad) t.throws(() => bmapXml({ imageSize: 12289, ranges }), { message: /^bmap: / });
});

// Images.

/**
 * An image with what the Pi images lack, in sectors: FAT12 at 2049 and FAT16 at 8191 (both off the
 * 4096-byte grid), ext4 with 4 KiB blocks, 4 groups (flex_bg, BLOCK_UNINIT) at 59393 (off the
 * grid), a foreign partition (type 0xda, half random, half zeros), data in the gap between FAT16
 * and ext4, and 3 sectors of data after the last partition, so the last 4096-byte block is partial.
 * Zero-filled files sit in allocated FAT clusters.
 */
const L = {
  fat12: { start: 2049, sectors: 4096 },
  fat16: { start: 8191, sectors: 49152 },
  ext4: { start: 59393, sectors: 131072 },
  foreign: { start: 190470, sectors: 2048 },
  gapMark: 58000 * 512 + 100,
  sectors: 192521,
} as const;
const bytes = (p: { start: number; sectors: number }) => ({ offset: p.start * 512, size: p.sectors * 512 });

function pseudoRandom(size: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

const MTOOLS = { MTOOLS_SKIP_CHECK: '1', MTOOLSRC: '/dev/null', SOURCE_DATE_EPOCH: '1700000000', TZ: 'UTC' };

async function makeLayoutImage(dir: string): Promise<string> {
  const image = join(dir, 'layout.img');
  await writeFile(image, '');
  await truncate(image, L.sectors * 512);
  const table = [
    'label: dos',
    'label-id: 0x0badcafe',
    'unit: sectors',
    `start=${L.fat12.start}, size=${L.fat12.sectors}, type=1`,
    `start=${L.fat16.start}, size=${L.fat16.sectors}, type=6`,
    `start=${L.ext4.start}, size=${L.ext4.sectors}, type=83`,
    `start=${L.foreign.start}, size=${L.foreign.sectors}, type=da`,
  ];
  await execa('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', image], { input: `${table.join('\n')}\n` });
  const files = join(dir, 'files');
  await mkdir(join(files, 'sub'), { recursive: true });
  await writeFile(join(files, 'hello.txt'), 'hello FAT\n');
  await writeFile(join(files, 'zeros.bin'), Buffer.alloc(64 * 1024));
  await writeFile(join(files, 'big.bin'), pseudoRandom(1024 * 1024, 'big'));
  await writeFile(join(files, 'sub', 'note.txt'), 'a note\n');
  for (const [name, part, bits, spc] of [
    ['FAT12', L.fat12, '12', '2'],
    ['FAT16', L.fat16, '16', '4'],
  ] as const) {
    await execa('mkfs.vfat', [
      '-F',
      bits,
      '-s',
      spc,
      '-n',
      name,
      '-i',
      '0badcafe',
      '--invariant',
      '--offset',
      String(part.start),
      image,
      String(part.sectors / 2),
    ]);
    const drive = `${image}@@${part.start * 512}`;
    const copy = bits === '12' ? ['hello.txt', 'zeros.bin', 'sub'] : ['hello.txt', 'zeros.bin', 'big.bin', 'sub'];
    for (const name of copy)
      await execa('mcopy', ['-s', '-m', '-i', drive, join(files, name), `::/${name}`], { env: MTOOLS });
    if (bits === '16') {
      // Freed clusters keep their bytes: unmapped, and nothing may read them.
      await execa('mcopy', ['-m', '-i', drive, join(files, 'big.bin'), '::/deleted.bin'], { env: MTOOLS });
      await execa('mdel', ['-i', drive, '::/deleted.bin'], { env: MTOOLS });
    }
  }
  const root = join(dir, 'root');
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(join(root, 'empty'));
  await writeFile(join(root, 'etc', 'motd'), 'welcome\n');
  await writeFile(join(root, 'random.bin'), pseudoRandom(3 * 1024 * 1024 + 123, 'random'));
  await execa('ln', ['-s', 'etc/motd', join(root, 'link')]);
  await execa(
    'mkfs.ext4',
    [
      '-q',
      '-F',
      '-b',
      '4096',
      '-g',
      '4096',
      '-L',
      'layout',
      '-U',
      '0badcafe-0000-4000-8000-000000000001',
      '-E',
      `offset=${L.ext4.start * 512}`,
      '-d',
      root,
      image,
      `${L.ext4.sectors / 2}k`,
    ],
    { env: { E2FSPROGS_FAKE_TIME: '1700000000' } },
  );
  const handle = await open(image, 'r+');
  try {
    const foreign = bytes(L.foreign);
    await handle.write(pseudoRandom(foreign.size / 2, 'foreign'), 0, foreign.size / 2, foreign.offset);
    await handle.write(Buffer.from('data between partitions'), 0, 23, L.gapMark);
    await handle.write(Buffer.alloc(3 * 512, 0xcd), 0, 3 * 512, (L.sectors - 3) * 512);
  } finally {
    await handle.close();
  }
  return image;
}

let layoutDir: string | undefined;
let layout: Promise<string> | undefined;
/**
 * The layout image, built once for this file; tests take private copies. One promise for the folder
 * and the image: tests ask concurrently, and a folder made per asker would be left behind.
 */
const layoutImage = (): Promise<string> => {
  layout ??= (async () => {
    layoutDir = await mkdtemp(join(tmpdir(), 'swarmcard-test-bmap-layout-'));
    return makeLayoutImage(layoutDir);
  })();
  return layout;
};
test.after.always(async () => {
  if (layoutDir) await rm(layoutDir, { recursive: true, force: true });
});

interface Part {
  name: string;
  kind: 'fat' | 'ext4' | 'raw';
  offset: number;
  size: number;
}

const fixtureParts = (): Part[] => [
  { name: 'boot', kind: 'fat', offset: 8192 * 512, size: 131072 * 512 },
  { name: 'root', kind: 'ext4', offset: 139264 * 512, size: 262144 * 512 },
];
const layoutParts = (): Part[] => [
  { name: 'FAT12', kind: 'fat', ...bytes(L.fat12) },
  { name: 'FAT16', kind: 'fat', ...bytes(L.fat16) },
  { name: 'ext4', kind: 'ext4', ...bytes(L.ext4) },
  { name: 'foreign', kind: 'raw', ...bytes(L.foreign) },
];

/** fsck and file tree of one partition of the card against the image. */
async function partitionProblems(t: ExecutionContext, image: string, card: string, part: Part, dir: string) {
  const problems: string[] = [];
  const base = join(dir, part.name);
  if (part.kind === 'raw') {
    const [a, b] = [join(base, 'image'), join(base, 'card')];
    await mkdir(base, { recursive: true });
    await slice(image, part.offset, part.size, a);
    await slice(card, part.offset, part.size, b);
    if (!(await readFile(a)).equals(await readFile(b))) problems.push(`${part.name}: bytes differ`);
    return problems;
  }
  await mkdir(base, { recursive: true });
  const sliced = await slice(card, part.offset, part.size, join(base, 'card.slice'));
  const check: Check = part.kind === 'fat' ? await fsckFat(sliced) : await fsckExt(sliced);
  await rm(sliced);
  if (!check.ok)
    problems.push(`${part.name}: fsck found problems:\n${check.output.split('\n').slice(0, 12).join('\n')}`);
  const files = part.kind === 'fat' ? fatFiles : extFiles;
  const expected = await files(image, part.offset, join(base, 'image-files'));
  const actual = await files(card, part.offset, join(base, 'card-files'));
  if (typeof expected === 'string') t.fail(`${part.name} of the image itself: ${expected}`);
  if (typeof actual === 'string') problems.push(`${part.name}: ${actual}`);
  else if (typeof expected !== 'string') {
    const differ = Object.keys({ ...expected, ...actual }).filter((k) => expected[k] !== actual[k]);
    if (differ.length > 0)
      problems.push(`${part.name}: ${differ.length} entries differ: ${differ.slice(0, 8).join(', ')}`);
    else t.true(Object.keys(expected).length > 3, `${part.name}: the image holds files`);
  }
  return problems;
}

/** Flash IMAGE with BMAP over a card of old bytes; the problems fsck and the file comparison find. */
async function flashAndCheck(t: ExecutionContext, image: string, bmap: string, parts: Part[], seed: string) {
  const dir = await scratchDir(t);
  const card = join(dir, 'card.img');
  await oldCardBytes(card, (await stat(image)).size, seed);
  const flashed = await flashOverUsedCard(image, bmap, card, useLoop);
  t.is(flashed.exitCode, 0, `${flashed.route}: ${flashed.output}`);
  t.log(`${flashed.route}: ${/mapped [^\n]*/.exec(flashed.output)?.[0] ?? 'copied'}`);
  const problems: string[] = [];
  for (const part of parts) problems.push(...(await partitionProblems(t, image, card, part, dir)));
  return { card, problems };
}

const tools = testIf(toolsMissing);
const percent = (b: { mappedBlocks: number; blocks: number }) => `${((100 * b.mappedBlocks) / b.blocks).toFixed(1)}%`;

/**
 * trixie (metadata_csum, orphan_file) and jessie (neither, nor uninit_bg: e2fsck reads every inode
 * slot, so every inode table block matters) fixtures: FAT32 with 512-byte clusters, ext4 with 1 KiB
 * blocks.
 */
const fixtures = ['trixie-armhf', 'jessie-armhf'] as const;

tools(
  "bmaptool copy over a used card: the fixtures' boot and root filesystems are clean, every file identical",
  async (t) => {
    t.timeout(300_000);
    for (const name of fixtures) {
      const image = await scratchCopy(t, await fixture(name), `${name}.img`);
      const bmap = `${image}.bmap`;
      const written = await writeBmap(image, bmap);
      t.log(`${name}: ${written.mappedBlocks} of ${written.blocks} blocks mapped (${percent(written)})`);
      const { problems } = await flashAndCheck(t, image, bmap, fixtureParts(), name);
      t.deepEqual(problems, [], name);
    }
  },
);

tools(
  'FAT12, FAT16, 4 KiB ext4 with BLOCK_UNINIT groups, off-grid starts, a foreign partition and a partial last block',
  async (t) => {
    t.timeout(300_000);
    const image = await scratchCopy(t, await layoutImage());
    const { stdout } = await execa('dumpe2fs', [`${image}?offset=${L.ext4.start * 512}`]);
    t.regex(stdout, /Block size:\s+4096/);
    t.regex(stdout, /BLOCK_UNINIT/, 'the ext4 partition has BLOCK_UNINIT groups');
    t.regex(stdout, /\(bg #0 \+ \d+\)/, "flex_bg put other groups' metadata in group 0");
    const bmap = `${image}.bmap`;
    const written = await writeBmap(image, bmap);
    t.log(`layout: ${written.mappedBlocks} of ${written.blocks} blocks mapped`);
    const ranges = await mappedRanges(image);
    const mapped = (block: number) => ranges.some((r) => r.first <= block && block <= r.last);
    const foreign = bytes(L.foreign);
    t.true(mapped(0), 'the MBR');
    t.true(mapped(Math.floor(L.gapMark / BMAP_BLOCK)), 'data between partitions');
    t.false(mapped(Math.floor(3_500_000 / BMAP_BLOCK)), 'zeros between partitions');
    for (let b = Math.floor(foreign.offset / BMAP_BLOCK); b * BMAP_BLOCK < foreign.offset + foreign.size; b++)
      t.true(mapped(b), `foreign partition block ${b}, zero or not`);
    t.true(mapped(written.blocks - 1), 'the partial last block');
    t.is(written.blocks, Math.ceil((L.sectors * 512) / BMAP_BLOCK));
    t.true(written.mappedBlocks < written.blocks / 3, 'free space is left out');
    const { card, problems } = await flashAndCheck(t, image, bmap, layoutParts(), 'layout');
    t.deepEqual(problems, []);
    const size = L.sectors * 512;
    const [a, b] = [await readFile(image), await readFile(card)];
    t.true(a.subarray(0, 512).equals(b.subarray(0, 512)), 'the MBR');
    t.true(a.subarray(L.gapMark, L.gapMark + 23).equals(b.subarray(L.gapMark, L.gapMark + 23)), 'the gap data');
    t.true(a.subarray(size - 1536).equals(b.subarray(size - 1536)), 'the partial last block');
  },
);

tools('a map of the non-zero blocks only leaves a used card corrupt: the mapped set is what matters', async (t) => {
  t.timeout(300_000);
  // What breaks: the FATs (mostly zeros) everywhere; jessie's inode tables (no uninit_bg, so
  // e2fsck reads every slot); the zero-filled files in FAT clusters; the foreign partition's zeros.
  for (const [name, source, parts, broken] of [
    ['trixie-armhf', await fixture('trixie-armhf'), fixtureParts(), ['boot']],
    ['jessie-armhf', await fixture('jessie-armhf'), fixtureParts(), ['boot', 'root']],
    ['layout', await layoutImage(), layoutParts(), ['FAT12', 'FAT16', 'foreign']],
  ] as const) {
    const image = await scratchCopy(t, source, `${name}.img`);
    const wrong = await nonZeroBmap(image);
    const bmap = `${image}.nonzero.bmap`;
    await writeFile(bmap, wrong.xml);
    const right = await writeBmap(image, `${image}.bmap`);
    t.log(`${name}: non-zero blocks ${wrong.mapped}, used blocks ${right.mappedBlocks}`);
    const { problems } = await flashAndCheck(t, image, bmap, parts, `${name}-nonzero`);
    const brief = problems.map((p) => p.split('\n').slice(0, 4).join('\n'));
    t.log(`${name} with the non-zero map:\n${brief.join('\n')}`);
    for (const part of broken)
      t.true(
        problems.some((p) => p.startsWith(`${part}:`)),
        `${name}: ${part} came out clean from the non-zero map; this proof proves nothing there`,
      );
  }
});

/** The bmap read back with nothing from builder/: regular expressions and node:crypto. */
async function checkBmapIndependently(t: ExecutionContext, image: string, xml: string) {
  const size = (await stat(image)).size;
  const field = (name: string) => {
    const match = new RegExp(`<${name}>\\s*(\\S+)\\s*</${name}>`).exec(xml);
    t.truthy(match, name);
    return match?.[1] ?? '';
  };
  t.true(xml.startsWith('<?xml version="1.0" ?>'));
  t.regex(xml, /<bmap version="2\.0">/);
  t.is(Number(field('ImageSize')), size);
  t.is(Number(field('BlockSize')), 4096);
  t.is(Number(field('BlocksCount')), Math.ceil(size / 4096));
  t.is(field('ChecksumType'), 'sha256');
  const own = field('BmapFileChecksum');
  t.is(
    createHash('sha256')
      .update(xml.replace(own, '0'.repeat(64)))
      .digest('hex'),
    own,
    'BmapFileChecksum',
  );
  const ranges = [...xml.matchAll(/<Range chksum="([0-9a-f]{64})">\s*(\d+)(?:-(\d+))?\s*<\/Range>/g)].map((m) => ({
    first: Number(m[2]),
    last: Number(m[3] ?? m[2]),
    sha256: m[1]!,
    text: m[0],
  }));
  t.is(ranges.length, (xml.match(/<Range /g) ?? []).length, 'every Range parsed');
  t.is(
    Number(field('MappedBlocksCount')),
    ranges.reduce((n, r) => n + r.last - r.first + 1, 0),
  );
  const handle = await open(image, 'r');
  try {
    let previous = -2;
    for (const r of ranges) {
      // Merged, except where a range is cut at a multiple of 4 MiB (1024 blocks).
      t.true(r.first > previous + 1 || (r.first === previous + 1 && r.first % 1024 === 0), `${r.text}: sorted, merged`);
      t.is(Math.floor(r.first / 1024), Math.floor(r.last / 1024), `${r.text}: within one 4 MiB piece`);
      t.true(r.first !== r.last || !r.text.includes('-'), `${r.text}: a single block as N`);
      previous = r.last;
      const hash = createHash('sha256');
      const end = Math.min((r.last + 1) * 4096, size);
      const buffer = Buffer.alloc(1024 * 1024);
      for (let at = r.first * 4096; at < end; ) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, end - at), at);
        hash.update(buffer.subarray(0, bytesRead));
        at += bytesRead;
      }
      t.is(hash.digest('hex'), r.sha256, `${r.text}: sha256 of its bytes`);
    }
    t.true(previous < Math.ceil(size / 4096));
  } finally {
    await handle.close();
  }
  return ranges;
}

tools("the bmap read independently: its own checksum, the mapped count and every range's sha256", async (t) => {
  for (const source of [await fixture('trixie-armhf'), await layoutImage()]) {
    const image = await scratchCopy(t, source);
    const out = `${image}.bmap`;
    const written = await writeBmap(image, out);
    const xml = await readFile(out, 'utf8');
    t.is(written.sha256, createHash('sha256').update(xml).digest('hex'));
    t.is(written.size, Buffer.byteLength(xml));
    const ranges = await checkBmapIndependently(t, image, xml);
    t.is(
      written.mappedBlocks,
      ranges.reduce((n, r) => n + r.last - r.first + 1, 0),
    );
    t.is(written.blocks, Math.ceil((await stat(image)).size / 4096));
  }
});

tools(
  "a node's bmap with its base as reference: pieces holding the base's bytes take its hashes, others not",
  async (t) => {
    const base = await scratchCopy(t, await fixture('trixie-armhf'), 'base.img');
    const node = await scratchCopy(t, base, 'node.img');
    const pieces = splitRanges(await mappedRanges(base), 1024);
    t.true(pieces.length >= 4, `${pieces.length} pieces`);
    const flip = async (file: string, at: number) => {
      const handle = await open(file, 'r+');
      const [byte] = (await handle.read(Buffer.alloc(1), 0, 1, at)).buffer;
      await handle.write(Buffer.from([byte! ^ 0xff]), 0, 1, at);
      await handle.close();
    };
    const map = async (file: string) => JSON.stringify(await mappedRanges(file));
    /** Change a byte in a piece of the node, from the last one back, where the change keeps the map. */
    const changed = new Map<number, number>();
    const changeOne = async () => {
      for (let i = pieces.length - 1; i >= 0; i--) {
        if (changed.has(i)) continue;
        const at = Math.floor(((pieces[i]!.first + pieces[i]!.last + 1) * 4096) / 2);
        await flip(node, at);
        // A FAT entry or a bitmap changes the map (or makes it unreadable): undo, try another piece.
        if ((await map(node).catch(() => '')) === (await map(base))) return changed.set(i, at);
        await flip(node, at);
      }
      throw new Error('no piece can change without changing the map');
    };
    /** The node's bmap written with the base as reference, against one written without. */
    const withReference = async (name: string) => {
      const [plain, referenced] = [join(await scratchDir(t), `${name}.plain.bmap`), `${node}.${name}.bmap`];
      await writeBmap(node, plain);
      const written = await writeBmap(node, referenced, { reference: base });
      const xml = await readFile(referenced, 'utf8');
      t.is(xml, await readFile(plain, 'utf8'), `${name}: the same bytes as without a reference`);
      await checkBmapIndependently(t, node, xml);
      return written.reusedRanges;
    };
    await changeOne();
    t.is(await withReference('first'), 0, 'nothing is known of the base yet');
    t.is(await withReference('second'), pieces.length - 1, 'all but the changed piece');
    // A piece known from the base changes now: it is compared, found different and hashed.
    await changeOne();
    t.is(await withReference('third'), pieces.length - 2);
    // The first changed piece holds the base's bytes again: never known, it is hashed and learnt.
    const [firstChanged] = changed.values();
    await flip(node, firstChanged!);
    t.is(await withReference('changed back'), pieces.length - 2);
    t.is(await withReference('changed back, again'), pieces.length - 1);
    // The base itself changes, its modification time set back: nothing known of it before is used.
    const stamp = join(await scratchDir(t), 'stamp');
    await writeFile(stamp, '');
    await execa('touch', ['-r', base, stamp]); // to the nanosecond, which utimes cannot give
    await flip(base, 0);
    await execa('touch', ['-r', stamp, base]); // as cp -p would: only the change time tells
    await flip(node, 0); // the node holds the base's new bytes there, whose hash is not the one known
    t.is(await withReference('changed base'), 0);
    t.is(await withReference('changed base, again'), pieces.length - 1);
  },
);

tools('bmaptool refuses a tampered image and a tampered bmap', async (t) => {
  const image = await scratchCopy(t, await fixture('trixie-armhf'));
  const bmap = `${image}.bmap`;
  await writeBmap(image, bmap);
  const dir = await scratchDir(t);
  const copy = (bmapFile: string, img: string) =>
    execa('bmaptool', ['copy', '--bmap', bmapFile, img, join(dir, 'out.img')], { reject: false, all: true });
  const clean = await copy(bmap, image);
  t.is(clean.exitCode, 0, clean.all);
  // One byte inside the root filesystem's mapped range changes.
  const [, second] = (await mappedRanges(image)).filter((r) => r.first * 4096 >= 139264 * 512);
  const tampered = await scratchCopy(t, image, 'tampered.img');
  const handle = await open(tampered, 'r+');
  await handle.write(Buffer.from([0x5a]), 0, 1, second!.first * 4096 + 17);
  await handle.close();
  const refused = await copy(bmap, tampered);
  t.not(refused.exitCode, 0);
  t.regex(refused.all ?? '', /checksum mismatch for blocks range/);
  const xml = await readFile(bmap, 'utf8');
  const badBmap = join(dir, 'bad.bmap');
  await writeFile(badBmap, xml.replace('<BlockSize> 4096 </BlockSize>', '<BlockSize> 4096  </BlockSize>'));
  const refusedBmap = await copy(badBmap, image);
  t.not(refusedBmap.exitCode, 0);
  t.regex(refusedBmap.all ?? '', /checksum mismatch for bmap file/);
});

tools('same image, same bmap bytes, wherever the image lies', async (t) => {
  const image = await scratchCopy(t, await fixture('trixie-armhf'));
  const elsewhere = await scratchCopy(t, image, 'another-name.img');
  const [a, b, c] = [`${image}.a.bmap`, `${image}.b.bmap`, `${elsewhere}.bmap`];
  const first = await writeBmap(image, a);
  t.deepEqual(await writeBmap(image, b), first);
  t.deepEqual(await writeBmap(elsewhere, c), first);
  const bytesA = await readFile(a);
  t.true(bytesA.equals(await readFile(b)));
  t.true(bytesA.equals(await readFile(c)));
  t.false(await exists(`${a}.partial`));
});

tools('a failed write leaves neither the bmap nor its .partial', async (t) => {
  const dir = await scratchDir(t);
  // The image is cut short: its root partition ends past the end of the file.
  const truncated = await scratchCopy(t, await fixture('trixie-armhf'), 'truncated.img');
  await truncate(truncated, 100 * 1024 * 1024);
  const out = join(dir, 'truncated.bmap');
  await t.throwsAsync(writeBmap(truncated, out), { message: /past the image end/ });
  t.false(await exists(out));
  t.false(await exists(`${out}.partial`));
  // Everything written, then the rename fails: OUT is a folder.
  const image = await scratchCopy(t, await fixture('trixie-armhf'));
  const folder = join(dir, 'a-folder.bmap');
  await mkdir(join(folder, 'inside'), { recursive: true });
  await t.throwsAsync(writeBmap(image, folder));
  t.false(await exists(`${folder}.partial`));
});

test('Ctrl-C while the image is read leaves neither the bmap nor its .partial', async (t) => {
  t.timeout(120_000);
  const dir = await scratchDir(t);
  // 4 GiB, sparse: one partition of a type nothing reads is mapped whole, so hashing takes seconds.
  const image = join(dir, 'big.img');
  await writeFile(image, '');
  await truncate(image, 4 * 1024 ** 3);
  await execa('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', image], {
    input: 'label: dos\nunit: sectors\nstart=2048, type=da\n',
  });
  const out = join(dir, 'big.bmap');
  const child = execa('node', [holdScript, image, out], { reject: false });
  const started = Date.now();
  while (!(await exists(`${out}.partial`)) && Date.now() - started < 30_000)
    await new Promise((r) => setTimeout(r, 10));
  t.true(await exists(`${out}.partial`), 'the .partial appeared while working');
  await new Promise((r) => setTimeout(r, 200));
  const signalled = Date.now();
  child.kill('SIGINT');
  const result = await child;
  const took = Date.now() - signalled;
  t.is(result.exitCode, 130, `${result.stdout}\n${result.stderr}`);
  // The read loop stops at the signal: it closes its own scope well within the handler's 2 s grace.
  t.true(took < 1500, `exited ${took} ms after the signal`);
  t.false(result.stdout.includes('done'), 'it was interrupted, not finished');
  t.false(await exists(`${out}.partial`));
  t.false(await exists(out));
});
