/**
 * An overlay is data under overlays/<id>/: `overlay.yaml` declares typed parameters and a list of
 * operations from a closed set; templates and files sit beside it.
 *
 *   id: otg-gadget
 *   description: USB OTG Ethernet gadget with fixed MACs
 *   params:
 *     removeMotd: { type: boolean, default: false, description: Remove /etc/motd }
 *   operations:
 *     - cmdline: { addToList: { modules-load: [dwc2, g_ether] } }
 *     - configTxt: { block: otg, section: all, lines: [dtoverlay=dwc2] }
 *     - remove: { path: /etc/motd, when: removeMotd }
 *
 * Operations come from a closed set, one file each under operations/ (its header documents it):
 * file, template, cmdline, configTxt, block, enableUnit, remove. Every string field is a template;
 * `when` names a boolean parameter (prefix `!` to negate). `files` lists further files of the
 * overlay that swarmcard reads itself (the swarm-node overlay's built-in stacks).
 */

import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse } from 'yaml';
import { UserError } from '../errors.js';
import { closest } from '../text/closest.js';
import { allowHint, escapes } from '../util/confine.js';
import { Operation, type OperationData, sourceOf } from './operations/index.js';

export type { OperationData } from './operations/index.js';

const strict = { additionalProperties: false };

const Param = Type.Object(
  {
    type: Type.Union([
      Type.Literal('string'),
      Type.Literal('integer'),
      Type.Literal('boolean'),
      Type.Literal('enum'),
      Type.Literal('ipv4'),
      Type.Literal('list'),
    ]),
    description: Type.String(),
    default: Type.Optional(Type.Unknown()),
    minimum: Type.Optional(Type.Integer()),
    maximum: Type.Optional(Type.Integer()),
    values: Type.Optional(Type.Array(Type.String())),
    pattern: Type.Optional(Type.String()),
  },
  strict,
);
export type ParamSpec = Static<typeof Param>;

const Manifest = Type.Object(
  {
    id: Type.String(),
    description: Type.String(),
    params: Type.Optional(Type.Record(Type.String(), Param)),
    operations: Type.Array(Operation),
    /** Files swarmcard itself reads from the overlay (the built-in stacks), loaded with the sources. */
    files: Type.Optional(Type.Array(Type.String())),
  },
  strict,
);

export interface Overlay {
  id: string;
  dir: string;
  description: string;
  params: Record<string, ParamSpec>;
  operations: OperationData[];
  /** Contents of every `source` the operations name, read at load so planning stays pure. */
  files: Map<string, Buffer>;
}

const loaded = new Map<string, Promise<Overlay>>();

export function loadOverlay(id: string, searchPath: string[]): Promise<Overlay> {
  const key = `${searchPath.join(':')}\0${id}`;
  let overlay = loaded.get(key);
  if (!overlay) {
    overlay = (async () => {
      for (const root of searchPath) {
        const dir = join(root, id);
        const text = await readFile(join(dir, 'overlay.yaml'), 'utf8').catch(() => undefined);
        if (text === undefined) continue;
        const data: unknown = parse(text);
        const errors = [...Value.Errors(Manifest, data)].map((e) => `${e.path || '/'} ${e.message}`);
        if (errors.length > 0)
          throw new UserError(
            `${join(dir, 'overlay.yaml')} is not a valid overlay manifest: ${errors.slice(0, 5).join('; ')}.`,
          );
        const manifest = data as Static<typeof Manifest>;
        if (manifest.id !== id)
          throw new UserError(
            `${join(dir, 'overlay.yaml')} declares id "${manifest.id}" but lives in overlays/${id}; make them match.`,
          );
        const files = new Map<string, Buffer>();
        const operations = manifest.operations as OperationData[];
        for (const source of [...operations.map(sourceOf), ...(manifest.files ?? [])]) {
          if (source === undefined || files.has(source)) continue;
          if (source.includes('..') || source.startsWith('/'))
            throw new UserError(`${join(dir, 'overlay.yaml')}: source "${source}" must be a path inside the overlay.`);
          // Confined to the folder holding overlays/ (the profile's, or swarmcard's own), not to overlays/
          // itself: that may be a link to anywhere.
          const home = dirname(root);
          const outside = await escapes(join(dir, source), home);
          if (outside)
            throw new UserError(
              `${join(dir, 'overlay.yaml')}: source "${source}" resolves to ${outside}, outside ${home}; ${allowHint}.`,
            );
          const content = await readFile(join(dir, source)).catch(() => undefined);
          if (!content)
            throw new UserError(
              `${join(dir, 'overlay.yaml')} names the source "${source}", which does not exist in ${dir}.`,
            );
          files.set(source, content);
        }
        return {
          id,
          dir,
          description: manifest.description,
          params: manifest.params ?? {},
          operations,
          files,
        };
      }
      // The overlays there are (folders, or links to them, that hold an overlay.yaml).
      const found = await Promise.all(
        searchPath.map(async (root) =>
          (await readdir(root).catch(() => [])).filter((n) => existsSync(join(root, n, 'overlay.yaml'))),
        ),
      );
      const ids = [...new Set(found.flat())].filter((other) => other !== id).sort();
      const guess = closest(id, ids);
      const folder = searchPath.map((root) => join(root, id)).find((dir) => existsSync(dir));
      throw new UserError(
        folder
          ? `${folder} has no overlay.yaml; add one (see overlays/ for examples) or choose another overlay`
          : `no overlay "${id}" in ${searchPath.join(' or ')}; ` +
              (guess ? `did you mean ${guess}?` : `use one of ${ids.join(', ') || 'the folders of overlays/'}`),
      );
    })();
    loaded.set(key, overlay);
  }
  return overlay;
}

/** Check one parameter value against its declaration; returns a problem sentence or undefined. */
export function checkParam(name: string, spec: ParamSpec, value: unknown): string | undefined {
  switch (spec.type) {
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `${name} must be true or false`;
    case 'integer':
      if (!Number.isInteger(value)) return `${name} must be a whole number`;
      if (spec.minimum !== undefined && (value as number) < spec.minimum)
        return `${name} must be at least ${spec.minimum}`;
      if (spec.maximum !== undefined && (value as number) > spec.maximum)
        return `${name} must be at most ${spec.maximum}`;
      return undefined;
    case 'enum':
      return spec.values?.includes(String(value)) ? undefined : `${name} must be one of ${spec.values?.join(', ')}`;
    case 'ipv4':
      return typeof value === 'string' &&
        /^(\d{1,3})(\.\d{1,3}){3}$/.test(value) &&
        value.split('.').every((p) => Number(p) <= 255)
        ? undefined
        : `${name} must be an IPv4 address such as 192.168.1.1`;
    case 'list':
      return Array.isArray(value) && value.every((v) => typeof v === 'string')
        ? undefined
        : `${name} must be a list of strings`;
    case 'string':
      if (typeof value !== 'string') return `${name} must be a string`;
      if (spec.pattern && !new RegExp(spec.pattern).test(value)) return `${name} must match ${spec.pattern}`;
      return undefined;
  }
}
