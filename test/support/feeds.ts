import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { addRow } from './stores.js';
import type { Totals } from './pipeline.js';

/** One row of a test feed file: a SKU in a store, with its bottles. */
export interface FeedLine {
  sku: string;
  store: string;
  bottles: number;
}

/** Stores of the test feeds and their regions (two stores per region). */
export function feedRegions(r1: string, r2: string): Record<string, string> {
  return { s1: r1, s2: r1, s3: r2, s4: r2 };
}

/** A supplier file of a CSV feed reading `dir` every 200 ms, keyed by sku + store. */
export function feedSupplierYaml(id: string, dir: string, topicPrefix: string, regions: Record<string, string>, extra = ''): string {
  return `id: ${id}
name: ${id}
source:
  kind: csv
  topicPrefix: ${topicPrefix}
  tables: [{ name: feed.stock, key: [sku, store] }]
  feed:
    path: ${dir}
    checkEveryMs: 200
${extra}mapping:
  sku: sku
  warehouse: store
  quantity: bottles
  unit: bottles
  regions: { ${Object.entries(regions).map(([k, v]) => `${k}: ${v}`).join(', ')} }
`;
}

/** Random rows: `n` distinct (sku, store) pairs over `skus` SKUs and the four stores. */
export function randomLines(n: number, skus: number, prefix = 'fsku'): FeedLine[] {
  if (n > skus * 4) throw new Error(`randomLines: ${n} distinct rows need more than ${skus} SKUs × 4 stores`);
  const out = new Map<string, FeedLine>();
  while (out.size < n) {
    const sku = `${prefix}-${Math.floor(Math.random() * skus)}`;
    const store = `s${1 + Math.floor(Math.random() * 4)}`;
    out.set(`${sku}|${store}`, { sku, store, bottles: Math.floor(Math.random() * 50) });
  }
  return [...out.values()];
}

/** The CSV text of `lines` (header `sku,store,bottles`), with `extra` raw lines appended. */
export function csvOf(lines: FeedLine[], extra: string[] = []): string {
  return ['sku,store,bottles', ...lines.map((l) => `${l.sku},${l.store},${l.bottles}`), ...extra].join('\n') + '\n';
}

/** Drops a file into the feed folder as a supplier would: written aside, then renamed in (never read half-written). */
export function dropFile(dir: string, name: string, text: string): void {
  const tmp = join(dir, `.${name}.partial`);
  writeFileSync(tmp, text);
  renameSync(tmp, join(dir, name));
}

/** The totals `lines` make in `regions`. */
export function feedTruth(lines: FeedLine[], regions: Record<string, string>): Totals {
  const out: Totals = new Map();
  for (const l of lines) addRow(out, regions[l.store]!, l.sku, l.bottles);
  return out;
}

/** Dead letters of the `source` stage for `supplier`: reason and position (`file:line`), in id order. */
export async function feedLetters(pool: pg.Pool, supplier: string): Promise<Array<{ reason: string; position: string }>> {
  const { rows } = await pool.query<{ reason: string; source_position: string }>(
    `SELECT reason, source_position FROM cellar.dead_letters WHERE stage = 'source' AND supplier_id = $1 ORDER BY id`, [supplier]);
  return rows.map((r) => ({ reason: r.reason, position: r.source_position }));
}

/** The supplier's reader status detail (what its last file did), from `cellar.source_status`. */
export async function feedDetail(pool: pg.Pool, supplier: string): Promise<string | null> {
  const { rows } = await pool.query<{ detail: string | null }>('SELECT detail FROM cellar.source_status WHERE supplier_id = $1', [supplier]).catch(() => ({ rows: [] as Array<{ detail: string | null }> }));
  return rows[0]?.detail ?? null;
}
