/**
 * configTxt: set a marked block of lines in `config.txt` on the boot partition, under an explicit
 * section filter (docs/raspios.md #3: images already carry `[cm5]` and other sections, so nothing
 * is appended after whatever section happens to be last). Rebuilding replaces the block.
 *
 *   - configTxt:
 *       block: otg-gadget
 *       section: all
 *       lines: [dtoverlay=dwc2, "gpu_mem={{params.gpuMem}}"]
 *
 * Properties:
 * - block (required): the block's name, unique per overlay.
 * - section (required): the filter it goes under, without brackets (`all`, `pi0`, …).
 * - lines (required): templates.
 * - when: a boolean parameter that must be true (`!name`: false).
 */
import { Type } from '@sinclair/typebox';
import { operation, strict, When } from './common.js';

export const configTxt = operation({
  schema: Type.Object(
    { block: Type.String(), section: Type.String({ minLength: 1 }), lines: Type.Array(Type.String()), when: When },
    strict,
  ),
  plan: (o, { origin, t }) => [{ origin, op: 'configTxt', block: o.block, section: o.section, lines: o.lines.map(t) }],
});
