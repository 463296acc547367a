import type pg from 'pg';
import { query } from '../core/pg.js';
import { deadLetterCounts, listDeadLetters } from './dead-letters.js';
import { heldSummary } from './held.js';
import { listRuns } from './runs.js';
import { readSourceStatus, type SourceStatus } from './source-status.js';

/** A reader whose runtime has not reported for this long no longer counts as reporting, ms. */
export const REPORT_STALE_MS = 30_000;

/** One supplier as an operator (or a probe) sees it. */
export interface SupplierHealth {
  supplierId: string;
  /**
   * `ok` (streaming), `snapshotting`, `starting`, `failing` (its reader restarts after an error: the
   * supplier's database is down, say), `stopped`, or `unknown` (no runtime reports on it).
   */
  status: 'ok' | 'snapshotting' | 'starting' | 'failing' | 'stopped' | 'unknown';
  /** Why, in words: the reader's error, what is being snapshotted, or since when nothing reports. */
  detail: string | null;
  /** The reader's report, from the runtime that reported last. */
  capture: (Omit<SourceStatus, 'supplierId'> & { reporting: boolean }) | null;
  deadLetters: { pending: number; byReason: Array<{ reason: string; pending: number; total: number }>; newest: Array<{ id: number; reason: string; message: string; createdAt: Date }> };
  /** Rows still counted at their last valid state (`cellar dlq held`). */
  held: number;
  lastReconciliation: { runId: number; at: Date; outcome: string; driftedKeys: number; repaired: number } | null;
}

function statusOf(c: SourceStatus | undefined, now: number): Pick<SupplierHealth, 'status' | 'detail'> {
  if (!c) return { status: 'unknown', detail: 'no runtime reports on this supplier (a Debezium supplier, or nothing runs it)' };
  if (now - c.updatedAt.getTime() > REPORT_STALE_MS) return { status: 'unknown', detail: `the ${c.runtime} runtime last reported at ${c.updatedAt.toISOString()} (${c.state})` };
  switch (c.state) {
    case 'streaming':
      return { status: 'ok', detail: null };
    case 'snapshotting':
      return { status: 'snapshotting', detail: `${c.snapshotRows} rows read so far` };
    case 'restarting':
      return { status: 'failing', detail: `reader restarting since ${c.stateSince.toISOString()}: ${c.detail ?? 'unknown error'}` };
    case 'starting':
      return now - c.stateSince.getTime() > REPORT_STALE_MS ? { status: 'failing', detail: `starting since ${c.stateSince.toISOString()}` } : { status: 'starting', detail: null };
    default:
      return { status: 'stopped', detail: c.detail };
  }
}

/**
 * Per-supplier health from Cellar's own tables: the reader's state and distance to the source
 * (`cellar.source_status`), dead letters by reason with the newest messages, held rows and the last
 * reconciliation. `supplierIds` adds suppliers nothing has reported on yet (the registry's).
 */
export async function supplierHealth(pool: pg.Pool, o: { supplierIds?: string[]; only?: string } = {}): Promise<SupplierHealth[]> {
  const [status, held, withLetters] = await Promise.all([
    readSourceStatus(pool, o.only),
    heldSummary(pool),
    query<{ supplier_id: string }>(pool, 'listing suppliers with dead letters', 'SELECT DISTINCT supplier_id FROM cellar.dead_letters WHERE supplier_id IS NOT NULL'),
  ]);
  const ids = o.only ? [o.only] : [...new Set([...(o.supplierIds ?? []), ...status.map((s) => s.supplierId), ...withLetters.rows.map((r) => r.supplier_id)])].sort();
  const now = Date.now();
  return Promise.all(ids.map(async (supplierId) => {
    const latest = status.find((s) => s.supplierId === supplierId);
    const [counts, newest, runs] = await Promise.all([
      deadLetterCounts(pool, { supplierId }),
      listDeadLetters(pool, { supplierId, pending: true, limit: 3 }),
      listRuns(pool, { supplierId, limit: 1 }),
    ]);
    const byReason = new Map<string, { reason: string; pending: number; total: number }>();
    for (const c of counts) {
      const r = byReason.get(c.reason) ?? { reason: c.reason, pending: 0, total: 0 };
      r.pending += c.pending;
      r.total += c.count;
      byReason.set(c.reason, r);
    }
    const run = runs[0];
    const { supplierId: _id, ...capture } = latest ?? ({} as SourceStatus);
    return {
      supplierId,
      ...statusOf(latest, now),
      capture: latest ? { ...capture, reporting: now - latest.updatedAt.getTime() <= REPORT_STALE_MS } : null,
      deadLetters: { pending: [...byReason.values()].reduce((n, r) => n + r.pending, 0), byReason: [...byReason.values()], newest: newest.map((l) => ({ id: l.id, reason: l.reason, message: l.message, createdAt: l.createdAt })) },
      held: held.filter((h) => h.supplierId === supplierId).reduce((n, h) => n + h.count, 0),
      lastReconciliation: run ? { runId: run.id, at: run.finishedAt ?? run.startedAt, outcome: run.outcome, driftedKeys: run.driftedKeys, repaired: run.repaired } : null,
    };
  }));
}
