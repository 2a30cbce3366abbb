/**
 * Parse: the profile's YAML, keeping every node's line, checked against the schema. The top level
 * is checked without its nodes, and each node against its own kind (explicit node or pattern
 * group), so a message names what that node lacks rather than "matches no union member".
 */
import { type TSchema, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { type Document, isNode, LineCounter, parseDocument } from 'yaml';
import { closest } from '../text/closest.js';
import { uniqueBy } from '../util/unique.js';
import { formatPath, ProfileError, profileError } from './problems.js';
import { ExplicitNode, PatternGroup, Profile } from './schema.js';
import type { FieldPath, Problem, ProfileData } from './types.js';

export interface ParsedProfile {
  profile: ProfileData;
  /** The YAML line of a field, or of its nearest ancestor that has one. */
  lineOf: (path: FieldPath) => number | undefined;
}

/** The profile in `text`; a ProfileError with every syntax or schema problem when it is not one. */
export function parseProfile(file: string, text: string): ParsedProfile {
  const counter = new LineCounter();
  if (text.trim() === '')
    throw new ProfileError(file, [{ path: [], message: 'the file is empty; write a profile (see profiles/*.yaml)' }]);
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: true, uniqueKeys: true });
  const [first] = doc.errors;
  if (first) {
    // Only the first syntax error: the ones after it are usually its echoes.
    const line = first.linePos?.[0].line;
    const message =
      first.code === 'MULTIPLE_DOCS'
        ? 'holds more than one YAML document (a second "---"); keep one profile per file'
        : `YAML syntax: ${first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`;
    throw new ProfileError(file, [{ line, path: [], message }]);
  }
  let data: unknown;
  try {
    // maxAliasCount bounds what aliases may expand to (a "billion laughs" file).
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (error) {
    if (!(error instanceof ReferenceError)) throw error;
    throw new ProfileError(file, [
      { path: [], message: 'its YAML aliases (*name) expand to too much data; write the values out instead' },
    ]);
  }
  const lineOf = (path: FieldPath) => lineIn(doc, counter, path);
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    const what = data === null || data === undefined ? 'nothing' : Array.isArray(data) ? 'a list' : `a ${typeof data}`;
    throw new ProfileError(file, [
      {
        line: 1,
        path: [],
        message: `holds ${what}, not a profile; a profile is a YAML mapping with cluster, sourceDateEpoch and nodes`,
      },
    ]);
  }
  const problems = profileProblems(data);
  if (problems.length > 0) throw profileError(file, problems, lineOf);
  return { profile: data as ProfileData, lineOf };
}

function lineIn(doc: Document, counter: LineCounter, path: FieldPath): number | undefined {
  for (let p = path; ; p = p.slice(0, -1)) {
    const node = p.length === 0 ? doc.contents : doc.getIn(p, true);
    if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
    if (p.length === 0) return undefined;
  }
}

function profileProblems(data: unknown): Problem[] {
  const { nodes, ...topLevel } = (data && typeof data === 'object' ? data : {}) as Record<string, unknown>;
  const problems = schemaProblems(Type.Omit(Profile, ['nodes']), topLevel, []);
  if (!Array.isArray(nodes) || nodes.length === 0)
    problems.push({ path: ['nodes'], message: 'must list at least one node or pattern group' });
  else
    for (const [i, n] of nodes.entries()) {
      const kind = n && typeof n === 'object' && 'pattern' in n ? PatternGroup : ExplicitNode;
      problems.push(...schemaProblems(kind, n, ['nodes', i]));
    }
  return problems;
}

const toPath = (pointer: string): FieldPath =>
  pointer
    .split('/')
    .slice(1)
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replaceAll('~1', '/').replaceAll('~0', '~')));

function schemaProblems(schema: TSchema, value: unknown, at: FieldPath): Problem[] {
  const problems: Problem[] = [];
  for (const error of Value.Errors(schema, value)) {
    const path = [...at, ...toPath(error.path)];
    if (error.message === 'Expected required property')
      problems.push({ path, message: `is missing; add ${String(path.at(-1))}` });
    else if (error.message === 'Unexpected property') {
      // The error names the object's schema: its fields are the ones the typo could have meant.
      const known = Object.keys((error.schema as { properties?: object }).properties ?? {});
      const guess = closest(String(path.at(-1)), known);
      const fix = guess ? `did you mean ${guess}?` : 'remove it or fix its spelling';
      problems.push({ path, message: `is not a known field; ${fix} (see profiles/schema.json)` });
    } else if (/^Expected union value/.test(error.message)) {
      const allowed = (error.schema as { anyOf?: { const?: unknown }[] }).anyOf
        ?.map((s) => s.const)
        .filter((c) => c !== undefined);
      const guess = typeof error.value === 'string' ? closest(error.value, (allowed ?? []).map(String)) : undefined;
      problems.push({
        path,
        message: allowed?.length
          ? `must be one of ${allowed.join(', ')}, not ${JSON.stringify(error.value)}` +
            (guess ? `; did you mean ${guess}?` : '')
          : error.message,
      });
    } else {
      // A field may carry a `hint` in the schema that says the rule in words.
      const { hint, secret } = error.schema as { hint?: string; secret?: boolean };
      // A secret field's value is never echoed (it may be a plain password put in the wrong place).
      const got = secret ? '' : `, got ${JSON.stringify(error.value)}`;
      problems.push({ path, message: `${hint ?? error.message.replace(/^Expected/, 'expected')}${got}` });
    }
  }
  // Nested union mismatches repeat the same field; keep the first word on each field.
  return uniqueBy(problems, (p) => formatPath(p.path));
}
