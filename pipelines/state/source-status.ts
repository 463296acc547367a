import type pg from 'pg';
import { query } from '../core/pg.js';

/** What a runtime's reader of one supplier is doing. */
export type CaptureState = 'starting' | 'snapshotting' | 'streaming' | 'restarting' | 'stopped';

/** One row of `cellar.source_status` (see schemas/postgres/0015_source_status.sql). */
export interface SourceStatus {
  supplierId: string;
  runtime: 'embedded' | 'capture';
  state: CaptureState;
  /** The error while restarting; what is being read while snapshotting. */
  detail: string | null;
  snapshotRows: number;
  /** Changes handed over since the runtime started. */
  changes: number;
  lastChangeAt: Date | null;
  restarts: number;
  /** Postgres: WAL bytes the slot retains; MySQL/MariaDB: binlog bytes not yet read. Null when unknown. */
  lagBytes: number | null;
  lagDetail: string | null;
  stateSince: Date;
  updatedAt: Date;
}

/**
 * A runtime's live view of its readers, one entry per supplier, written to `cellar.source_status` by
 * {@link SourceStatusBoard.flush} (every few seconds): readers report what they do, and whoever reads the
 * table (API, `cellar status`) sees it without talking to the runtime.
 */
export class SourceStatusBoard {
  private readonly rows = new Map<string, SourceStatus>();
  /** Called when a supplier's reader changes state, so the change can be written at once, not at the next flush. */
  onStateChange: (() => void) | undefined;

  constructor(private readonly runtime: 'embedded' | 'capture') {}

  private row(supplierId: string): SourceStatus {
    let r = this.rows.get(supplierId);
    if (!r) {
      const now = new Date();
      r = { supplierId, runtime: this.runtime, state: 'starting', detail: null, snapshotRows: 0, changes: 0, lastChangeAt: null, restarts: 0, lagBytes: null, lagDetail: null, stateSince: now, updatedAt: now };
      this.rows.set(supplierId, r);
    }
    return r;
  }

  /** Moves a supplier's reader to `state` (the clock restarts only on a change of state). */
  set(supplierId: string, state: CaptureState, detail: string | null = null): void {
    const r = this.row(supplierId);
    const changed = r.state !== state;
    if (changed) r.stateSince = new Date();
    if (changed && state === 'restarting') r.restarts++;
    r.state = state;
    r.detail = detail;
    if (changed) this.onStateChange?.();
  }

  /** A batch was handed over (`detail`: what a feed did with its file, shown until the next one). */
  batch(supplierId: string, b: { changes: number; snapshot: boolean; snapshotComplete?: boolean; detail?: string | null }): void {
    const r = this.row(supplierId);
    const detail = b.detail !== undefined ? b.detail : r.state === 'streaming' ? r.detail : null;
    if (b.snapshot && !b.snapshotComplete) {
      if (r.state !== 'snapshotting') r.snapshotRows = 0;
      this.set(supplierId, 'snapshotting', detail);
      r.snapshotRows += b.changes;
    } else {
      this.set(supplierId, 'streaming', detail);
    }
    if (b.changes) {
      r.changes += b.changes;
      r.lastChangeAt = new Date();
    }
  }

  lag(supplierId: string, bytes: number | null, detail: string | null): void {
    const r = this.row(supplierId);
    r.lagBytes = bytes;
    r.lagDetail = detail;
  }

  get(supplierId: string): SourceStatus | undefined {
    return this.rows.get(supplierId);
  }

  all(): SourceStatus[] {
    return [...this.rows.values()];
  }

  /**
   * Writes every supplier's row (one statement). A process that has not handed over a change yet keeps the
   * last change its predecessor recorded: a restart does not make a supplier look as if it never changed.
   */
  async flush(pool: pg.Pool): Promise<void> {
    const rows = this.all();
    if (!rows.length) return;
    const col = <K extends keyof SourceStatus>(k: K) => rows.map((r) => r[k]);
    await query(pool, 'writing source status', `INSERT INTO cellar.source_status (supplier_id, runtime, state, detail, snapshot_rows, changes, last_change_at, restarts, lag_bytes, lag_detail, state_since, updated_at)
      SELECT u.s, u.rt, u.st, u.d, u.sr, u.c, u.lc, u.r, u.lb, u.ld, u.ss, now()
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::timestamptz[], $8::int[], $9::bigint[], $10::text[], $11::timestamptz[])
          AS u(s, rt, st, d, sr, c, lc, r, lb, ld, ss)
      ON CONFLICT (supplier_id, runtime) DO UPDATE SET state = excluded.state, detail = excluded.detail, snapshot_rows = excluded.snapshot_rows,
        changes = excluded.changes, last_change_at = coalesce(excluded.last_change_at, cellar.source_status.last_change_at), restarts = excluded.restarts, lag_bytes = excluded.lag_bytes,
        lag_detail = excluded.lag_detail, state_since = excluded.state_since, updated_at = now()`,
    [col('supplierId'), col('runtime'), col('state'), col('detail'), col('snapshotRows'), col('changes'), col('lastChangeAt'), col('restarts'), col('lagBytes'), col('lagDetail'), col('stateSince')]);
  }
}

/** Every reported reader status, newest report first. */
export async function readSourceStatus(pool: pg.Pool, supplierId?: string): Promise<SourceStatus[]> {
  const { rows } = await query<Record<string, unknown>>(pool, 'reading source status',
    `SELECT * FROM cellar.source_status ${supplierId ? 'WHERE supplier_id = $1' : ''} ORDER BY updated_at DESC`, supplierId ? [supplierId] : []);
  return rows.map((r) => ({
    supplierId: r.supplier_id as string, runtime: r.runtime as 'embedded' | 'capture', state: r.state as CaptureState, detail: r.detail as string | null,
    snapshotRows: Number(r.snapshot_rows), changes: Number(r.changes), lastChangeAt: r.last_change_at as Date | null, restarts: Number(r.restarts),
    lagBytes: r.lag_bytes === null ? null : Number(r.lag_bytes), lagDetail: r.lag_detail as string | null, stateSince: r.state_since as Date, updatedAt: r.updated_at as Date,
  }));
}
