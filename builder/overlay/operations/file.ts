/**
 * file: copy a file of the overlay into the image, byte for byte.
 *
 *   - file:
 *       path: /usr/local/lib/swarmcard/firstboot
 *       source: firstboot.sh
 *       mode: "0755"
 *
 * Properties:
 * - path (required): where in the partition; a template.
 * - source (required): the file, relative to the overlay's directory.
 * - partition: `root` (default) or `boot`.
 * - mode: octal string such as "0644"; uid, gid: numeric owner (root when absent).
 * - when: a boolean parameter that must be true (`!name`: false).
 */
import { Type } from '@sinclair/typebox';
import { Mode, modeOf, Owner, operation, Partition, strict, When } from './common.js';

export const file = operation({
  schema: Type.Object(
    {
      partition: Type.Optional(Partition),
      path: Type.String(),
      source: Type.String(),
      mode: Mode,
      ...Owner,
      when: When,
    },
    strict,
  ),
  source: (o) => o.source,
  writes: (o) => o.path,
  plan: (o, { origin, t, files }) => [
    {
      origin,
      op: 'write',
      partition: o.partition ?? 'root',
      path: t(o.path),
      content: files.get(o.source)!.toString('utf8'),
      mode: modeOf(o.mode),
      uid: o.uid,
      gid: o.gid,
    },
  ],
});
