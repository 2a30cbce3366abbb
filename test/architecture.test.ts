/**
 * The import graph of builder/, read with the TypeScript parser: pure modules (planning, profile
 * rules) reach no file system or process runner, even through other modules, and no module
 * imports itself through others.
 */
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../builder', import.meta.url));

interface Edge {
  /** A builder/ module (path relative to builder/) or a package specifier (`node:fs`, `execa`). */
  to: string;
  /** Erased at compile time: `import type`, or only `type` names. */
  typeOnly: boolean;
}

/** Every module under builder/ and what it imports. */
async function importGraph(): Promise<Map<string, Edge[]>> {
  const files = (await readdir(root, { recursive: true })).filter((f) => f.endsWith('.ts')).sort();
  const graph = new Map<string, Edge[]>();
  for (const file of files) {
    const source = ts.createSourceFile(file, await readFile(join(root, file), 'utf8'), ts.ScriptTarget.ES2022);
    const edges: Edge[] = [];
    for (const statement of source.statements) {
      let specifier: ts.Expression | undefined;
      let typeOnly = false;
      if (ts.isImportDeclaration(statement)) {
        specifier = statement.moduleSpecifier;
        const clause = statement.importClause;
        const named = clause?.namedBindings;
        typeOnly =
          clause !== undefined &&
          (clause.isTypeOnly ||
            (clause.name === undefined &&
              named !== undefined &&
              ts.isNamedImports(named) &&
              named.elements.length > 0 &&
              named.elements.every((e) => e.isTypeOnly)));
      } else if (ts.isExportDeclaration(statement) && statement.moduleSpecifier) {
        specifier = statement.moduleSpecifier;
        const named = statement.exportClause;
        typeOnly =
          statement.isTypeOnly ||
          (named !== undefined &&
            ts.isNamedExports(named) &&
            named.elements.length > 0 &&
            named.elements.every((e) => e.isTypeOnly));
      }
      if (!specifier || !ts.isStringLiteral(specifier)) continue;
      const text = specifier.text;
      const to = text.startsWith('.')
        ? relative(root, resolve(dirname(join(root, file)), text)).replace(/\.js$/, '.ts')
        : text;
      edges.push({ to, typeOnly });
    }
    graph.set(file, edges);
  }
  return graph;
}

const pure = (file: string) =>
  file.startsWith('plan/') || /^profile\/rules[^/]*\.ts$/.test(file) || file === 'profile/swarm-rules.ts';
const forbidden = (to: string) =>
  ['node:fs', 'node:fs/promises', 'fs', 'fs/promises', 'execa'].includes(to) || to.startsWith('exec/');

test('planning and profile rules reach no file system or process runner, even through other modules', async (t) => {
  const graph = await importGraph();
  const pureModules = [...graph.keys()].filter(pure);
  t.true(pureModules.length >= 5, `found the pure modules: ${pureModules.join(', ')}`);
  const problems: string[] = [];
  for (const start of pureModules) {
    // Breadth first over runtime imports (type imports are erased), keeping the path for the message.
    const via = new Map<string, string[]>([[start, [start]]]);
    const queue = [start];
    while (queue.length > 0) {
      const module = queue.shift()!;
      for (const edge of graph.get(module) ?? []) {
        if (edge.typeOnly || via.has(edge.to)) continue;
        const path = [...via.get(module)!, edge.to];
        via.set(edge.to, path);
        if (forbidden(edge.to)) problems.push(path.join(' → '));
        else if (graph.has(edge.to)) queue.push(edge.to);
      }
    }
  }
  t.deepEqual(problems, [], 'pure modules that reach I/O (import chains)');
});

/** Tarjan's strongly connected components over builder/ modules; groups of two or more are cycles. */
function cycles(graph: Map<string, Edge[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const { to: w } of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      const selfLoop = (graph.get(v) ?? []).some((e) => e.to === v);
      if (group.length > 1 || selfLoop) groups.push(group.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return groups;
}

/** One concrete cycle inside a group, for the message: a → b → … → a. */
function oneCycle(graph: Map<string, Edge[]>, group: string[]): string {
  const members = new Set(group);
  const start = group[0]!;
  const path = [start];
  const seen = new Set([start]);
  const walk = (v: string): boolean => {
    for (const { to } of graph.get(v) ?? []) {
      if (to === start) return true;
      if (!members.has(to) || seen.has(to)) continue;
      seen.add(to);
      path.push(to);
      if (walk(to)) return true;
      path.pop();
    }
    return false;
  };
  walk(start);
  return [...path, start].join(' → ');
}

test('no import cycles among builder/ modules (type imports included)', async (t) => {
  const graph = await importGraph();
  const found = cycles(graph);
  t.deepEqual(
    found.map((g) => oneCycle(graph, g)),
    [],
    'import cycles (break them, e.g. move the shared types into a module both import)',
  );
});
