/**
 * remove: delete a file, or a directory with `recursive`, from the image; nothing happens when it
 * is already absent.
 *
 *   - remove:
 *       path: /etc/motd
 *       when: removeMotd
 *
 * Properties:
 * - path (required): a template.
 * - recursive: a directory and everything under it (default false).
 * - partition: `root` (default) or `boot`.
 * - when: a boolean parameter that must be true (`!name`: false).
 */
import { Type } from '@sinclair/typebox';
import { operation, Partition, strict, When } from './common.js';

export const remove = operation({
  schema: Type.Object(
    {
      partition: Type.Optional(Partition),
      path: Type.String(),
      recursive: Type.Optional(Type.Boolean()),
      when: When,
    },
    strict,
  ),
  plan: (o, { origin, t }) => [
    { origin, op: 'remove', partition: o.partition ?? 'root', path: t(o.path), recursive: o.recursive ?? false },
  ],
});
