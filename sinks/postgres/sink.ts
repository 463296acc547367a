import type pg from 'pg';
import type { RegionalStock } from '../../schemas/records.js';
import { latestPerKey, type SinkResult, type StockSink, type StoredStock } from '../types.js';
import { parsePostgresSinkConfig, type PostgresSinkConfig } from './config.js';
import { createPgPool, pgArray, query, type Statement } from '../../pipelines/core/pg.js';

const UPSERT = `
INSERT INTO cellar.regional_stock AS t (region, sku, bottle_size_ml, bottles, contributors, version, source_ts, updated_at)
SELECT u.region, u.sku, u.bottle_size_ml, u.bottles, u.contributors, u.version, ts.source_ts, ts.updated_at
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::bigint[],
              $6::double precision[], $7::double precision[], $8::integer[])
       AS u(region, sku, bottles, contributors, version, source_ms, updated_ms, bottle_size_ml)
  CROSS JOIN LATERAL (SELECT to_timestamp(u.source_ms / 1000.0), to_timestamp(u.updated_ms / 1000.0)) ts(source_ts, updated_at)
 -- A stable row order keeps concurrent sink instances from deadlocking on the same keys.
 ORDER BY u.region, u.sku
ON CONFLICT (region, sku) DO UPDATE
  SET bottle_size_ml = excluded.bottle_size_ml, bottles = excluded.bottles, contributors = excluded.contributors,
      version = excluded.version, source_ts = excluded.source_ts, updated_at = excluded.updated_at
  WHERE t.version < excluded.version`;

/**
 * The version-guarded upsert of totals into `cellar.regional_stock`, on a pool or inside a caller's
 * transaction (the embedded runtime writes totals, contributions and checkpoints in one transaction).
 */
export async function upsertRegionalStock(q: pg.Pool | pg.PoolClient, records: RegionalStock[]): Promise<SinkResult> {
  const st = regionalStockUpsert(records);
  if (!st) return { applied: 0, skipped: 0 };
  const res = await query(q, 'writing regional_stock', st.text, st.values);
  const applied = res.rowCount ?? 0;
  return { applied, skipped: records.length - applied };
}

/** The statement of {@link upsertRegionalStock} (the newest record per key), to run with others; undefined when there is nothing to write. */
export function regionalStockUpsert(records: RegionalStock[]): Statement | undefined {
  if (records.length === 0) return undefined;
  const rows = latestPerKey(records);
  return {
    text: UPSERT,
    values: [
      pgArray(rows.map((r) => r.region)),
      pgArray(rows.map((r) => r.sku)),
      pgArray(rows.map((r) => r.bottles)),
      pgArray(rows.map((r) => r.contributors)),
      pgArray(rows.map((r) => r.version)),
      pgArray(rows.map((r) => r.sourceTsMs)),
      pgArray(rows.map((r) => r.updatedTsMs)),
      pgArray(rows.map((r) => r.bottleSizeMl)),
    ],
  };
}

/**
 * Materializes regional totals in `cellar.regional_stock`: one statement per batch (arrays through
 * unnest), and a row changes only when the incoming version is higher than the stored one.
 */
export class PostgresStockSink implements StockSink {
  private pool: pg.Pool | undefined;
  private readonly cfg: PostgresSinkConfig;
  private healthy = true;

  constructor(config: unknown) {
    this.cfg = parsePostgresSinkConfig(config);
  }

  async connect(): Promise<void> {
    this.pool ??= createPgPool(this.cfg.url, { max: this.cfg.poolMax, applicationName: 'cellar-sink-postgres' });
    await query(this.pool, 'connecting Postgres sink', 'SELECT 1 FROM cellar.regional_stock LIMIT 0');
  }

  async writeBatch(records: RegionalStock[]): Promise<SinkResult> {
    if (!this.pool) throw new Error('PostgresStockSink: connect() first');
    try {
      const res = await upsertRegionalStock(this.pool, records);
      this.healthy = true;
      return res;
    } catch (err) {
      this.healthy = !(err as { retriable?: boolean }).retriable;
      throw err;
    }
  }

  isHealthy(): boolean {
    return this.healthy;
  }

  async read(region: string, sku: string): Promise<StoredStock | undefined> {
    if (!this.pool) throw new Error('PostgresStockSink: connect() first');
    const { rows } = await query<{ bottles: string; version: string; bottle_size_ml: number | null }>(
      this.pool,
      'reading regional_stock',
      'SELECT bottles, version, bottle_size_ml FROM cellar.regional_stock WHERE region = $1 AND sku = $2',
      [region, sku],
    );
    const r = rows[0];
    return r ? { bottles: Number(r.bottles), version: Number(r.version), bottleSizeMl: r.bottle_size_ml } : undefined;
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end().catch(() => undefined);
  }
}

/** Creates the Postgres sink. */
export function createPostgresStockSink(config: { url: string; poolMax?: number }): PostgresStockSink {
  return new PostgresStockSink(config);
}
