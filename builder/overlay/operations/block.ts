/**
 * block: add or replace a marked block of lines in a text file (created when missing; an existing
 * file keeps its mode and owner). The markers are comments, so a rebuild replaces the block.
 *
 *   - block:
 *       path: /etc/hosts
 *       block: extra-hosts
 *       lines: ["{{params.nasAddress}}\tnas"]
 *
 * Properties:
 * - path (required): a template.
 * - block (required): the block's name.
 * - lines (required): templates; a rendered line holding newlines becomes several lines.
 * - comment: the file's comment prefix for the markers (default `#`).
 * - partition: `root` (default) or `boot`.
 * - mode: octal string, for a file the block creates.
 * - when: a boolean parameter that must be true (`!name`: false).
 */
import { Type } from '@sinclair/typebox';
import { Mode, modeOf, operation, Partition, strict, When } from './common.js';

export const block = operation({
  schema: Type.Object(
    {
      partition: Type.Optional(Partition),
      path: Type.String(),
      block: Type.String(),
      lines: Type.Array(Type.String()),
      comment: Type.Optional(Type.String()),
      mode: Mode,
      when: When,
    },
    strict,
  ),
  plan: (o, { origin, t }) => [
    {
      origin,
      op: 'block',
      partition: o.partition ?? 'root',
      path: t(o.path),
      block: o.block,
      lines: o.lines.map(t).flatMap((l) => l.split('\n')),
      comment: o.comment ?? '#',
      mode: modeOf(o.mode),
    },
  ],
});
