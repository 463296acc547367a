import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The house (docs/ARCHITECTURE.md, "The house"): every source file lives on one floor, and a file may
 * import files of its own floor or of lower floors, never of a higher one. A directory is placed by its
 * longest listed prefix. Tests, benches and bin/ are not on a floor: they may import anything, and no
 * source file may import them.
 */
const FLOORS: ReadonlyArray<{ floor: number; name: string; dirs: readonly string[] }> = [
  { floor: 0, name: 'ground', dirs: ['pipelines/core', 'schemas'] },
  { floor: 1, name: 'edges', dirs: ['connectors', 'sinks', 'infra'] },
  { floor: 2, name: 'stages', dirs: ['pipelines/state', 'pipelines/normalize', 'pipelines/aggregate', 'pipelines/catalog', 'pipelines/dlq', 'pipelines/kafka', 'pipelines/sink', 'pipelines/events', 'pipelines/webhooks'] },
  { floor: 3, name: 'runtimes', dirs: ['pipelines/runtime', 'pipelines/reconcile'] },
  { floor: 4, name: 'entry points', dirs: ['pipelines/api', 'pipelines/cli', 'pipelines/demo'] },
];

/**
 * Upward arrows known and accepted for now, each with why it cannot go yet. An entry that no longer
 * occurs fails the test: remove it when the arrow is gone.
 */
const ALLOWED: ReadonlyArray<{ arrow: string; why: string }> = [
];

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SOURCE_DIRS = ['pipelines', 'connectors', 'sinks', 'schemas', 'infra'];

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sourceFiles(rel));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** The floor of a repository-relative path, or undefined when no floor holds it. */
function floorOf(file: string): number | undefined {
  let best: { floor: number; len: number } | undefined;
  for (const f of FLOORS) {
    for (const d of f.dirs) {
      if (file.startsWith(`${d}/`) && (!best || d.length > best.len)) best = { floor: f.floor, len: d.length };
    }
  }
  return best?.floor;
}

/** Relative imports of a file (static, `export … from`, `import type`, dynamic `import()`), resolved to repository paths. */
function importsOf(file: string): Array<{ spec: string; target: string; line: number }> {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const { importedFiles } = ts.preProcessFile(text, true, true);
  return importedFiles
    .filter((r) => r.fileName.startsWith('.'))
    .map((r) => {
      const abs = resolve(ROOT, dirname(file), r.fileName);
      const candidates = [abs.replace(/\.js$/, '.ts'), abs, `${abs}.ts`, join(abs, 'index.ts')];
      const hit = candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? abs;
      return { spec: r.fileName, target: relative(ROOT, hit).split('\\').join('/'), line: text.slice(0, r.pos).split('\n').length };
    });
}

const files = SOURCE_DIRS.flatMap(sourceFiles).sort();

describe('the house: no file imports a higher floor', () => {
  it('puts every source file on a floor', () => {
    const homeless = files.filter((f) => floorOf(f) === undefined);
    if (homeless.length) expect.fail(`files on no floor (add their directory to FLOORS in test/unit/layers.test.ts and to docs/ARCHITECTURE.md):\n  ${homeless.join('\n  ')}`);
  });

  it('imports only files that are on a floor', () => {
    const bad = files.flatMap((f) => importsOf(f).filter((i) => !existsSync(join(ROOT, i.target)) || floorOf(i.target) === undefined).map((i) => `${f}:${i.line} imports ${i.spec} (${i.target}: not a source file on a floor)`));
    if (bad.length) expect.fail(`imports outside the house:\n  ${bad.join('\n  ')}`);
  });

  it('has no upward arrows besides the allowlist', () => {
    const arrows = new Map<string, { from: number; to: number }>();
    for (const f of files) {
      const from = floorOf(f);
      if (from === undefined) continue;
      for (const i of importsOf(f)) {
        const to = floorOf(i.target);
        if (to !== undefined && to > from) arrows.set(`${f} → ${i.target}`, { from, to });
      }
    }
    const allowed = new Set(ALLOWED.map((a) => a.arrow));
    const upward = [...arrows].filter(([a]) => !allowed.has(a)).map(([a, { from, to }]) => `${a} (floor ${from} → floor ${to})`);
    const stale = ALLOWED.filter((a) => !arrows.has(a.arrow)).map((a) => a.arrow);
    const problems = [
      ...(upward.length ? [`${upward.length} upward arrow(s); a file may import only its own floor or lower (floors: ${FLOORS.map((f) => `${f.floor} ${f.name}`).join(', ')}):`, ...upward.map((u) => `  ${u}`)] : []),
      ...(stale.length ? ['allowlisted arrows that no longer occur (remove them from ALLOWED):', ...stale.map((s) => `  ${s}`)] : []),
    ];
    if (problems.length) expect.fail(problems.join('\n'));
  });
});
