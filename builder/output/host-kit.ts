/**
 * host-kit.tar: the host-side files of a gadget cluster for a host that is a laptop or PC rather
 * than a Pi, with an install script and a README. Deterministic (tar-stream, sorted entries, fixed
 * mtime, root owner), so a rebuild gives the same bytes.
 */
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { ImageEdit } from '../plan/edits.js';
import type { ClusterPlan, NodePlan } from '../plan/plan.js';
import { shellQuote } from '../text/shell.js';
import { withScope } from '../util/scope.js';

export interface KitFile {
  path: string;
  content: string;
  mode: number;
}

/**
 * The host of a gadget cluster, reduced to what a laptop or PC needs: the host side of the links
 * (core edits and the host's own overlays). The swarm's files, users and keys stay in the image.
 * Undefined when the cluster has no gadget links.
 */
export function hostSide(plan: ClusterPlan): NodePlan | undefined {
  const host = plan.nodes.find((n) => n.role === 'host' && n.interfaces.some((i) => i.kind === 'usb-host-link'));
  if (!host) return undefined;
  const hostOverlays = new Set(
    host.overlays.map((o) => o.id).filter((id) => id !== 'swarm-node' && id !== 'admin-user'),
  );
  return {
    ...host,
    edits: host.edits.filter((e) => (e.origin === 'core' || hostOverlays.has(e.origin)) && e.op !== 'secret'),
  };
}

/** The files of a host kit: the host's own root-partition files, rendered for NetworkManager. */
export function hostKitFiles(host: NodePlan, rendered: ImageEdit[], cluster: string): KitFile[] {
  const files: KitFile[] = [];
  const units: string[] = [];
  for (const edit of rendered) {
    if (edit.op === 'write' && edit.partition === 'root')
      files.push({ path: `files${edit.path}`, content: edit.content, mode: edit.mode ?? 0o644 });
    if (edit.op === 'symlink' && /\.wants\//.test(edit.path)) units.push(edit.path.split('/').at(-1)!);
  }
  files.sort((a, b) => a.path.localeCompare(b.path));
  const links = host.interfaces.filter((i) => i.kind === 'usb-host-link');
  const install = [
    '#!/bin/sh',
    `# Install the host side of the ${cluster} USB gadget cluster on this machine (run as root).`,
    'set -eu',
    'cd "$(dirname "$0")/files"',
    'find . -type f | while read -r f; do',
    '  dest="/${f#./}"',
    '  mkdir -p "$(dirname "$dest")"',
    '  cp "$f" "$dest"',
    '  chmod "$(stat -c %a "$f")" "$dest"',
    '  chown root:root "$dest"',
    'done',
    '# Apply now; a reboot does the same.',
    'udevadm control --reload-rules || true',
    'udevadm trigger --subsystem-match=net || true',
    'sysctl --system >/dev/null || true',
    'if command -v nmcli >/dev/null; then nmcli connection reload; fi',
    'systemctl daemon-reload',
    ...units.map((u) => `systemctl enable --now ${shellQuote(u)}`),
    'echo "installed: plug the gadgets in; each appears as its ethusbN interface"',
    '',
  ].join('\n');
  const readme = [
    `# ${cluster}: host kit`,
    '',
    'For a host that is a laptop or PC instead of the Raspberry Pi host image. It names each USB',
    "gadget's link by the gadget's MAC, gives it its static address (NetworkManager keyfiles), turns",
    'on IP forwarding and NATs the worker subnets to the uplink at every boot.',
    '',
    '    tar -xf host-kit.tar && sudo sh host-kit/install.sh',
    '',
    '| interface | host MAC of the gadget | host address | worker |',
    '|---|---|---|---|',
    ...links.map((l) => `| ${l.name} | ${l.mac} | ${l.address} | ${l.peer} |`),
    '',
  ].join('\n');
  return [
    { path: 'README.md', content: readme, mode: 0o644 },
    { path: 'install.sh', content: install, mode: 0o755 },
    ...files,
  ];
}

export async function writeHostKit(out: string, files: KitFile[], epoch: number): Promise<void> {
  await withScope(async (scope) => {
    const partial = `${out}.partial`;
    scope.defer(`remove ${partial}`, () => rm(partial, { force: true }));
    await packHostKit(partial, files, epoch);
    await rename(partial, out);
  });
}

async function packHostKit(partial: string, files: KitFile[], epoch: number): Promise<void> {
  const pack = tar.pack();
  const writing = pipeline(pack, createWriteStream(partial));
  try {
    const dirs = new Set<string>(['host-kit']);
    for (const f of files) {
      const parts = `host-kit/${f.path}`.split('/').slice(0, -1);
      for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    }
    const entries = [
      ...[...dirs].map((d) => ({ name: `${d}/`, type: 'directory' as const, mode: 0o755 })),
      ...files.map((f) => ({ name: `host-kit/${f.path}`, type: 'file' as const, mode: f.mode, content: f.content })),
    ].sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const header = {
        name: e.name,
        type: e.type,
        mode: e.mode,
        mtime: new Date(epoch * 1000),
        uid: 0,
        gid: 0,
        uname: 'root',
        gname: 'root',
      };
      const content = 'content' in e ? e.content : '';
      await new Promise<void>((resolve, reject) =>
        pack.entry(header, content, (error) => (error ? reject(error) : resolve())),
      );
    }
    pack.finalize();
    await writing;
  } catch (error) {
    pack.destroy();
    await writing.catch(() => undefined);
    throw error;
  }
}
