import type pg from 'pg';
import type { PushedRow } from '../../connectors/feed/push-body.js';
import type { InboxEntry } from '../../connectors/feed/push-source.js';
import { inTransaction, query } from '../core/pg.js';
import type { DeadLetter } from '../../schemas/records.js';
import { insertDeadLetters } from './dead-letters.js';

/** The accepted requests of `supplierId` after inbox id `afterId`, oldest first (what its runtime applies next). */
export async function readFeedInbox(q: pg.Pool, supplierId: string, afterId: number, limit: number): Promise<InboxEntry[]> {
  const { rows } = await query<{ id: string; mode: 'changes' | 'snapshot'; rows: PushedRow[]; received_at: Date }>(q, 'reading pushed requests',
    'SELECT id, mode, rows, received_at FROM cellar.feed_inbox WHERE supplier_id = $1 AND id > $2 ORDER BY id LIMIT $3', [supplierId, afterId, limit]);
  return rows.map((r) => ({ id: Number(r.id), mode: r.mode, rows: r.rows, receivedAtMs: r.received_at.getTime() }));
}

/** A request's answer as stored for its Idempotency-Key. */
export interface StoredAnswer {
  status: number;
  answer: Record<string, unknown>;
  bodySha256: string;
}

/**
 * Queues an accepted request for the runtime and stores its answer under its Idempotency-Key, in one
 * transaction: a request is queued once, whatever retries follow. Returns the inbox id, or the earlier
 * answer when a concurrent retry of the same key won.
 */
export async function acceptPushed(
  pool: pg.Pool,
  r: {
    supplierId: string; mode: 'changes' | 'snapshot'; rows: PushedRow[]; idempotencyKey?: string; bodySha256: string;
    answer: (inboxId: number | null) => { status: number; answer: Record<string, unknown> };
    /** The rows refused, as dead letters (stage `source`) of this request. */
    letters: (inboxId: number | null) => DeadLetter[];
  },
): Promise<{ status: number; answer: Record<string, unknown>; replayed: boolean; bodySha256: string }> {
  return inTransaction(pool, 'queuing a pushed request', async (tx) => {
    if (r.idempotencyKey) {
      // Taken first: a concurrent retry of the same key waits here, then finds the answer.
      await query(tx, 'locking an idempotency key', 'SELECT pg_advisory_xact_lock(hashtext($1 || \'/\' || $2))', [r.supplierId, r.idempotencyKey]);
      const { rows } = await query<{ status: number; answer: Record<string, unknown>; body_sha256: string }>(tx, 'reading an idempotent answer',
        `SELECT status, answer, body_sha256 FROM cellar.feed_requests WHERE supplier_id = $1 AND idempotency_key = $2`, [r.supplierId, r.idempotencyKey]);
      if (rows[0]) return { status: rows[0].status, answer: rows[0].answer, replayed: true, bodySha256: rows[0].body_sha256 };
    }
    let inboxId: number | null = null;
    if (r.rows.length || r.mode === 'snapshot') {
      const { rows } = await query<{ id: string }>(tx, 'queuing a pushed request', 'INSERT INTO cellar.feed_inbox (supplier_id, mode, rows) VALUES ($1, $2, $3) RETURNING id', [r.supplierId, r.mode, JSON.stringify(r.rows)]);
      inboxId = Number(rows[0]!.id);
    }
    const a = r.answer(inboxId);
    await insertDeadLetters(tx, r.letters(inboxId));
    if (r.idempotencyKey) {
      await query(tx, 'storing an idempotent answer', `INSERT INTO cellar.feed_requests (supplier_id, idempotency_key, body_sha256, status, answer) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (supplier_id, idempotency_key) DO UPDATE SET body_sha256 = excluded.body_sha256, status = excluded.status, answer = excluded.answer, created_at = now()`,
        [r.supplierId, r.idempotencyKey, r.bodySha256, a.status, JSON.stringify(a.answer)]);
      await query(tx, 'forgetting old idempotent answers', `DELETE FROM cellar.feed_requests WHERE supplier_id = $1 AND created_at < now() - interval '24 hours'`, [r.supplierId]);
    }
    return { ...a, replayed: false, bodySha256: r.bodySha256 };
  });
}
