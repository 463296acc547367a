import type pg from 'pg';
import type { Supplier } from '../../connectors/registry/loader.js';
import { query } from '../core/pg.js';
import { decodeDebeziumJson } from '../normalize/debezium.js';
import { contributorIdOf } from '../normalize/normalize.js';

/** A dead letter filed for a contributor while a reconciliation ran. */
export interface RefusedCorrection {
  letterId: number;
  reason: string;
  message: string;
}

/**
 * The contributors of `supplier` whose changes were dead-lettered since `sinceMs` (a run's start), by
 * contributor id: a correction the running pipeline refused (its mapping differs from the file
 * reconciliation read, say) shows here, so it is reported as refused rather than as "not seen applied".
 */
export async function refusedSince(pool: pg.Pool, supplier: Supplier, sinceMs: number): Promise<Map<string, RefusedCorrection>> {
  const { rows } = await query<{ id: string; reason: string; message: string; key: Buffer | null; value: Buffer | null }>(pool, 'reading refused corrections',
    `SELECT id, reason, message, key, value FROM cellar.dead_letters
      WHERE supplier_id = $1 AND created_at >= to_timestamp($2 / 1000.0) - interval '1 second' AND value IS NOT NULL ORDER BY id`, [supplier.id, sinceMs]);
  const out = new Map<string, RefusedCorrection>();
  for (const r of rows) {
    try {
      const change = decodeDebeziumJson(r.key, r.value);
      if (!change || change.op === 't') continue;
      out.set(contributorIdOf(supplier.id, change, supplier.source.tables.find((t) => t.name === change.table)?.key), { letterId: Number(r.id), reason: r.reason, message: r.message });
    } catch {
      // A letter whose bytes do not decode names no row: nothing to match.
    }
  }
  return out;
}
