import type pg from 'pg';
import { query } from '../core/pg.js';

/**
 * Kinds of difference, by where it was found. `orphan`: a `regional_stock` row or a Redis field for a key
 * no contributor of any supplier was ever counted under.
 */
export type DriftKind = 'contribution' | 'regional_total' | 'redis' | 'orphan';

/** One difference found by a run (a row of `cellar.reconciliation_drift`). */
export interface Drift {
  kind: DriftKind;
  region: string | null;
  sku: string | null;
  contributorId: string | null;
  expected: unknown;
  actual: unknown;
  likelyCause: string;
}

/** Outcome of a reconciliation run. */
export type RunOutcome = 'running' | 'clean' | 'drift' | 'repaired' | 'failed';

/** Opens a run row; returns its id. */
export async function startRun(pool: pg.Pool, supplierId: string, trigger: string): Promise<number> {
  const { rows } = await query<{ id: string }>(pool, 'starting a reconciliation run', 'INSERT INTO cellar.reconciliation_runs (supplier_id, trigger) VALUES ($1, $2) RETURNING id', [supplierId, trigger]);
  return Number(rows[0]!.id);
}

/** Records the drift of a run (one row per difference). */
export async function recordDrift(pool: pg.Pool, runId: number, drift: Array<Drift & { repaired: boolean }>): Promise<void> {
  for (let i = 0; i < drift.length; i += 1000) {
    const chunk = drift.slice(i, i + 1000);
    await query(
      pool,
      'recording drift',
      `INSERT INTO cellar.reconciliation_drift (run_id, kind, region, sku, contributor_id, expected, actual, likely_cause, repaired)
       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::text[], $9::boolean[])`,
      [
        runId,
        chunk.map((d) => d.kind), chunk.map((d) => d.region), chunk.map((d) => d.sku), chunk.map((d) => d.contributorId),
        chunk.map((d) => JSON.stringify(d.expected ?? null)), chunk.map((d) => JSON.stringify(d.actual ?? null)),
        chunk.map((d) => d.likelyCause), chunk.map((d) => d.repaired),
      ],
    );
  }
}

/** Closes a run row with its counts and outcome. */
export async function finishRun(pool: pg.Pool, runId: number, r: { rowsCompared: number; drifted: number; repaired: number; unsettled: number; outcome: RunOutcome; error?: string }): Promise<void> {
  await query(
    pool,
    'finishing a reconciliation run',
    `UPDATE cellar.reconciliation_runs SET finished_at = now(), rows_compared = $2, drifted_keys = $3, repaired = $4, unsettled = $5, outcome = $6, error = $7 WHERE id = $1`,
    [runId, r.rowsCompared, r.drifted, r.repaired, r.unsettled, r.outcome, r.error ?? null],
  );
}

/** A run as `cellar.reconciliation_runs` holds it. */
export interface RunRow {
  id: number;
  supplierId: string;
  startedAt: Date;
  finishedAt: Date | null;
  rowsCompared: number;
  driftedKeys: number;
  repaired: number;
  unsettled: number;
  outcome: RunOutcome;
}

/** The newest runs, newest first (optionally of one supplier). */
export async function listRuns(pool: pg.Pool, opts: { supplierId?: string; limit?: number } = {}): Promise<RunRow[]> {
  const { rows } = await query<{ id: string; supplier_id: string; started_at: Date; finished_at: Date | null; rows_compared: string; drifted_keys: number; repaired: number; unsettled: number; outcome: RunOutcome }>(
    pool,
    'listing reconciliation runs',
    `SELECT * FROM cellar.reconciliation_runs WHERE $1::text IS NULL OR supplier_id = $1 ORDER BY id DESC LIMIT $2`,
    [opts.supplierId ?? null, opts.limit ?? 20],
  );
  return rows.map((r) => ({ id: Number(r.id), supplierId: r.supplier_id, startedAt: r.started_at, finishedAt: r.finished_at, rowsCompared: Number(r.rows_compared), driftedKeys: r.drifted_keys, repaired: r.repaired, unsettled: r.unsettled, outcome: r.outcome }));
}
