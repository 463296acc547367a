import type pg from 'pg';
import { query } from '../../pipelines/core/pg.js';

/** A row of `cellar.regional_stock` as plain numbers. */
export interface StockRow {
  region: string;
  sku: string;
  /** The SKU's bottle size, ml; null for rows written before sizes were kept. */
  bottleSizeMl: number | null;
  bottles: number;
  contributors: number;
  version: number;
  sourceTsMs: number | null;
  updatedTsMs: number;
}

/** Reads regional stock, optionally one region, ordered by region and SKU. */
export async function readRegionalStock(pool: pg.Pool, region?: string): Promise<StockRow[]> {
  const { rows } = await query<{ region: string; sku: string; bottle_size_ml: number | null; bottles: string; contributors: number; version: string; source_ms: number | null; updated_ms: number }>(
    pool,
    'reading regional stock',
    `SELECT region, sku, bottle_size_ml, bottles, contributors, version,
            extract(epoch from source_ts) * 1000 AS source_ms, extract(epoch from updated_at) * 1000 AS updated_ms
       FROM cellar.regional_stock ${region ? 'WHERE region = $1' : ''} ORDER BY region, sku`,
    region ? [region] : [],
  );
  return rows.map((r) => ({
    region: r.region,
    sku: r.sku,
    bottleSizeMl: r.bottle_size_ml,
    bottles: Number(r.bottles),
    contributors: r.contributors,
    version: Number(r.version),
    sourceTsMs: r.source_ms === null ? null : Math.round(Number(r.source_ms)),
    updatedTsMs: Math.round(Number(r.updated_ms)),
  }));
}
