import type pg from 'pg';
import type { HistoryEntry } from '../aggregate/aggregator.js';
import type { CellarError } from '../core/errors.js';
import { copyField, copyIn, query } from '../core/pg.js';

/** Days ahead whose partitions exist before their rows come (today, tomorrow and the day after, UTC). */
const DAYS_AHEAD = 2;
const DAY_MS = 86_400_000;
const COLUMNS = 'region, sku, version, bottles, delta, source_ts, contributor_id, supplier_id, warehouse_id, op';

/** The savepoint {@link saveHistory} rolls back to; `savepointTaken`: the caller took it (sent with its BEGIN). */
export const HISTORY_SAVEPOINT = 'SAVEPOINT cellar_history';

/**
 * Writes effective changes of totals in the caller's transaction (the one that saves the contributions),
 * each once. They are appended with COPY (no plan, no conflict check per row). A replay of changes already
 * written (the same region, sku, version and source time) cannot come through one writer, whose versions
 * follow the saved contributions; should one come (two writers of one partition for a moment), the COPY
 * fails on the primary key, is rolled back to its savepoint and the rows are inserted skipping those kept.
 */
export async function saveHistory(tx: pg.PoolClient, entries: HistoryEntry[], opts: { savepointTaken?: boolean } = {}): Promise<void> {
  if (!entries.length) return;
  const lines = new Array<string>(entries.length + 1);
  let lastMs = NaN;
  let lastTs = '';
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    // The changes of one source transaction share its time: its text is made once.
    if (e.sourceTsMs !== lastMs) lastTs = new Date((lastMs = e.sourceTsMs)).toISOString();
    lines[i] = `${copyField(e.region)}\t${copyField(e.sku)}\t${e.version}\t${e.bottles}\t${e.delta}\t${lastTs}\t${copyField(e.contributorId)}\t${copyField(e.supplierId)}\t${copyField(e.warehouseId)}\t${e.op}`;
  }
  lines[entries.length] = '';
  // Joined once: appending line by line left a chain of string pieces for the whole group.
  const data = lines.join('\n');
  if (!opts.savepointTaken) await query(tx, 'writing stock history', HISTORY_SAVEPOINT);
  try {
    await copyIn(tx, 'writing stock history', `COPY cellar.stock_history (${COLUMNS}) FROM STDIN`, data);
  } catch (err) {
    if ((err as CellarError).details?.pgCode !== '23505') throw err;
    await query(tx, 'writing stock history', 'ROLLBACK TO SAVEPOINT cellar_history');
    await insertHistory(tx, entries);
  }
  await query(tx, 'writing stock history', 'RELEASE SAVEPOINT cellar_history');
}

/** Inserts changes skipping those already kept (the slow path of {@link saveHistory}). */
async function insertHistory(tx: pg.PoolClient, entries: HistoryEntry[]): Promise<void> {
  const col = <K extends keyof HistoryEntry>(k: K) => entries.map((e) => e[k]);
  await query(tx, 'writing stock history', `INSERT INTO cellar.stock_history (${COLUMNS})
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[])
    ON CONFLICT DO NOTHING`,
  [col('region'), col('sku'), col('version'), col('bottles'), col('delta'), entries.map((e) => new Date(e.sourceTsMs).toISOString()), col('contributorId'), col('supplierId'), col('warehouseId'), col('op')]);
}

const partitionName = (day: Date) => `stock_history_${day.toISOString().slice(0, 10).replace(/-/g, '')}`;

/**
 * Keeps the history's partitions: one per UTC day from today to {@link DAYS_AHEAD} days ahead (created
 * before their rows come, so none lands in the default partition), and drops the partitions of days older
 * than `retentionDays` whole (no row-by-row delete); old rows of the default partition are deleted.
 * Safe to run from several processes at once. Returns the partitions dropped.
 */
