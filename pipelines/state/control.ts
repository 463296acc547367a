import type pg from 'pg';
import { query } from '../core/pg.js';

/** What a runtime did with a reload (see pipelines/runtime/reload.ts). */
export interface ReloadOutcome {
  ok: boolean;
  /** Suppliers now captured that were not. */
  added: string[];
  /** Suppliers no longer captured (their slots are kept). */
  removed: string[];
  /** Suppliers whose file changed: their readers started again with it. */
  changed: string[];
  /** Files of kinds this runtime has no reader for. */
  skipped: string[];
  /** Why the configuration was rejected (every problem); the running one was kept. */
  error?: string;
}

/** Queues a reload for the running runtime; returns the request id. */
export async function requestReload(pool: pg.Pool, by: string): Promise<number> {
  const { rows } = await query<{ id: string }>(pool, 'requesting a reload', "INSERT INTO cellar.control_requests (action, requested_by) VALUES ('reload', $1) RETURNING id", [by]);
  return Number(rows[0]!.id);
}

/** Open reload requests, oldest first. */
export async function openReloads(pool: pg.Pool): Promise<number[]> {
  const { rows } = await query<{ id: string }>(pool, 'reading reload requests', "SELECT id FROM cellar.control_requests WHERE handled_at IS NULL AND action = 'reload' ORDER BY id");
  return rows.map((r) => Number(r.id));
}

/** Records what became of requests. */
export async function finishRequests(pool: pg.Pool, ids: number[], by: string, outcome: ReloadOutcome): Promise<void> {
  if (!ids.length) return;
  await query(pool, 'finishing reload requests', 'UPDATE cellar.control_requests SET handled_at = now(), handled_by = $2, outcome = $3 WHERE id = ANY($1::bigint[])', [ids, by, JSON.stringify(outcome)]);
}

/** A request's outcome once handled, else undefined. */
export async function requestOutcome(pool: pg.Pool, id: number): Promise<{ handledBy: string; outcome: ReloadOutcome } | undefined> {
  const { rows } = await query<{ handled_by: string; outcome: ReloadOutcome | null; handled_at: Date | null }>(pool, 'reading a reload outcome', 'SELECT handled_by, outcome, handled_at FROM cellar.control_requests WHERE id = $1', [id]);
  const r = rows[0];
  return r?.handled_at && r.outcome ? { handledBy: r.handled_by, outcome: r.outcome } : undefined;
}
