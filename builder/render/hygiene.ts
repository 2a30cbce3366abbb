/**
 * Clean clones (docs/raspios.md #6): what a node image must not share with its siblings (pure).
 * One list of rules, each with the problem `swarmcard inspect` reports for a base image and the
 * edits every node built from it gets:
 * - /etc/machine-id empty, or `uninitialized` on trixie (truncating it there skips the resize);
 * - no /var/lib/dbus/machine-id file, no SSH host keys (and something that recreates them),
 *   no Docker engine id, key or swarm state, an empty /var/lib/cloud.
 */
import type { ImageReport } from '../image/report.js';
import type { ImageEdit } from '../plan/edits.js';
import { type Target, targetOf } from './target.js';

export const SSH_KEYGEN_UNIT = 'swarmcard-ssh-keygen.service';

interface HygieneRule {
  /** What is wrong with the base image, if anything. */
  problem(report: ImageReport, target: Target): string | undefined;
  /** The edits that fix it on each clone: applied when there is a problem, or always. */
  fix(report: ImageReport, target: Target): ImageEdit[];
  always?: true;
}

const origin = 'hygiene';
const remove = (path: string, recursive = false): ImageEdit => ({
  origin,
  op: 'remove',
  partition: 'root',
  path,
  recursive,
});

const rules: HygieneRule[] = [
  {
    problem: (r, t) => {
      if (r.identity.machineId === 'set')
        return (
          '/etc/machine-id is set: every card cloned from this image would share one machine id ' +
          '(empty it, or "uninitialized" on trixie).'
        );
      if (r.identity.machineId === 'empty' && t.machineId !== '')
        return (
          '/etc/machine-id is empty on trixie: it must read "uninitialized", or first boot skips the ' +
          'filesystem resize.'
        );
      if (r.identity.machineId === 'missing')
        return (
          '/etc/machine-id is missing: systemd cannot mark first boot; create it empty (or "uninitialized" ' +
          'on trixie).'
        );
      return undefined;
    },
    // Written on every clone: the content is the release's, whatever the base held.
    always: true,
    fix: (_r, t) => [
      { origin, op: 'write', partition: 'root', path: '/etc/machine-id', content: t.machineId, mode: 0o444 },
    ],
  },
  {
    // A symlink to /etc/machine-id (Debian's dbus) is harmless; a file of its own is a shared id.
    problem: (r) =>
      r.identity.dbusMachineId === 'file'
        ? '/var/lib/dbus/machine-id is present: clones would share a D-Bus machine id; remove it.'
        : undefined,
    fix: () => [remove('/var/lib/dbus/machine-id')],
  },
  {
    problem: (r) =>
      r.ssh.hostKeys.length > 0
        ? `SSH host keys are present (${r.ssh.hostKeys.join(', ')}): every clone would share them; ` +
          'remove /etc/ssh/ssh_host_*.'
        : undefined,
    fix: (r) => r.ssh.hostKeys.map((key) => remove(`/etc/ssh/${key}`)),
  },
  {
    problem: (r) =>
      r.ssh.installed && !r.ssh.hostKeyRegeneration
        ? 'nothing in the image regenerates SSH host keys at first boot: sshd will fail once they are removed.'
        : undefined,
    // Nothing in this image would recreate the host keys: sshd would not start. Add a unit that does.
    fix: () => [
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
    ],
  },
  {
    problem: (r) =>
      r.identity.dockerEngineId
        ? '/var/lib/docker/engine-id is present: clones would share a Docker engine id; remove it.'
        : undefined,
    fix: () => [remove('/var/lib/docker/engine-id')],
  },
  {
    problem: (r) =>
      r.identity.dockerKeyJson
        ? '/etc/docker/key.json is present: clones would share a Docker identity key; remove it.'
        : undefined,
    fix: () => [remove('/etc/docker/key.json')],
  },
  {
    problem: (r) =>
      r.identity.dockerSwarmState
        ? "/var/lib/docker/swarm is present: clones would carry another node's swarm state; remove it."
        : undefined,
    fix: () => [remove('/var/lib/docker/swarm', true)],
  },
  {
    problem: (r) =>
      r.identity.cloudState.length > 0
        ? `/var/lib/cloud is not empty (${r.identity.cloudState.join(', ')}): cloud-init would think it ` +
          'already ran; empty it.'
        : undefined,
    fix: (r) => r.identity.cloudState.map((entry) => remove(`/var/lib/cloud/${entry}`, true)),
  },
];

/** The clone-hygiene problems of a base image, for `swarmcard inspect`. */
export function hygieneProblems(report: ImageReport): string[] {
  const target = targetOf(report);
  return rules.flatMap((rule) => rule.problem(report, target) ?? []);
}

/** What every node cloned from this base gets, whatever the profile says; applied before its edits. */
export function hygieneEdits(report: ImageReport, target: Target): ImageEdit[] {
  return rules.flatMap((rule) => (rule.always || rule.problem(report, target) ? rule.fix(report, target) : []));
}