export async function maintainHistory(pool: pg.Pool, retentionDays: number, now = Date.now()): Promise<string[]> {
  const today = Math.floor(now / DAY_MS) * DAY_MS;
  for (let d = 0; d <= DAY_MS * DAYS_AHEAD; d += DAY_MS) {
    const from = new Date(today + d);
    const to = new Date(today + d + DAY_MS);
    // Another process may create it at the same moment (its duplicate is ignored); a day whose rows already
    // went to the default partition keeps them there (check_violation), where retention still deletes them.
    await query(pool, 'creating a stock history partition', `DO $$ BEGIN
        CREATE TABLE IF NOT EXISTS cellar.${partitionName(from)} PARTITION OF cellar.stock_history FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}');
      EXCEPTION WHEN duplicate_table OR unique_violation OR invalid_object_definition OR check_violation THEN NULL; END $$`);
  }
  const cutoff = new Date(today - retentionDays * DAY_MS);
  const { rows } = await query<{ name: string }>(pool, 'listing stock history partitions', `SELECT c.relname AS name FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace
     WHERE n.nspname = 'cellar' AND p.relname = 'stock_history' AND c.relname ~ '^stock_history_[0-9]{8}$'`);
  const dropped: string[] = [];
  for (const { name } of rows) {
    const day = Date.parse(`${name.slice(14, 18)}-${name.slice(18, 20)}-${name.slice(20, 22)}T00:00:00Z`);
    if (day + DAY_MS > cutoff.getTime()) continue;
    await query(pool, 'dropping an old stock history partition', `DROP TABLE IF EXISTS cellar.${name}`);
    dropped.push(name);
  }
  await query(pool, 'pruning the default stock history partition', 'DELETE FROM cellar.stock_history_default WHERE source_ts < $1', [cutoff]);
  return dropped;
}

/** One effective change of a total, as `GET /v1/stock/{region}/{sku}/history` answers it. */
export interface HistoryRow {
  version: number;
  bottles: number;
  delta: number;
  sourceTsMs: number;
  contributorId: string;
  supplierId: string;
  warehouseId: string;
  op: string;
}

/** The changes of one total with source times in [fromMs, toMs), in version order, after `afterVersion`, at most `limit`. */
export async function historyOf(q: pg.Pool, region: string, sku: string, o: { fromMs: number; toMs: number; afterVersion?: number; limit: number }): Promise<HistoryRow[]> {
  const { rows } = await query<{ version: string; bottles: string; delta: string; ms: number; contributor_id: string; supplier_id: string; warehouse_id: string; op: string }>(q, 'reading stock history',
    `SELECT version, bottles, delta, extract(epoch from source_ts) * 1000 AS ms, contributor_id, supplier_id, warehouse_id, op FROM cellar.stock_history
      WHERE region = $1 AND sku = $2 AND source_ts >= to_timestamp($3 / 1000.0) AND source_ts < to_timestamp($4 / 1000.0) AND version > $5
      ORDER BY version LIMIT $6`, [region, sku, o.fromMs, o.toMs, o.afterVersion ?? 0, o.limit]);
  return rows.map((r) => ({ version: Number(r.version), bottles: Number(r.bottles), delta: Number(r.delta), sourceTsMs: Math.round(Number(r.ms)), contributorId: r.contributor_id, supplierId: r.supplier_id, warehouseId: r.warehouse_id, op: r.op }));
}

/**
 * A region's totals as they stood at `asOfMs` (by source time): per SKU, the last change (highest version)
 * stamped at or before it; SKUs in C order, after `after`, starting with `prefix`, at most `limit`.
 *
 * Not a scan of the region's changes: a walk of the primary key (region, sku, version, source_ts; SKUs in C
 * order, 0025) downward from an upper bound, one SKU a step, where one probe per day partition (their first
 * rows in (sku, version) descending order, merged) gives both the next SKU down and its highest version
 * stamped at or before the time. The cost grows with the page's SKUs times the days kept, not with the
 * changes per day. The bound is the `limit`-th SKU of `cellar.regional_stock` after `after`: the walk finds
 * every SKU of the history from `after` to it, whether regional_stock has it or not, and goes on to a
 * bound further up when they are fewer than `limit`.
 */
