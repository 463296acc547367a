import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { addRow } from './stores.js';
import { runCellar } from './cli.js';
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

/**
 * The next file after `lines`, in which the lines of the first two rows are garbled (the first cut short,
 * the second with a stray quote after its key: both dead-lettered as `malformed_line`, on the file's last
 * two lines), the third row is dropped, and every other row gains a bottle. `next` is what the totals must
 * then be: the garbled rows as last applied (a garbled line does not delete its row), the dropped one gone.
 */
export function garbledFile(lines: FeedLine[]): { text: string; next: FeedLine[]; lines: [number, number] } {
  const [a, b, , ...rest] = lines;
  const changed = rest.map((l) => ({ ...l, bottles: l.bottles + 1 }));
  const text = csvOf(changed, [`${a!.sku},${a!.store}`, `${b!.sku},${b!.store},"${b!.bottles + 5}`]);
  return { text, next: [a!, b!, ...changed], lines: [changed.length + 2, changed.length + 3] };
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

/**
 * Reconciles a feed supplier with `cellar reconcile` as an operator would: a clean run compares exactly
 * the rows the feed last sent (`rows`); a contribution changed behind Cellar's back is then found, named
 * and repaired through the pipeline, after which `converged` holds and a new run is clean again.
 */
export async function expectFeedReconciled(pool: pg.Pool, env: Record<string, string>, logDir: string, supplierId: string, rows: number, converged: () => Promise<unknown[]>, consumed?: () => Promise<boolean>): Promise<void> {
  // Totals can equal the rows while repeats of them are still on their way (a revert re-sends every row):
  // reconciliation starts once the supplier's contributions stop changing and, where the pipeline runs on
  // Kafka (`consumed`), once every message published has been consumed (a worker may pause longer than
  // the contributions are watched).
  let last = '';
  for (let stable = 0, i = 0; stable < 3 && i < 120; i++) {
    const { rows: [d] } = await pool.query<{ d: string }>(`SELECT md5(coalesce(string_agg(contributor_id || source_version || deleted || bottles, ',' ORDER BY contributor_id), '')) AS d FROM cellar.stock_contributions WHERE supplier_id = $1`, [supplierId]);
    stable = d!.d === last && (!consumed || (await consumed())) ? stable + 1 : 0;
    last = d!.d;
    await new Promise((r) => setTimeout(r, 500));
  }
  const reconcile = (args: string[]) => runCellar(['reconcile', '--supplier', supplierId, '--settle', '500', ...args], env, logDir);
  const clean = await reconcile([]);
  if (clean.code !== 0 || !clean.out.includes(`${rows.toLocaleString('en-US')} source rows compared`)) {
    const kept = await pool.query(`SELECT source_id, split_part(row_key, '-', 1) AS prefix, row_hash = 'pending' AS pending, row_values IS NULL AS no_values, count(*)::int AS n
      FROM cellar.feed_rows WHERE source_id IN ($1, 'capture:' || $1) GROUP BY 1, 2, 3, 4 ORDER BY 1, 2`, [supplierId]);
    const cid = /contribution\s+(\S+)/.exec(clean.out)?.[1] ?? '';
    const held = await pool.query('SELECT region, sku, bottles, deleted, source_version FROM cellar.stock_contributions WHERE contributor_id = $1', [cid]);
    const route = await pool.query('SELECT * FROM cellar.contributor_routes WHERE contributor_id = $1', [cid]);
    const total = held.rows[0] ? await pool.query('SELECT * FROM cellar.regional_stock WHERE region = $1 AND sku = $2', [held.rows[0].region, held.rows[0].sku]) : { rows: [] };
    throw new Error(`clean reconciliation of ${supplierId} (exit ${clean.code}, ${rows} rows expected):\n${clean.out.slice(0, 3000)}\nremembered rows: ${JSON.stringify(kept.rows)}\n${cid}: contributions ${JSON.stringify(held.rows)} route ${JSON.stringify(route.rows)} total ${JSON.stringify(total.rows)}`);
  }
  const { rows: [victim] } = await pool.query<{ contributor_id: string }>('SELECT contributor_id FROM cellar.stock_contributions WHERE supplier_id = $1 AND NOT deleted ORDER BY contributor_id LIMIT 1', [supplierId]);
  const changed = await pool.query('UPDATE cellar.stock_contributions SET bottles = bottles + 4 WHERE contributor_id = $1 AND NOT deleted RETURNING region, sku, bottles', [victim!.contributor_id]);
  if (changed.rowCount !== 1) throw new Error(`${victim!.contributor_id}: ${changed.rowCount} live contributions changed, expected 1`);
  const found = await reconcile(['--repair']);
  if (found.code !== 0 || !found.out.includes(victim!.contributor_id) || !found.out.includes('drift found and repaired')) {
    throw new Error(`reconciliation of ${supplierId} did not find and repair ${victim!.contributor_id} (exit ${found.code}):\n${found.out}`);
  }
  const diff = await converged();
  if (diff.length) throw new Error(`after the repair the stores differ from the rows:\n${JSON.stringify(diff.slice(0, 10), null, 1)}`);
  const again = await reconcile([]);
  if (again.code !== 0) throw new Error(`reconciliation after the repair still finds drift (exit ${again.code}):\n${again.out}`);
}
