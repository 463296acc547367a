import type pg from 'pg';
import { inTransaction, query } from '../core/pg.js';
import type { Logger } from '../core/logger.js';
import { readCheckpoint, writeCheckpoint } from '../state/checkpoints.js';

export type { SnapshotState } from '../state/checkpoints.js';
import type { SnapshotState } from '../state/checkpoints.js';

/** A queued `cellar resnapshot`: which tables (null: all of the supplier's). */
export interface ResnapshotRequest { id: number; tables: string[] | null }

/** The snapshot state a checkpoint records (no checkpoint: the initial snapshot is owed). */
export function snapshotStateOf(saved: SnapshotState | undefined): SnapshotState {
  return {
    snapshotDone: saved?.snapshotDone ?? false,
    ...(saved?.snapshotTables?.length ? { snapshotTables: saved.snapshotTables } : {}),
    ...(saved?.resnapshotRequests?.length ? { resnapshotRequests: saved.resnapshotRequests } : {}),
  };
}

/**
 * What a reader owes once `requests` are taken: the tables they name added to those already owed, or
 * every table when one names none or a snapshot of every table is owed already (it covers any list).
 */
export function oweSnapshot(state: SnapshotState, requests: ResnapshotRequest[]): SnapshotState {
  const resnapshotRequests = [...(state.resnapshotRequests ?? []), ...requests.map((r) => r.id)];
  if (state.snapshotDone !== true || requests.some((r) => !r.tables?.length)) return { snapshotDone: false, resnapshotRequests };
  const snapshotTables = [...new Set([...(state.snapshotTables ?? []), ...requests.flatMap((r) => r.tables ?? [])])];
  return { snapshotDone: true, snapshotTables, resnapshotRequests };
}

/**
 * Follows one of a reader's batches in `states` (each supplier's {@link SnapshotState}); returns the
 * requests it finishes. The batch that ends a snapshot settles everything owed (its requests are to be
 * marked finished in the commit that checkpoints it); a streamed batch means no snapshot is coming (a
 * reader configured `snapshot: never`).
 */
export function afterBatch(states: Map<string, SnapshotState>, supplierId: string, batch: { snapshot: boolean; snapshotComplete?: boolean }): number[] {
  const state = states.get(supplierId) ?? {};
  if (batch.snapshotComplete) {
    states.set(supplierId, { snapshotDone: true });
    return state.resnapshotRequests ?? [];
  }
  if (!batch.snapshot && !state.snapshotDone) states.set(supplierId, { ...state, snapshotDone: true });
  return [];
}

/** Queues `cellar resnapshot` of a supplier's tables (null: every table) for the runtime reading it; returns the request id. */
export async function requestResnapshot(pool: pg.Pool, supplierId: string, requestedBy: string, tables: string[] | null = null): Promise<number> {
  const { rows } = await query<{ id: string }>(
    pool,
    'requesting a resnapshot',
    'INSERT INTO cellar.resnapshot_requests (supplier_id, requested_by, tables) VALUES ($1, $2, $3) RETURNING id',
    [supplierId, requestedBy, tables],
  );
  return Number(rows[0]!.id);
}

/** A request's state: when it was made, taken (and by which runtime), and when the snapshot it asked for completed. */
export interface ResnapshotRequestState { requestedAt: Date; takenAt: Date | null; takenBy: string | null; finishedAt: Date | null; tables: string[] | null }

/** Reads one request (undefined when there is no such id). */
export async function resnapshotRequest(pool: pg.Pool, id: number): Promise<ResnapshotRequestState | undefined> {
  const { rows } = await query<{ requested_at: Date; taken_at: Date | null; taken_by: string | null; finished_at: Date | null; tables: string[] | null }>(
    pool, 'reading a resnapshot request', 'SELECT requested_at, taken_at, taken_by, finished_at, tables FROM cellar.resnapshot_requests WHERE id = $1', [id],
  );
  const r = rows[0];
  return r && { requestedAt: r.requested_at, takenAt: r.taken_at, takenBy: r.taken_by, finishedAt: r.finished_at, tables: r.tables };
}

