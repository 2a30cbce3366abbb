/**
 * enableUnit: enable a systemd unit at boot, as `systemctl enable` would: a symlink in
 * `/etc/systemd/system/<target>.wants/` (no chroot, no systemctl). It points at the overlay's own
 * unit when one of its file or template operations writes it, else at the packaged one in
 * /lib/systemd/system.
 *
 *   - enableUnit:
 *       unit: swarmcard-firstboot.service
 *
 * Properties:
 * - unit (required): a .service, .timer, .path or .socket name.
 * - target: the target that wants it (default `multi-user.target`).
 * - when: a boolean parameter that must be true (`!name`: false).
 */
import { Type } from '@sinclair/typebox';
import { operation, strict, When } from './common.js';

export const enableUnit = operation({
  schema: Type.Object(
    {
      unit: Type.String({ pattern: '^[\\w@.-]+\\.(service|timer|path|socket)$' }),
      target: Type.Optional(Type.String()),
      when: When,
    },
    strict,
  ),
  plan: (o, { origin, writes }) => {
    const ownUnit = writes.some((path) => path.endsWith(`/${o.unit}`));
    const target = o.target ?? 'multi-user.target';
    return [
      {
        origin,
        op: 'symlink',
        partition: 'root',
        path: `/etc/systemd/system/${target}.wants/${o.unit}`,
        target: ownUnit ? `/etc/systemd/system/${o.unit}` : `/lib/systemd/system/${o.unit}`,
      },
    ];
  },
});
