/** The versions of the programs that write a release's bytes, for the manifest. */
import { run } from '../exec/run.js';
import { e2fsprogsVersion } from '../fs/partition.js';
import { type Compression, compressorVersion } from './compress.js';

export async function toolVersions(compress: Compression[]): Promise<Record<string, string>> {
  const mdir = await run('mdir', ['--version']);
  const mtools = /(\d+\.\d+(?:\.\d+)?)/.exec(mdir.stdout + mdir.stderr)?.[1] ?? 'unknown';
  const versions: Record<string, string> = { e2fsprogs: await e2fsprogsVersion(), mtools };
  for (const c of compress) versions[c.format === 'xz' ? 'xz' : 'zstd'] = await compressorVersion(c.format);
  return versions;
}
