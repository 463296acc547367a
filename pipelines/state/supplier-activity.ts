import type pg from 'pg';
import type { CellarError } from '../core/errors.js';
import { query } from '../core/pg.js';

/** One row of `cellar.supplier_activity` (schemas/postgres/0026_supplier_activity.sql). */
export interface SupplierActivity {
  supplierId: string;
  /** Raw messages of the supplier the Kafka runtime's normalizers have received, all of them together (a batch replayed after a crash counts again). */
  changes: number;
  /** When a normalizer last received one. */
  lastChangeAt: Date;
  /** The newest source commit time among them; null when none carried one. */
  lastSourceTs: Date | null;
}

/**
 * What one normalizer received from each supplier since its last {@link SupplierActivityBoard.flush}: the
 * raw topics are the only place Cellar sees a Debezium supplier's changes arrive, so `cellar status` can say
 * when it last changed. Flushed every few seconds; several normalizers add to the same rows.
 */
export class SupplierActivityBoard {
  private pending = new Map<string, { changes: number; at: Date; sourceTsMs: number | null }>();

  /** `changes` raw messages of `supplierId` were normalized; `sourceTsMs`: the newest source time among them, ms (0 or null: none). */
  note(supplierId: string, changes: number, sourceTsMs: number | null): void {
    if (changes > 0) this.add(supplierId, { changes, at: new Date(), sourceTsMs: sourceTsMs && sourceTsMs > 0 ? sourceTsMs : null });
  }

  /** Adds to what is pending for the supplier: counts summed, the newest times kept. */
  private add(supplierId: string, n: { changes: number; at: Date; sourceTsMs: number | null }): void {
    const p = this.pending.get(supplierId);
    if (!p) {
      this.pending.set(supplierId, n);
      return;
    }
    p.changes += n.changes;
    if (n.at > p.at) p.at = n.at;
    if (n.sourceTsMs !== null && (p.sourceTsMs === null || n.sourceTsMs > p.sourceTsMs)) p.sourceTsMs = n.sourceTsMs;
  }

  /**
   * Adds what was noted to `cellar.supplier_activity` (one statement) and forgets it; kept for the next flush
   * when the write fails (Cellar's Postgres down: the counts are not lost, only late).
   */
  async flush(pool: pg.Pool): Promise<void> {
    if (!this.pending.size) return;
    const rows = [...this.pending];
    this.pending = new Map();
    try {
      await query(pool, 'writing supplier activity', `INSERT INTO cellar.supplier_activity AS t (supplier_id, changes, last_change_at, last_source_ts, updated_at)
        SELECT u.s, u.c, u.at, to_timestamp(u.ms / 1000.0), now() FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::double precision[]) AS u(s, c, at, ms)
        ON CONFLICT (supplier_id) DO UPDATE SET changes = t.changes + excluded.changes,
          last_change_at = greatest(t.last_change_at, excluded.last_change_at),
          last_source_ts = greatest(t.last_source_ts, excluded.last_source_ts), updated_at = now()`,
      [rows.map(([s]) => s), rows.map(([, p]) => p.changes), rows.map(([, p]) => p.at), rows.map(([, p]) => p.sourceTsMs)]);
    } catch (err) {
      for (const [s, p] of rows) this.add(s, p);
      throw err;
    }
  }
}

/** Every supplier's activity on the raw topics (none while the table is not there: a database not migrated yet). */
export async function readSupplierActivity(pool: pg.Pool, supplierId?: string): Promise<SupplierActivity[]> {
  type Row = { supplier_id: string; changes: string; last_change_at: Date; last_source_ts: Date | null };
  let rows: Row[];
  try {
    ({ rows } = await query<Row>(pool, 'reading supplier activity',
      `SELECT supplier_id, changes, last_change_at, last_source_ts FROM cellar.supplier_activity ${supplierId ? 'WHERE supplier_id = $1' : ''}`, supplierId ? [supplierId] : []));
  } catch (err) {
    // A database `cellar migrate` has not brought to this version yet: status answers without it.
    if ((err as CellarError).details?.pgCode === '42P01') return [];
    throw err;
  }
  return rows.map((r) => ({ supplierId: r.supplier_id, changes: Number(r.changes), lastChangeAt: r.last_change_at, lastSourceTs: r.last_source_ts }));
}
