import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../infra/local/cellar-process.js';
import { loadRegistry, type Supplier } from '../../connectors/registry/index.js';
import { compileMapping } from '../../pipelines/normalize/mapping.js';
import { SizeCatalog } from '../../pipelines/catalog/catalog.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';

/** The compose stack's folder and file. */
export const COMPOSE_DIR = join(REPO_ROOT, 'infra', 'compose');
export const COMPOSE_FILE = join(COMPOSE_DIR, 'docker-compose.yml');

/** The Cellar workers of the stack, by compose service name. */
export const WORKERS = ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis', 'scheduler'] as const;

/**
 * Metrics the alert rules and the dashboard may use before a Cellar process exports them (name → meaning);
 * none today. Anything not listed here must exist in CellarMetrics.
 */
export const PENDING_METRICS: Record<string, string> = {};

/** Every series name CellarMetrics exports (histograms with their _bucket/_sum/_count series). */
export async function exportedMetricNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const m of await new CellarMetrics().registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`);
  }
  return names;
}

/** The `cellar_…` metric names a PromQL expression refers to. */
export function cellarMetricsIn(expr: string): string[] {
  return [...new Set(expr.match(/\bcellar_[a-z0-9_]+\b/g) ?? [])];
}

/** How to run Compose here: Debian's `docker-compose` (v1, validates with no engine) or `docker compose`. */
export function composeCli(): { cmd: string; args: string[] } | undefined {
  const v1 = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
  if (v1.status === 0) return { cmd: 'docker-compose', args: [] };
  const v2 = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
  if (v2.status === 0) return { cmd: 'docker', args: ['compose'] };
  return undefined;
}

/**
 * Runs `compose -f <file> config …` with relative paths resolved from the stack's folder (so a modified copy
 * elsewhere validates like the original); returns its exit status, stdout and stderr.
 */
export function composeConfig(file: string, extraArgs: string[] = [], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const cli = composeCli();
  if (!cli) throw new Error('neither docker-compose nor `docker compose` is installed (make provision installs Debian\'s docker-compose)');
  const args = [...cli.args, '--project-directory', COMPOSE_DIR, '-f', file, 'config', ...extraArgs];
  const r = spawnSync(cli.cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The stack's supplier registry, loaded by the real loader. */
export function composeSuppliers(): Supplier[] {
  return loadRegistry(join(COMPOSE_DIR, 'suppliers'));
}

/** A supplier table's row as the mapping reads it. */
export type Row = Record<string, unknown>;

/**
 * Regional totals (`region|sku` → bottles) the pipeline must show for these supplier rows, computed with
 * the suppliers' own mappings. Throws if a row cannot be placed (unknown SKU or warehouse).
 */
export function expectedTotals(rowsBySupplier: Map<string, Row[]>, suppliers: Supplier[] = composeSuppliers(), catalog = new SizeCatalog()): Map<string, number> {
  const totals = new Map<string, number>();
  // One catalog for every supplier, as in the pipeline: a canonical SKU has one bottle size.
  for (const s of suppliers) {
    const mapping = compileMapping(s, { catalog });
    for (const row of rowsBySupplier.get(s.id) ?? []) {
      const p = mapping.place(row);
      const key = `${p.region}|${p.sku}`;
      totals.set(key, (totals.get(key) ?? 0) + p.bottles);
    }
  }
  return totals;
}

/** Parses a YAML file of the stack. */
export function readYaml<T = unknown>(...path: string[]): T {
  return parse(readFileSync(join(COMPOSE_DIR, ...path), 'utf8')) as T;
}
