import type pg from 'pg';
import { query } from '../core/pg.js';
import type { HeldMark } from '../normalize/batch.js';

/** Held contributors of one supplier by reason, for the API, the dashboard and `cellar dlq held`. */
export interface HeldSummary {
  supplierId: string;
  reason: string;
  count: number;
  /** When the oldest of them was held, ms since the epoch. */
  oldestMs: number;
}

/** One held contributor as stored. */
export interface HeldRow extends HeldMark {
  heldSinceMs: number;
}

/**
 * `cellar.held_contributors`: source rows whose latest change was refused while an earlier valid state
 * still counts. Both runtimes write it right after the routes of the same batch (the embedded runtime in
 * its commit transaction), so it always describes the totals the same batch produced.
 */
export class HeldStore {
  constructor(protected readonly pool: pg.Pool) {}

  /**
   * Ends the holds older than each release, then records the new holds (a hold never moves back to an
   * older version). Two statements at most; nothing when both lists are empty.
   */
  async apply(holds: HeldMark[], releases: Array<{ contributorId: string; version: string }>, tx?: pg.PoolClient): Promise<void> {
    const q = tx ?? this.pool;
    if (releases.length) {
      await query(q, 'releasing held contributors',
        `DELETE FROM cellar.held_contributors h USING unnest($1::text[], $2::text[]) AS r(id, v)
          WHERE h.contributor_id = r.id AND h.held_version < r.v COLLATE "C"`,
        [releases.map((r) => r.contributorId), releases.map((r) => r.version)]);
    }
    if (holds.length) {
      const list = [...holds].sort((a, b) => (a.contributorId < b.contributorId ? -1 : 1));
      const col = <K extends keyof HeldMark>(k: K) => list.map((h) => h[k]);
      await query(q, 'recording held contributors',
        `INSERT INTO cellar.held_contributors AS t (contributor_id, supplier_id, source_table, region, sku, reason, message, held_version)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
         ON CONFLICT (contributor_id) DO UPDATE SET region = excluded.region, sku = excluded.sku, reason = excluded.reason,
           message = excluded.message, held_version = excluded.held_version
         WHERE t.held_version < excluded.held_version`,
        [col('contributorId'), col('supplierId'), col('sourceTable'), col('region'), col('sku'), col('reason'), col('message'), col('version')]);
    }
  }
}

/** Held contributors per supplier and reason. */
export async function heldSummary(pool: pg.Pool): Promise<HeldSummary[]> {
  const { rows } = await query<{ supplier_id: string; reason: string; n: number; oldest: number }>(pool, 'counting held contributors',
    `SELECT supplier_id, reason, count(*)::int AS n, extract(epoch from min(held_since)) * 1000 AS oldest
       FROM cellar.held_contributors GROUP BY supplier_id, reason ORDER BY supplier_id, reason`);
  return rows.map((r) => ({ supplierId: r.supplier_id, reason: r.reason, count: r.n, oldestMs: Math.round(Number(r.oldest)) }));
}

/** Held contributors, oldest first (optionally of one supplier). */
export async function listHeld(pool: pg.Pool, f: { supplierId?: string; limit?: number } = {}): Promise<HeldRow[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  if (f.supplierId) where.push(`supplier_id = $${values.push(f.supplierId)}`);
  const { rows } = await query<{ contributor_id: string; supplier_id: string; source_table: string; region: string; sku: string; reason: string; message: string; held_version: string; since: number }>(pool, 'listing held contributors',
    `SELECT contributor_id, supplier_id, source_table, region, sku, reason, message, held_version, extract(epoch from held_since) * 1000 AS since
       FROM cellar.held_contributors ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY held_since, contributor_id LIMIT ${Math.max(1, Math.min(f.limit ?? 1000, 100_000))}`,
    values);
  return rows.map((r) => ({ contributorId: r.contributor_id, supplierId: r.supplier_id, sourceTable: r.source_table, region: r.region, sku: r.sku, reason: r.reason, message: r.message, version: r.held_version, heldSinceMs: Math.round(Number(r.since)) }));
}

/** Held contributors per (region, sku) key, as `region\u0000sku` → count (the API adds it to each total). */
export async function heldPerKey(pool: pg.Pool): Promise<Map<string, number>> {
  const { rows } = await query<{ region: string; sku: string; n: number }>(pool, 'counting held contributors per key',
    'SELECT region, sku, count(*)::int AS n FROM cellar.held_contributors GROUP BY region, sku');
  return new Map(rows.map((r) => [`${r.region}\u0000${r.sku}`, r.n]));
}

/**
 * A HeldStore for the only writer of its suppliers' holds (the embedded runtime): the held contributors
 * are kept in memory, so a batch releases only those actually held and the commit usually writes nothing.
 * Call {@link CachedHeldStore.track} while preparing a group, in order; its result is what to apply.
 */
export class CachedHeldStore extends HeldStore {
  private readonly versions = new Map<string, string>();

  /** Reads the holds of the given suppliers (at start). */
  async load(supplierIds: string[]): Promise<void> {
    const { rows } = await query<{ contributor_id: string; held_version: string }>(this.pool, 'reading held contributors',
      'SELECT contributor_id, held_version FROM cellar.held_contributors WHERE supplier_id = ANY($1::text[])', [supplierIds]);
    for (const r of rows) this.versions.set(r.contributor_id, r.held_version);
  }

  /** The holds and the releases of held contributors among a batch's, remembered as applied. */
  track(holds: HeldMark[], releases: Array<{ contributorId: string; version: string }>): { holds: HeldMark[]; releases: Array<{ contributorId: string; version: string }> } {
    const released = releases.filter((r) => {
      const v = this.versions.get(r.contributorId);
      if (v === undefined || !(v < r.version)) return false;
      this.versions.delete(r.contributorId);
      return true;
    });
    const held = holds.filter((h) => {
      const v = this.versions.get(h.contributorId);
      if (v !== undefined && !(v < h.version)) return false;
      this.versions.set(h.contributorId, h.version);
      return true;
    });
    return { holds: held, releases: released };
  }
}