export async function stockAsOf(q: pg.Pool, region: string, asOfMs: number, o: { prefix?: string; after?: string; limit: number }): Promise<Array<{ sku: string; bottles: number; version: number; sourceTsMs: number; bottleSizeMl: number | null }>> {
  if (o.limit < 1) return [];
  const what = 'reading stock as of a time';
  const after = o.after ?? '';
  const prefix = o.prefix ?? null;
  // The SKUs starting with the prefix are exactly those in [prefix, end) in code point order, where end is the
  // prefix without its trailing U+10FFFF and its last code point one higher (no end when nothing is left).
  const cps = prefix === null ? [] : [...prefix].map((c) => c.codePointAt(0)!);
  while (cps.at(-1) === 0x10ffff) cps.pop();
  if (cps.length) {
    const last = cps.pop()! + 1;
    cps.push(last === 0xd800 ? 0xe000 : last); // no surrogates in UTF-8
  }
  const end = cps.length ? String.fromCodePoint(...cps) : null;
  /** The `n`-th SKU of regional_stock after `lo` (C order) within the prefix, if it has that many. */
  const upper = async (lo: string, n: number) => (await query<{ sku: string }>(q, what,
    `SELECT sku FROM cellar.regional_stock WHERE region = $1 AND sku COLLATE "C" > $2 AND ($3::text IS NULL OR starts_with(sku, $3))
      ORDER BY sku COLLATE "C" OFFSET $4 LIMIT 1`, [region, lo, prefix, n - 1])).rows[0]?.sku ?? null;
  /** The page's rows among the history's SKUs in (lo, top] (top: the prefix's end, or none, when null), at most `need`. */
  const walk = async (lo: string, top: string | null, need: number) => {
    const values: unknown[] = [region, asOfMs, lo, prefix, need];
    const bounds = `AND h.sku > $3${prefix === null ? '' : ' AND h.sku >= $4'}`;
    const first = top !== null ? `AND h.sku <= $${values.push(top)}` : end !== null ? `AND h.sku < $${values.push(end)}` : '';
    const { rows } = await query<{ sku: string; bottles: string; version: string; ms: number; bottle_size_ml: number | null }>(q, what,
      `WITH RECURSIVE w(sku, version, ts) AS (
         (SELECT h.sku, h.version, h.source_ts FROM cellar.stock_history h
           WHERE h.region = $1 AND h.source_ts <= to_timestamp($2 / 1000.0) ${bounds} ${first}
           ORDER BY h.sku DESC, h.version DESC LIMIT 1)
         UNION ALL
         SELECT n.sku, n.version, n.source_ts FROM w CROSS JOIN LATERAL (
           SELECT h.sku, h.version, h.source_ts FROM cellar.stock_history h
            WHERE h.region = $1 AND h.source_ts <= to_timestamp($2 / 1000.0) AND h.sku < w.sku ${bounds}
            ORDER BY h.sku DESC, h.version DESC LIMIT 1) n)
       SELECT w.sku, h.bottles, w.version, extract(epoch from w.ts) * 1000 AS ms, r.bottle_size_ml
         FROM w JOIN cellar.stock_history h ON h.region = $1 AND h.sku = w.sku AND h.version = w.version AND h.source_ts = w.ts
         LEFT JOIN cellar.regional_stock r ON r.region = $1 AND r.sku = w.sku COLLATE "default"
        WHERE $4::text IS NULL OR starts_with(w.sku, $4)
        ORDER BY w.sku COLLATE "C" LIMIT $5`, values);
    return rows.map((r) => ({ sku: r.sku, bottles: Number(r.bottles), version: Number(r.version), sourceTsMs: Math.round(Number(r.ms)), bottleSizeMl: r.bottle_size_ml }));
  };

  const out: Awaited<ReturnType<typeof walk>> = [];
  let lo = after;
  // regional_stock normally has every SKU of the history, and one bound does; when it has more (SKUs without a
  // change kept at or before the time), the walk goes on from the bound to one twice as far.
  for (let window = o.limit; ; window *= 2) {
    const top = await upper(lo, window);
    out.push(...(await walk(lo, top, o.limit - out.length)));
    if (out.length >= o.limit || top === null) return out;
    lo = top;
  }
}

/** What makes up a total now: each live contributor's bottles, by supplier and warehouse. */
export async function contributorsOf(q: pg.Pool, region: string, sku: string): Promise<Array<{ contributorId: string; supplierId: string; warehouseId: string; bottles: number; bottleSizeMl: number | null; sourceVersion: string; sourceTsMs: number }>> {
  const { rows } = await query<{ contributor_id: string; supplier_id: string; warehouse_id: string; bottles: string; bottle_size_ml: number | null; source_version: string; ms: number }>(q, 'reading the contributors of a total',
    `SELECT contributor_id, supplier_id, warehouse_id, bottles, bottle_size_ml, source_version, extract(epoch from source_ts) * 1000 AS ms
       FROM cellar.stock_contributions WHERE region = $1 AND sku = $2 AND NOT deleted ORDER BY supplier_id, warehouse_id, contributor_id`, [region, sku]);
  return rows.map((r) => ({ contributorId: r.contributor_id, supplierId: r.supplier_id, warehouseId: r.warehouse_id, bottles: Number(r.bottles), bottleSizeMl: r.bottle_size_ml, sourceVersion: r.source_version, sourceTsMs: Math.round(Number(r.ms ?? 0)) }));
}
