/**
 * The closed set of overlay operations, one file each (its header is its user documentation):
 * file, template, cmdline, configTxt, block, enableUnit, remove. The manifest schema and the
 * planner both come from this table; adding an operation means adding a file and a row.
 */
import { type Static, Type } from '@sinclair/typebox';
import type { PlannedEdit } from '../../plan/edits.js';
import { render } from '../template.js';
import { block } from './block.js';
import { cmdline } from './cmdline.js';
import { type OperationKind, type PlanContext, strict } from './common.js';
import { configTxt } from './config-txt.js';
import { enableUnit } from './enable-unit.js';
import { file } from './file.js';
import { remove } from './remove.js';
import { template } from './template.js';

export const operations = { file, template, cmdline, configTxt, block, enableUnit, remove };

type Operations = typeof operations;
type Name = keyof Operations;
/** One operation as written in overlay.yaml: `{ <name>: { …properties } }`. */
export type OperationData = { [K in Name]: { [P in K]: Static<Operations[K]['schema']> } }[Name];

const names = Object.keys(operations) as Name[];
export const Operation = Type.Union(names.map((name) => Type.Object({ [name]: operations[name].schema }, strict)));

type AnyData = Static<Operations[Name]['schema']>;
/** An operation's name, its properties and its kind (the data's shape is the kind's own). */
function parts(op: OperationData): { data: AnyData; kind: OperationKind<Operations[Name]['schema']> } {
  const [name, data] = Object.entries(op)[0] as [Name, AnyData];
  return { data, kind: operations[name] as OperationKind<Operations[Name]['schema']> };
}

/** The overlay file an operation reads, if any (read at load so planning stays pure). */
export function sourceOf(op: OperationData): string | undefined {
  const { data, kind } = parts(op);
  return kind.source?.(data);
}

/** Turn one overlay operation into edits for a node (templates rendered, `when` applied). */
export function planOperation(
  overlay: { id: string; operations: OperationData[]; files: ReadonlyMap<string, Buffer> },
  op: OperationData,
  context: { params: Record<string, unknown> } & object,
): PlannedEdit[] {
  const { data, kind } = parts(op);
  if (data.when) {
    const negate = data.when.startsWith('!');
    if (Boolean(context.params[data.when.replace(/^!/, '')]) === negate) return [];
  }
  const ctx: PlanContext = {
    origin: overlay.id,
    t: (text) => render(text, context),
    files: overlay.files,
    writes: overlay.operations.flatMap((other) => {
      const o = parts(other);
      return o.kind.writes?.(o.data) ?? [];
    }),
  };
  return kind.plan(data, ctx);
}
