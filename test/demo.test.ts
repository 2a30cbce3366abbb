/** `swarmcard demo`: the main job on the built-in base, as `make demo` runs it. */
import test from 'ava';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { swarmcard } from './helpers/cli.js';
import { scratchDir } from './helpers/fixtures.js';
import { debugfsCat, mdir, mtype, sfdisk, sha256File } from './helpers/independent.js';

test('demo builds one verified node image, identical bytes on a rerun', async (t) => {
  const dir = await scratchDir(t);
  const env = { SWARMCARD_CACHE_DIR: join(dir, 'cache') };
  const first = await swarmcard(['demo', '--out', join(dir, 'a')], { env });
  t.is(first.exitCode, 0, first.stderr);
  const image = join(dir, 'a', 'demo', '01-node1.img');
  t.regex(first.stdout, /release\s+bookworm/);
  t.regex(first.stdout, /hostname\s+node1/);
  t.is(await debugfsCat(image, '/etc/hostname'), 'node1\n');
  t.regex(await debugfsCat(image, '/etc/hosts'), /^127\.0\.1\.1\tnode1$/m);
  t.true((await mdir(image)).some((l) => l === '::/ssh'));
  const id = (await sfdisk(image)).id.replace('0x', '');
  t.regex(await mtype(image, '/cmdline.txt'), new RegExp(`root=PARTUUID=${id}-02`));
  t.regex(await debugfsCat(image, '/etc/fstab'), new RegExp(`PARTUUID=${id}-01`));
  t.deepEqual(await readdir(join(dir, 'a', 'demo')), ['01-node1.img'], 'no .partial left');

  const second = await swarmcard(['demo', '--out', join(dir, 'b')], { env });
  t.is(second.exitCode, 0, second.stderr);
  t.is(await sha256File(join(dir, 'b', 'demo', '01-node1.img')), await sha256File(image));
});
