import type pg from 'pg';
import type { HistoryEntry } from '../../pipelines/aggregate/aggregator.js';
import { deriveEvents, Thresholds } from '../../pipelines/events/derive.js';
import { listThresholds } from '../../pipelines/events/thresholds.js';
import type { Redis } from 'ioredis';
import { readRegionalStock } from '../../sinks/postgres/read.js';
import { readRegionSnapshot } from '../../sinks/redis/read.js';
import { diffTotals, type Totals } from './pipeline.js';

/**
 * Waits until `cellar.regional_stock` and the Redis snapshots of `regions` equal `expected()` (recomputed
 * on every poll from the suppliers' rows); returns the remaining differences (empty when they converged).
 * Stores that are not readable yet (not migrated, not started) count as not converged.
 */
export async function storesConverged(expected: () => Promise<Totals>, pool: pg.Pool, redis: Redis, regions: string[], timeoutMs = 90_000): Promise<string[]> {
  let diff = ['not checked'];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const want = await expected();
      const pgTotals: Totals = new Map(
        (await readRegionalStock(pool)).filter((r) => regions.includes(r.region)).map((r) => [`${r.region}|${r.sku}`, { bottles: r.bottles, contributors: r.contributors }]),
      );
      const redisTotals = new Map<string, number>();
      for (const region of regions) for (const [sku, b] of await readRegionSnapshot(redis, region)) redisTotals.set(`${region}|${sku}`, b);
      diff = diffTotals(want, pgTotals, redisTotals);
      if (diff.length === 0) return diff;
    } catch (err) {
      diff = [`not readable yet: ${(err as Error).message}`];
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return diff;
}

/** Adds one supplier row's bottles to `out` under `region|sku`. */
export function addRow(out: Totals, region: string, sku: string, bottles: number): void {
  const k = `${region}|${sku}`;
  const cur = out.get(k) ?? { bottles: 0, contributors: 0 };
  out.set(k, { bottles: cur.bottles + bottles, contributors: cur.contributors + 1 });
}

/**
 * What the stock history must say of every total in `regions` (a fresh database, history kept from the
 * start): versions 1..N each once, each row's total the previous one plus its delta, and the last row
 * equal to the total in `cellar.regional_stock`. Returns the keys that disagree, with why.
 */
export async function historyDisagreements(pool: pg.Pool, regions: string[]): Promise<string[]> {
  const { rows } = await pool.query<{ region: string; sku: string; total: string; version: string; n: string; maxv: string; sum: string; last: string | null; broken: string }>(
    `WITH h AS (
       SELECT region, sku, version, bottles, delta,
              bottles - delta - coalesce(lag(bottles) OVER (PARTITION BY region, sku ORDER BY version), 0) AS gap
         FROM cellar.stock_history WHERE region = ANY($1))
     SELECT r.region, r.sku, r.bottles AS total, r.version,
            count(h.version) AS n, coalesce(max(h.version), 0) AS maxv, coalesce(sum(h.delta), 0) AS sum,
            (array_agg(h.bottles ORDER BY h.version DESC))[1] AS last, count(*) FILTER (WHERE h.gap <> 0) AS broken
       FROM cellar.regional_stock r LEFT JOIN h ON h.region = r.region AND h.sku = r.sku
      WHERE r.region = ANY($1) GROUP BY r.region, r.sku, r.bottles, r.version`, [regions]);
  const out: string[] = [];
  for (const r of rows) {
    const why = [
      Number(r.n) !== Number(r.version) || Number(r.maxv) !== Number(r.version) ? `${r.n} history rows up to version ${r.maxv}, total at version ${r.version}` : '',
      Number(r.sum) !== Number(r.total) ? `deltas sum to ${r.sum}, total ${r.total}` : '',
      r.last !== null && Number(r.last) !== Number(r.total) ? `last history row ${r.last}, total ${r.total}` : '',
      Number(r.broken) ? `${r.broken} rows whose delta does not follow from the row before` : '',
    ].filter(Boolean);
    if (why.length) out.push(`${r.region}|${r.sku}: ${why.join('; ')}`);
  }
  return out;
}

/**
 * What the stock event log must say of every total in `regions` (a fresh database): exactly the events the
 * pure derivation gives for the kept history and the low-stock rules in `cellar.stock_thresholds` (rules
 * unchanged since the start), each once. Returns the differences, with why.
 */
export async function eventDisagreements(pool: pg.Pool, regions: string[]): Promise<string[]> {
  const { rows } = await pool.query<{ region: string; sku: string; version: string; bottles: string; delta: string; ms: number; contributor_id: string; supplier_id: string; warehouse_id: string; op: 'UPSERT' | 'DELETE' }>(
    `SELECT region, sku, version, bottles, delta, extract(epoch from source_ts) * 1000 AS ms, contributor_id, supplier_id, warehouse_id, op
       FROM cellar.stock_history WHERE region = ANY($1) ORDER BY region, sku, version`, [regions]);
  const history: HistoryEntry[] = rows.map((r) => ({ region: r.region, sku: r.sku, version: Number(r.version), bottles: Number(r.bottles), delta: Number(r.delta), sourceTsMs: Math.round(Number(r.ms)), contributorId: r.contributor_id, supplierId: r.supplier_id, warehouseId: r.warehouse_id, op: r.op }));
  const expected = new Map(deriveEvents(history, new Thresholds(await listThresholds(pool))).map((e) => [e.id, e]));
  const got = await pool.query<{ id: string; type: string; region: string; sku: string; version: string; before: string; after: string; threshold: string | null; ms: number }>(
    'SELECT id, type, region, sku, version, before, after, threshold, extract(epoch from source_ts) * 1000 AS ms FROM cellar.stock_events WHERE region = ANY($1)', [regions]);
  const out: string[] = [];
  for (const r of got.rows) {
    const e = expected.get(r.id);
    const line = `${r.type} ${r.region}|${r.sku} v${r.version} ${r.before}→${r.after}${r.threshold ? ` (threshold ${r.threshold})` : ''}`;
    if (!e) out.push(`unexpected event ${line}`);
    else if (e.type !== r.type || e.version !== Number(r.version) || e.before !== Number(r.before) || e.after !== Number(r.after) || e.threshold !== (r.threshold === null ? null : Number(r.threshold)) || Math.abs(e.sourceTsMs - Number(r.ms)) > 1) out.push(`event ${line} differs from the derived ${JSON.stringify(e)}`);
    expected.delete(r.id);
  }
  for (const e of expected.values()) out.push(`missing event ${e.type} ${e.region}|${e.sku} v${e.version} ${e.before}→${e.after}`);
  return out;
}
