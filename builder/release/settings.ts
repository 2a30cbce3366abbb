/**
 * What a build releases besides its node images, from the profile's `output:` section and the
 * command line (which wins): the compressed formats, whether raw images stay, where the assets will
 * be published. Pure: no I/O.
 */
import { UserError } from '../errors.js';
import type { OutputData } from '../profile/types.js';
import { type Compression, DEFAULT_LEVEL } from './compress.js';

export interface ReleaseSettings {
  /** Compressed copies per node, in the order given. */
  compress: Compression[];
  /** The raw `.img` stays in the cluster folder (always when nothing is compressed). */
  keepRaw: boolean;
  /** Absolute prefix of the assets' URLs in imager.json, ending in "/"; relative names without it. */
  releaseUrl?: string;
  icon?: string;
}

/** What the command line says; undefined fields leave the profile's value. */
export interface ReleaseFlags {
  compress?: string[];
  keepRaw?: boolean;
  releaseUrl?: string;
}

const LEVELS = { xz: [0, 9], zst: [1, 19] } as const;

/** `xz`, `zst:19`, `none` → a compression, or null for none; a UserError naming `where` otherwise. */
export function parseCompression(text: string, where: string): Compression | null {
  const match = /^(none|xz|zst)(?::(\d+))?$/.exec(text.trim());
  const format = match?.[1];
  if (!match || !format || (format === 'none' && match[2] !== undefined))
    throw new UserError(
      `${where} "${text}" is not a compression; use xz, zst or none, optionally xz:LEVEL or zst:LEVEL.`,
    );
  if (format === 'none') return null;
  const [low, high] = LEVELS[format as 'xz' | 'zst'];
  const level = match[2] === undefined ? DEFAULT_LEVEL[format as 'xz' | 'zst'] : Number(match[2]);
  if (level < low || level > high)
    throw new UserError(`${where} "${text}": the ${format} level must be from ${low} to ${high}.`);
  return { format: format as 'xz' | 'zst', level };
}

export function releaseSettings(output: OutputData | undefined, flags: ReleaseFlags): ReleaseSettings {
  const fromFlags = flags.compress !== undefined && flags.compress.length > 0;
  const texts = fromFlags ? flags.compress! : (output?.compress ?? ['none']);
  const where = fromFlags ? '--compress' : 'output.compress';
  const parsed = texts.map((t) => parseCompression(t, where));
  const compress: Compression[] = [];
  for (const c of parsed) {
    if (!c) continue;
    if (compress.some((d) => d.format === c.format))
      throw new UserError(`${where} names ${c.format} twice; give each format once.`);
    compress.push(c);
  }
  const keepRaw = compress.length === 0 || parsed.includes(null) || (flags.keepRaw ?? output?.keepRaw ?? false);
  const url = flags.releaseUrl ?? output?.releaseUrl;
  if (url !== undefined && !/^https:\/\/[^\s/]+\S*$/.test(url))
    throw new UserError(
      `--release-url "${url}" is not an https:// URL; give the address the assets will be published under, ` +
        'such as https://github.com/me/cluster/releases/download/v1/.',
    );
  return {
    compress,
    keepRaw,
    ...(url ? { releaseUrl: url.endsWith('/') ? url : `${url}/` } : {}),
    ...(output?.icon ? { icon: output.icon } : {}),
  };
}

/** The file names one node's release holds, raw image first. */
export function artifactFiles(image: string, settings: ReleaseSettings): { kind: ArtifactKind; file: string }[] {
  return [
    ...(settings.keepRaw ? [{ kind: 'raw' as const, file: image }] : []),
    ...settings.compress.map((c) => ({ kind: c.format, file: `${image}.${c.format}` })),
    { kind: 'bmap' as const, file: `${image}.bmap` },
  ];
}

/** Every name a node's files may have, whatever the settings of the build that wrote them. */
export const anyArtifact = (image: string): string[] => [image, `${image}.xz`, `${image}.zst`, `${image}.bmap`];

export type ArtifactKind = 'raw' | 'xz' | 'zst' | 'bmap';
