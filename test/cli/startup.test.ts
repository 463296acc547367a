import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/cellar-process.js';
import * as names from '../../pipelines/core/names.js';
import { WORKER_ROLES } from '../../pipelines/runtime/kafka-runtime.js';
import { DEFAULT_RATE_LIMIT_PER_S, ROLES } from '../../pipelines/api/keys-store.js';
import { DEAD_LETTER_STATUSES } from '../../pipelines/state/dead-letters.js';

/**
 * `cellar --help` and `cellar --version` answer at once because pipelines/cli/main.ts declares every
 * command without loading what implements it: what main.ts imports statically, and what those files
 * import statically in turn, loads nothing from node_modules but commander. Actions load the rest with
 * `await import()` (bench/cli.bench.ts measures the start).
 */

/** Static, value-level imports of a file: `import type` and `import()` are not loaded at start. */
function staticImports(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: string[] = [];
  for (const st of source.statements) {
    if (ts.isImportDeclaration(st)) {
      const clause = st.importClause;
      const typeOnly = clause?.isTypeOnly || (clause && !clause.name && clause.namedBindings && ts.isNamedImports(clause.namedBindings) && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly));
      if (!typeOnly) out.push((st.moduleSpecifier as ts.StringLiteral).text);
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier && !st.isTypeOnly) {
      out.push((st.moduleSpecifier as ts.StringLiteral).text);
    }
  }
  return out;
}

/** Every file main.ts loads at start, and every package they load. */
function startupGraph(entry: string): { files: string[]; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
        if (!existsSync(target)) throw new Error(`${relative(REPO_ROOT, file)} imports ${spec}: no such file`);
        visit(target);
      } else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) {
        packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
      }
    }
  };
  visit(entry);
  return { files: [...files].map((f) => relative(REPO_ROOT, f)).sort(), packages };
}

describe('cellar starts without loading its implementations', () => {
  it('main.ts and what it imports statically load no package but commander', () => {
    const { files, packages } = startupGraph(join(REPO_ROOT, 'pipelines/cli/main.ts'));
    expect([...packages], `loaded at start by: ${files.join(', ')}`).toEqual(['commander']);
    // Nothing of a runtime, a store client or the specs (zod) at start: those come with the action.
    expect(files.filter((f) => !f.startsWith('pipelines/cli/') && !['pipelines/core/errors.ts', 'pipelines/core/secrets.ts', 'pipelines/core/paths.ts', 'pipelines/core/names.ts'].includes(f))).toEqual([]);
    expect(files).not.toContain('pipelines/cli/env-help.ts');
  });

  it('the names the CLI declares commands with equal the implementations\' own', () => {
    // One definition, not a copy kept equal: the implementations re-export the CLI's names.
    expect(WORKER_ROLES).toBe(names.WORKER_ROLES);
    expect(ROLES).toBe(names.KEY_ROLES);
    expect(DEFAULT_RATE_LIMIT_PER_S).toBe(names.DEFAULT_KEY_RATE_LIMIT_PER_S);
    expect(DEAD_LETTER_STATUSES).toBe(names.DEAD_LETTER_STATUSES);
  });
});
