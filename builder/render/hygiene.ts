/**
 * Clean clones (docs/raspios.md #6): what a node image must not share with its siblings, rendered
 * for the release found in the base (pure). Applied to every node of every profile.
 * - /etc/machine-id empty, or `uninitialized` on trixie (truncating it there skips the resize);
 * - no /var/lib/dbus/machine-id file, no SSH host keys (and something that recreates them),
 *   no Docker engine id, key or swarm state, an empty /var/lib/cloud.
 */
import type { ImageReport } from '../image/inspect.js';
import type { Edit } from '../plan/edits.js';

export const SSH_KEYGEN_UNIT = 'swarmcard-ssh-keygen.service';

export function hygieneEdits(report: ImageReport): Edit[] {
  const origin = 'hygiene';
  const trixie = report.release.codename === 'trixie' || report.network.cloudInit.installed;
  const edits: Edit[] = [];
  edits.push({
    origin,
    op: 'write',
    partition: 'root',
    path: '/etc/machine-id',
    content: trixie ? 'uninitialized\n' : '',
    mode: 0o444,
  });
  // A symlink to /etc/machine-id (Debian's dbus) is harmless; a file of its own is a shared id.
  if (report.identity.dbusMachineId === 'file')
    edits.push({ origin, op: 'remove', partition: 'root', path: '/var/lib/dbus/machine-id', recursive: false });
  for (const key of report.ssh.hostKeys)
    edits.push({ origin, op: 'remove', partition: 'root', path: `/etc/ssh/${key}`, recursive: false });
  if (report.ssh.installed && !report.ssh.hostKeyRegeneration) {
    // Nothing in this image would recreate the host keys: sshd would not start. Add a unit that does.
    edits.push(
      {
        origin,
        op: 'write',
        partition: 'root',
        path: `/etc/systemd/system/${SSH_KEYGEN_UNIT}`,
        content: [
          '[Unit]',
          'Description=swarmcard: create missing SSH host keys (each clone gets its own)',
          'Before=ssh.service',
          'ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key',
          '',
          '[Service]',
          'Type=oneshot',
          'ExecStart=/usr/bin/ssh-keygen -A',
          '',
          '[Install]',
          'WantedBy=multi-user.target',
          '',
        ].join('\n'),
        mode: 0o644,
      },
      {
        origin,
        op: 'symlink',
        partition: 'root',
        path: `/etc/systemd/system/multi-user.target.wants/${SSH_KEYGEN_UNIT}`,
        target: `/etc/systemd/system/${SSH_KEYGEN_UNIT}`,
      },
    );
  }
  if (report.identity.dockerEngineId)
    edits.push({ origin, op: 'remove', partition: 'root', path: '/var/lib/docker/engine-id', recursive: false });
  if (report.identity.dockerKeyJson)
    edits.push({ origin, op: 'remove', partition: 'root', path: '/etc/docker/key.json', recursive: false });
  if (report.identity.dockerSwarmState)
    edits.push({ origin, op: 'remove', partition: 'root', path: '/var/lib/docker/swarm', recursive: true });
  for (const entry of report.identity.cloudState)
    edits.push({ origin, op: 'remove', partition: 'root', path: `/var/lib/cloud/${entry}`, recursive: true });
  return edits;
}
