/**
 * The bmap file, format 2.0 as bmaptool 3.x reads it (docs/release.md "bmap"): the image size,
 * 4096-byte blocks, their count rounded up, the mapped count (= the blocks in the ranges), sha256
 * as the checksum type, the file's own sha256 taken with that value as 64 "0" characters, and the
 * ranges `first-last` (a single block as `N`), each with the sha256 of its bytes. Pure and
 * deterministic: the same ranges give the same bytes.
 */
import { createHash } from 'node:crypto';

export const BMAP_BLOCK_SIZE = 4096;

export interface BmapRange {
  first: number;
  last: number;
  /** sha256 (hex) of the image bytes of blocks first … last (the last may end early, at the image end). */
  sha256: string;
}

export interface BmapInput {
  imageSize: number;
  ranges: readonly BmapRange[];
}

const ZERO_CHECKSUM = '0'.repeat(64);
const checksumLine = (value: string): string => `    <BmapFileChecksum> ${value} </BmapFileChecksum>`;

export const bmapBlocksCount = (imageSize: number): number => Math.ceil(imageSize / BMAP_BLOCK_SIZE);

/** Percent with one decimal, from integers only (so the text never depends on float printing). */
function percent(part: number, whole: number): string {
  const tenths = whole === 0 ? 0 : Math.round((part * 1000) / whole);
  return `${Math.floor(tenths / 10)}.${tenths % 10}%`;
}

export function bmapXml({ imageSize, ranges }: BmapInput): string {
  if (!Number.isSafeInteger(imageSize) || imageSize <= 0) throw new Error(`bmap: bad image size ${imageSize}`);
  const blocks = bmapBlocksCount(imageSize);
  let mapped = 0;
  let next = 0;
  for (const r of ranges) {
    if (!(Number.isSafeInteger(r.first) && Number.isSafeInteger(r.last)) || r.first < next || r.last < r.first)
      throw new Error(`bmap: ranges must be sorted and disjoint, got ${r.first}-${r.last} after block ${next - 1}`);
    if (r.last >= blocks) throw new Error(`bmap: range ${r.first}-${r.last} past the last block ${blocks - 1}`);
    if (!/^[0-9a-f]{64}$/.test(r.sha256)) throw new Error(`bmap: range ${r.first}-${r.last} has no sha256`);
    mapped += r.last - r.first + 1;
    next = r.last + 1;
  }
  const lines = [
    '<?xml version="1.0" ?>',
    '<!-- Block map of a swarmcard image: the blocks the partition table and the filesystems use.',
    '     Only they must be written; the others hold nothing any filesystem reads. -->',
    '<bmap version="2.0">',
    `    <!-- Image size in bytes: ${imageSize} -->`,
    `    <ImageSize> ${imageSize} </ImageSize>`,
    '',
    '    <!-- Size of a block in bytes -->',
    `    <BlockSize> ${BMAP_BLOCK_SIZE} </BlockSize>`,
    '',
    '    <!-- Count of blocks in the image file -->',
    `    <BlocksCount> ${blocks} </BlocksCount>`,
    '',
    `    <!-- Count of mapped blocks: ${percent(mapped, blocks)} of the image -->`,
    `    <MappedBlocksCount> ${mapped} </MappedBlocksCount>`,
    '',
    '    <!-- Type of checksum used in this file -->',
    '    <ChecksumType> sha256 </ChecksumType>',
    '',
    '    <!-- The checksum of this bmap file, taken with this value as 64 "0" characters -->',
    checksumLine(ZERO_CHECKSUM),
    '',
    '    <!-- Mapped block ranges, each with the checksum of its bytes -->',
    '    <BlockMap>',
    ...ranges.map(
      (r) => `        <Range chksum="${r.sha256}"> ${r.first === r.last ? r.first : `${r.first}-${r.last}`} </Range>`,
    ),
    '    </BlockMap>',
    '</bmap>',
    '',
  ];
  const zeroed = lines.join('\n');
  const checksum = createHash('sha256').update(zeroed).digest('hex');
  return zeroed.replace(checksumLine(ZERO_CHECKSUM), checksumLine(checksum));
}
