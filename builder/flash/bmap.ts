/**
 * Block maps (bmap-tools' XML format, versions 1.0 to 2.x): which blocks of an image hold data and
 * the checksum of each range. Format 2.0 (and 1.4, the same format released under that number)
 * names its checksum in ChecksumType and checks itself with BmapFileChecksum: the checksum of the
 * file with that value replaced by as many "0"s. 1.3 used sha1 (BmapFileSHA1, attribute sha1);
 * earlier versions have no checksums. The file is machine-written, so a strict scan of its
 * elements is enough; anything unexpected is refused.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { UserError } from '../errors.js';

export interface BmapRange {
  /** First and last block (inclusive), as in the file. */
  first: number;
  last: number;
  /** Byte range in the image: [start, end), the last block cut at the image size. */
  start: number;
  end: number;
  /** Hex checksum of the range's bytes (ChecksumType), when the file has one. */
  checksum?: string;
}

export interface Bmap {
  version: string;
  imageSize: number;
  blockSize: number;
  blocksCount: number;
  mappedBlocksCount: number;
  /** A Node crypto hash name (sha256, sha1, md5), when the file has checksums. */
  checksumType?: string;
  ranges: BmapRange[];
}

const hexLength: Record<string, number> = { sha256: 64, sha1: 40, md5: 32, sha512: 128 };

/** Parse and check a bmap file's text; `file` names it in every refusal. */
/** `text` is the file read as latin1 (one character per byte), so its checksum is over the exact bytes. */
export function parseBmap(text: string, file: string): Bmap {
  const bad = (why: string) =>
    new UserError(`${file} is not a usable bmap file: ${why}; make it again with "bmaptool create".`);
  const version = /<bmap\s+version\s*=\s*"(\d+)\.(\d+)"\s*>/.exec(text);
  if (!version) throw bad('it has no <bmap version="…"> element');
  const [major, minor] = [Number(version[1]), Number(version[2])];
  if (major > 2)
    throw new UserError(
      `${file} is bmap format ${major}.${minor}; swarmcard reads formats up to 2.x, so update swarmcard.`,
    );
  const field = (name: string, required = true): string | undefined => {
    const all = [...text.matchAll(new RegExp(`<${name}>\\s*([^<]*?)\\s*</${name}>`, 'g'))];
    if (all.length > 1) throw bad(`it has ${all.length} <${name}> elements`);
    if (all.length === 0 && required) throw bad(`it has no <${name}>`);
    return all[0]?.[1];
  };
  const count = (name: string): number => {
    const value = field(name)!;
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
      throw bad(`<${name}> is "${value}", not a number`);
    return Number(value);
  };
  const imageSize = count('ImageSize');
  const blockSize = count('BlockSize');
  const blocksCount = count('BlocksCount');
  const mappedBlocksCount = count('MappedBlocksCount');
  if (blockSize === 0 || blockSize % 512 !== 0) throw bad(`its block size ${blockSize} is not a multiple of 512`);
  if (blocksCount !== Math.ceil(imageSize / blockSize))
    throw bad(`${blocksCount} blocks of ${blockSize} bytes do not make an image of ${imageSize} bytes`);

  // Which checksum, in which attribute, checked by which element: by format version.
  let checksumType: string | undefined;
  let attribute = 'chksum';
  let selfElement: string | undefined;
  if (major === 2 || (major === 1 && minor === 4)) {
    checksumType = field('ChecksumType', false)?.toLowerCase();
    selfElement = 'BmapFileChecksum';
  } else if (major === 1 && minor === 3) {
    [checksumType, attribute, selfElement] = ['sha1', 'sha1', 'BmapFileSHA1'];
  }
  if (checksumType !== undefined && !hexLength[checksumType])
    throw bad(`its checksum type "${checksumType}" is not one swarmcard knows (sha256, sha1, md5, sha512)`);
  const digits = checksumType ? hexLength[checksumType]! : 0;

  const self = selfElement ? field(selfElement, false) : undefined;
  if (self !== undefined && checksumType) {
    if (!new RegExp(`^[0-9a-f]{${digits}}$`).test(self)) throw bad(`<${selfElement}> is not a ${checksumType}`);
    const zeroed = text.replace(self, '0'.repeat(digits));
    const actual = createHash(checksumType).update(zeroed, 'latin1').digest('hex');
    if (actual !== self)
      throw new UserError(
        `${file} is damaged: its own ${checksumType} (${selfElement}) does not match its contents; ` +
          'copy or make it again with "bmaptool create".',
      );
  }

  const map = /<BlockMap>([\s\S]*)<\/BlockMap>/.exec(text);
  if (!map) throw bad('it has no <BlockMap>');
  const ranges: BmapRange[] = [];
  const rangePattern = /<Range(\s[^>]*)?>\s*(\d+)(?:\s*-\s*(\d+))?\s*<\/Range>/g;
  const leftover = map[1]!.replace(rangePattern, '').replace(/<!--[\s\S]*?-->/g, '');
  if (leftover.trim() !== '')
    throw bad(`its <BlockMap> holds something other than ranges: "${leftover.trim().slice(0, 40)}"`);
  let mapped = 0;
  for (const m of map[1]!.matchAll(rangePattern)) {
    const first = Number(m[2]);
    const last = m[3] === undefined ? first : Number(m[3]);
    const previous = ranges.at(-1);
    if (last < first || last >= blocksCount || (previous && first <= previous.last))
      throw bad(`the range ${m[2]}${m[3] ? `-${m[3]}` : ''} is out of order or outside the image`);
    const checksum = new RegExp(`${attribute}\\s*=\\s*"([0-9a-fA-F]*)"`).exec(m[1] ?? '')?.[1]?.toLowerCase();
    if (checksum !== undefined && (!checksumType || checksum.length !== digits))
      throw bad(`the range ${first}-${last} has a checksum that is not a ${checksumType ?? 'known type'}`);
    ranges.push({
      first,
      last,
      start: first * blockSize,
      end: Math.min((last + 1) * blockSize, imageSize),
      ...(checksum ? { checksum } : {}),
    });
    mapped += last - first + 1;
  }
  if (mapped !== mappedBlocksCount)
    throw bad(`its ranges hold ${mapped} blocks but <MappedBlocksCount> says ${mappedBlocksCount}`);
  return { version: `${major}.${minor}`, imageSize, blockSize, blocksCount, mappedBlocksCount, checksumType, ranges };
}

export async function readBmap(path: string): Promise<Bmap> {
  return parseBmap(await readFile(path, 'latin1'), path);
}
