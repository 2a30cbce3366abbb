/**
 * cmdline: edit the kernel command line (`cmdline.txt` on the boot partition) as tokens on its
 * single line (docs/raspios.md #9): removals first, then list additions, then values, so
 * `modules-load=dwc2,g_ether g_ether.host_addr=… g_ether.dev_addr=…` comes out in that order.
 *
 *   - cmdline:
 *       addToList: { modules-load: [dwc2, g_ether] }
 *       set: { g_ether.host_addr: "{{node.gadget.hostMac}}" }
 *       remove: [quiet]
 *
 * Properties (all optional):
 * - set: key → value (a template); replaces the token `key=…` or adds it.
 * - addToList: key → items (templates); adds missing items to a comma-separated `key=a,b` token.
 * - remove: keys whose tokens are removed.
 * - when: a boolean parameter that must be true (`!name`: false).
 */
import { Type } from '@sinclair/typebox';
import { operation, strict, When } from './common.js';

export const cmdline = operation({
  schema: Type.Object(
    {
      set: Type.Optional(Type.Record(Type.String(), Type.String())),
      addToList: Type.Optional(Type.Record(Type.String(), Type.Array(Type.String()))),
      remove: Type.Optional(Type.Array(Type.String())),
      when: When,
    },
    strict,
  ),
  plan: (o, { origin, t }) => [
    {
      origin,
      op: 'cmdline',
      set: Object.fromEntries(Object.entries(o.set ?? {}).map(([k, v]) => [k, t(v)])),
      addToList: Object.fromEntries(Object.entries(o.addToList ?? {}).map(([k, v]) => [k, v.map(t)])),
      remove: o.remove ?? [],
    },
  ],
});