/** Marks requests finished; `tx` is the transaction that checkpoints the end of their snapshot. */
export async function finishResnapshotRequests(tx: pg.PoolClient, ids: number[]): Promise<void> {
  if (!ids.length) return;
  await query(tx, 'finishing resnapshot requests', 'UPDATE cellar.resnapshot_requests SET finished_at = now() WHERE id = ANY($1::bigint[]) AND finished_at IS NULL', [ids]);
}

/** What a runtime provides to act on `cellar resnapshot` requests (see {@link pollResnapshotRequests}). */
export interface ResnapshotHooks {
  pool: pg.Pool;
  log: Logger;
  /** Which runtime takes the requests (its lease name: `embedded`, `capture:<supplier>`), recorded in `taken_by`. */
  runtime: string;
  /** Suppliers this runtime reads with native readers now (a reload changes them). */
  suppliers(): string[];
  /** The source id of a supplier's checkpoint. */
  sourceId(supplierId: string): string;
  /** Throws inside `tx` unless this runtime still holds its single-writer lease (RuntimeLease.fence). */
  fence(tx: pg.PoolClient): Promise<void>;
  /** Stops the supplier's reader; resolves once everything it handed over is committed and checkpointed. */
  pause(supplierId: string): Promise<void>;
  /** Starts the supplier's reader again; `state`: what it owes now (undefined: what it owed before). */
  resume(supplierId: string, state: SnapshotState | undefined): Promise<void>;
  /** How often to look for requests, ms (default 1000). */
  everyMs?: number;
}

/**
 * Takes `cellar resnapshot` requests for the runtime's suppliers. For each supplier with waiting requests,
 * its reader is paused, the requests are marked taken and what they owe is written into its checkpoint in
 * one fenced transaction, and the reader is started again: it snapshots the owed tables (each starting
 * with a truncate) before it streams on. A crash before that transaction leaves the requests waiting; one
 * after it snapshots the owed tables on restart. One supplier at a time; `stop()` waits for the one in hand.
 */
export function pollResnapshotRequests(h: ResnapshotHooks): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  let stopped = false;
  const take = (supplierId: string) =>
    inTransaction(h.pool, 'taking resnapshot requests', async (tx) => {
      await h.fence(tx);
      const { rows } = await query<{ id: string; tables: string[] | null }>(tx, 'taking resnapshot requests',
        'UPDATE cellar.resnapshot_requests SET taken_at = now(), taken_by = $2 WHERE taken_at IS NULL AND supplier_id = $1 RETURNING id, tables', [supplierId, h.runtime]);
      if (!rows.length) return undefined;
      const saved = await readCheckpoint<SnapshotState & Record<string, unknown>>(tx, h.sourceId(supplierId));
      const state = oweSnapshot(snapshotStateOf(saved), rows.map((r) => ({ id: Number(r.id), tables: r.tables })));
      const { snapshotTables: _tables, resnapshotRequests: _requests, ...position } = saved ?? {};
      await writeCheckpoint(tx, h.sourceId(supplierId), { ...position, ...state });
      h.log.warn({ supplier: supplierId, tables: state.snapshotDone ? state.snapshotTables : 'all', requests: state.resnapshotRequests }, 'snapshotting again (cellar resnapshot)');
      return state;
    });
  const once = async () => {
    const { rows } = await query<{ supplier_id: string }>(h.pool, 'reading resnapshot requests',
      'SELECT DISTINCT supplier_id FROM cellar.resnapshot_requests WHERE taken_at IS NULL AND supplier_id = ANY($1::text[])', [h.suppliers()]);
    for (const { supplier_id: id } of rows) {
      if (stopped) return;
      await h.pause(id);
      let state: SnapshotState | undefined;
      try {
        state = await take(id);
      } finally {
        // Stopping: the checkpoint says what is owed; the next start does it.
        if (!stopped) await h.resume(id, state);
      }
    }
  };
  const timer = setInterval(() => {
    if (running || stopped) return;
    running = once()
      .catch((err: unknown) => h.log.warn({ err: (err as Error).message }, 'taking resnapshot requests failed; retrying'))
      .finally(() => (running = undefined));
  }, h.everyMs ?? 1_000);
  timer.unref();
  return {
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
