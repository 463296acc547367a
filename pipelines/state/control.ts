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

/** One process's answer to a request. */
export interface ControlAnswer {
  /** `<role> <host> pid <n>`: which process answered. */
  answeredBy: string;
  answeredAt: Date;
  outcome: ReloadOutcome;
}

/** Queues a reload for every running process of this database; returns the request id. */
export async function requestReload(pool: pg.Pool, by: string): Promise<number> {
  const { rows } = await query<{ id: string }>(pool, 'requesting a reload', "INSERT INTO cellar.control_requests (action, requested_by) VALUES ('reload', $1) RETURNING id", [by]);
  return Number(rows[0]!.id);
}

/**
 * Reload requests made since `since` that `by` has not answered yet, oldest first. Every process answers
 * each request once: requests from before it started are not its own (it read the files when it started).
 */
export async function unansweredReloads(pool: pg.Pool, by: string, since: Date): Promise<number[]> {
  const { rows } = await query<{ id: string }>(pool, 'reading reload requests',
    `SELECT r.id FROM cellar.control_requests r
      WHERE r.action = 'reload' AND r.requested_at >= $2
        AND NOT EXISTS (SELECT 1 FROM cellar.control_answers a WHERE a.request_id = r.id AND a.answered_by = $1)
      ORDER BY r.id`, [by, since]);
  return rows.map((r) => Number(r.id));
}

/** Records `by`'s outcome for requests (the request's first answer also marks it handled). */
export async function answerRequests(pool: pg.Pool, ids: number[], by: string, outcome: ReloadOutcome): Promise<void> {
  if (!ids.length) return;
  await query(pool, 'answering reload requests',
    `WITH a AS (
       INSERT INTO cellar.control_answers (request_id, answered_by, outcome) SELECT unnest($1::bigint[]), $2, $3
       ON CONFLICT DO NOTHING RETURNING request_id)
     UPDATE cellar.control_requests SET handled_at = now(), handled_by = $2, outcome = $3
      WHERE id IN (SELECT request_id FROM a) AND handled_at IS NULL`, [ids, by, JSON.stringify(outcome)]);
}

/** Marks that `by` is taking requests (each poll), so `cellar reload` waits for its answer. */
export async function markListening(pool: pg.Pool, by: string): Promise<void> {
  await query(pool, 'marking a reload listener', 'INSERT INTO cellar.control_listeners (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET last_poll = now()', [by]);
}

/** `by` stopped taking requests (a clean stop). */
export async function stopListening(pool: pg.Pool, by: string): Promise<void> {
  await query(pool, 'removing a reload listener', 'DELETE FROM cellar.control_listeners WHERE name = $1', [by]);
}

/** The processes that looked for requests within the last `withinMs`. */
export async function activeListeners(pool: pg.Pool, withinMs: number): Promise<string[]> {
  const { rows } = await query<{ name: string }>(pool, 'reading reload listeners',
    "SELECT name FROM cellar.control_listeners WHERE last_poll > now() - $1 * interval '1 millisecond' ORDER BY name", [withinMs]);
  return rows.map((r) => r.name);
}

/** Every answer to a request so far, in the order they came. */
export async function requestAnswers(pool: pg.Pool, id: number): Promise<ControlAnswer[]> {
  const { rows } = await query<{ answered_by: string; answered_at: Date; outcome: ReloadOutcome }>(pool, 'reading reload answers',
    'SELECT answered_by, answered_at, outcome FROM cellar.control_answers WHERE request_id = $1 ORDER BY answered_at, answered_by', [id]);
  return rows.map((r) => ({ answeredBy: r.answered_by, answeredAt: r.answered_at, outcome: r.outcome }));
}
