/**
 * What every overlay operation shares: the schema pieces (partition, `when`, mode, owner) and the
 * shape of an operation kind — its TypeBox schema, the overlay file it reads (if any), the path it
 * writes (if any) and its planning function (pure: templates rendered, no I/O).
 */
import { type Static, type TObject, Type } from '@sinclair/typebox';
import type { PlannedEdit } from '../../plan/edits.js';

export const strict = { additionalProperties: false };
export const Partition = Type.Union([Type.Literal('boot'), Type.Literal('root')]);
/** A boolean parameter that must be true (`!name`: false) for the operation to apply. */
export const When = Type.Optional(Type.String({ pattern: '^!?[A-Za-z][A-Za-z0-9]*$' }));
export const Mode = Type.Optional(Type.String({ pattern: '^0[0-7]{3,4}$' }));
export const Owner = {
  uid: Type.Optional(Type.Integer({ minimum: 0 })),
  gid: Type.Optional(Type.Integer({ minimum: 0 })),
};

export const modeOf = (mode?: string) => (mode === undefined ? undefined : Number.parseInt(mode, 8));

/** What planning one operation for one node sees. */
export interface PlanContext {
  /** The overlay id: every edit's origin. */
  origin: string;
  /** Render a template string with the node's context (cluster, node, params, links). */
  t(text: string): string;
  /** Contents of the overlay's files, read when it was loaded. */
  files: ReadonlyMap<string, Buffer>;
  /** The paths (unrendered) the overlay's own operations write, e.g. its unit files. */
  writes: readonly string[];
}

export interface OperationKind<S extends TObject> {
  schema: S;
  /** The overlay file the operation reads, loaded with the manifest so planning stays pure. */
  source?(data: Static<S>): string;
  /** The path it writes, as written in the manifest. */
  writes?(data: Static<S>): string;
  plan(data: Static<S>, ctx: PlanContext): PlannedEdit[];
}

/** Declare an operation kind (infers the data type from the schema). */
export const operation = <S extends TObject>(kind: OperationKind<S>): OperationKind<S> => kind;

/** `file` and `template`: write an overlay file into the image, its content verbatim or rendered. */
export function writeFileOperation(options: { render: boolean }) {
  return operation({
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
    plan: (o, { origin, t, files }) => {
      const text = files.get(o.source)!.toString('utf8');
      return [
        {
          origin,
          op: 'write',
          partition: o.partition ?? 'root',
          path: t(o.path),
          content: options.render ? t(text) : text,
          mode: modeOf(o.mode),
          uid: o.uid,
          gid: o.gid,
        },
      ];
    },
  });
}
