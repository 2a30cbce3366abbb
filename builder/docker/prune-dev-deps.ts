/**
 * Run by the Dockerfile in /opt/swarmcard: removes from node_modules every package that
 * package-lock.json marks as needed only for development (`"dev": true`), as `npm prune --omit=dev`
 * would, without npm in the image. A package without a lock file (a global npm install) has no
 * development packages to remove.
 */
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const lockFile = 'package-lock.json';
if (existsSync(lockFile)) {
  const lock = JSON.parse(readFileSync(lockFile, 'utf8')) as { packages?: Record<string, { dev?: boolean }> };
  let removed = 0;
  for (const [path, entry] of Object.entries(lock.packages ?? {})) {
    if (!path.startsWith('node_modules/') || entry.dev !== true || !existsSync(path)) continue;
    rmSync(path, { recursive: true, force: true });
    removed++;
  }
  // Their command links would dangle; a scope folder (@biomejs/) whose packages all went is empty.
  rmSync('node_modules/.bin', { recursive: true, force: true });
  for (const entry of readdirSync('node_modules', { withFileTypes: true }))
    if (entry.isDirectory() && entry.name.startsWith('@') && readdirSync(join('node_modules', entry.name)).length === 0)
      rmdirSync(join('node_modules', entry.name));
  process.stdout.write(`removed ${removed} development package(s)\n`);
}
