import { DEAD_LETTER_STATUSES } from '../core/names.js';
import type { Producer } from 'kafkajs';
import type pg from 'pg';
import { fromKafkaError } from '../core/errors.js';
import { query } from '../core/pg.js';
import type { DeadLetter } from '../../schemas/records.js';
import { groupBy } from '../core/collections.js';
import { REPLAY_HEADER } from '../dlq/letter.js';

/** Which dead letters a command applies to. All given conditions must hold. */
export interface DeadLetterFilter {
  ids?: number[];
  reason?: string;
  supplierId?: string;
  stage?: string;
  /** Only letters never replayed nor resolved (same as `status: 'pending'`). */
  pending?: boolean;
  status?: DeadLetterStatus;
  /** Only letters filed at or after this time. */
  since?: Date;
  /** Only letters filed before this time. */
  until?: Date;
  limit?: number;
}

export { DEAD_LETTER_STATUSES };
export type DeadLetterStatus = (typeof DEAD_LETTER_STATUSES)[number];

/** A row of `cellar.dead_letters`: the DeadLetter record plus its id and replay bookkeeping. */
export interface StoredDeadLetter extends Omit<DeadLetter, 'tsMs'> {
  id: number;
  createdAt: Date;
  status: DeadLetterStatus;
  replayedAt: Date | null;
  replayedBy: string | null;
  replayCount: number;
  resolvedAt: Date | null;
  resolvedBy: string | null;
  /** How it was resolved: its replay applied, or an operator's note. */
  resolution: string | null;
}

function where(f: DeadLetterFilter): { sql: string; values: unknown[] } {
  const conds: string[] = [];
  const values: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    values.push(v);
    conds.push(sql.replace('?', `$${values.length}`));
  };
  if (f.ids?.length) add('id = ANY(?::bigint[])', f.ids);
  if (f.reason) add('reason = ?', f.reason);
  if (f.supplierId) add('supplier_id = ?', f.supplierId);
  if (f.stage) add('stage = ?', f.stage);
  if (f.pending) conds.push("status = 'pending'");
  if (f.status) add('status = ?', f.status);
  if (f.since) add('created_at >= ?', f.since);
  if (f.until) add('created_at < ?', f.until);
  return { sql: conds.length ? `WHERE ${conds.join(' AND ')}` : '', values };
}

/** Inserts dead letters (on a pool or inside a caller's transaction); idempotent per Kafka position. */
export async function insertDeadLetters(q: pg.Pool | pg.PoolClient, letters: DeadLetter[]): Promise<void> {
  if (letters.length === 0) return;
  const col = <K extends keyof DeadLetter>(k: K) => letters.map((l) => l[k]);
  await query(
    q,
    'writing dead letters',
    `INSERT INTO cellar.dead_letters (stage, reason, message, supplier_id, topic, partition, "offset", source_position, key, value, created_at, source_table, dedupe_key, replay_of)
     SELECT u.stage, u.reason, u.message, u.sup, u.topic, u.part, u.off, u.pos, u.k, u.v, to_timestamp(u.ts / 1000.0), u.tbl, u.dk, u.ro
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::text[], $8::text[],
                   $9::bytea[], $10::bytea[], $11::double precision[], $12::text[], $13::text[], $14::bigint[]) AS u(stage, reason, message, sup, topic, part, off, pos, k, v, ts, tbl, dk, ro)
     ON CONFLICT DO NOTHING`,
    [col('stage'), col('reason'), col('message'), col('supplierId'), col('topic'), col('partition'), col('offset'), col('sourcePosition'), col('key'), col('value'), col('tsMs'), letters.map((l) => l.sourceTable ?? null), letters.map((l) => l.dedupeKey ?? null), letters.map((l) => l.replayOf ?? null)],
  );
}

/** Dead letters, newest first. */
export async function listDeadLetters(pool: pg.Pool, f: DeadLetterFilter = {}): Promise<StoredDeadLetter[]> {
  const w = where(f);
  const { rows } = await query<Record<string, unknown>>(
    pool,
    'listing dead letters',
    `SELECT id, stage, reason, message, supplier_id, topic, partition, "offset", source_position, key, value, created_at, replayed_at, replay_count, source_table,
            status, replayed_by, resolved_at, resolved_by, resolution, replay_of
       FROM cellar.dead_letters ${w.sql} ORDER BY id DESC LIMIT ${Math.max(1, Math.min(f.limit ?? 100, 100_000))}`,
    w.values,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    stage: r.stage as string,
    reason: r.reason as string,
    message: r.message as string,
    supplierId: r.supplier_id as string | null,
    topic: r.topic as string | null,
    partition: r.partition as number | null,
    offset: r.offset as string | null,
    sourcePosition: r.source_position as string | null,
    key: r.key as Buffer | null,
    value: r.value as Buffer | null,
    sourceTable: r.source_table as string | null,
    createdAt: r.created_at as Date,
    status: r.status as DeadLetterStatus,
    replayedAt: r.replayed_at as Date | null,
    replayedBy: r.replayed_by as string | null,
    replayCount: r.replay_count as number,
    resolvedAt: r.resolved_at as Date | null,
    resolvedBy: r.resolved_by as string | null,
    resolution: r.resolution as string | null,
    replayOf: r.replay_of === null ? null : Number(r.replay_of),
  }));
}

/** Counts of the letters a filter selects (all of them, not only `limit`), by stage and reason, per status. */
export async function deadLetterCounts(pool: pg.Pool, f: DeadLetterFilter = {}): Promise<Array<{ stage: string; reason: string; count: number; pending: number; replayed: number; resolved: number }>> {
  const w = where({ ...f, limit: undefined });
  const { rows } = await query<{ stage: string; reason: string; count: string; pending: string; replayed: string; resolved: string }>(
    pool,
    'counting dead letters',
    `SELECT stage, reason, count(*) AS count, count(*) FILTER (WHERE status = 'pending') AS pending,
            count(*) FILTER (WHERE status = 'replayed') AS replayed, count(*) FILTER (WHERE status = 'resolved') AS resolved
       FROM cellar.dead_letters ${w.sql} GROUP BY 1, 2 ORDER BY 3 DESC`,
    w.values,
  );
  return rows.map((r) => ({ stage: r.stage, reason: r.reason, count: Number(r.count), pending: Number(r.pending), replayed: Number(r.replayed), resolved: Number(r.resolved) }));
}

/** Where a dead letter goes back to on replay. */
export type ReplayRoute = 'kafka' | 'embedded' | 'none';

/**
 * A letter from the Kafka runtime goes back to its topic; one the embedded runtime filed (no topic, a
 * source table) goes back to that runtime through `cellar.repair_requests`; others (an aggregator's
 * refusal in the embedded runtime) cannot be replayed: a reconciliation repairs them.
 */
export function replayRouteOf(l: Pick<StoredDeadLetter, 'topic' | 'partition' | 'sourceTable' | 'supplierId' | 'value'>): ReplayRoute {
  if (l.topic && l.partition !== null) return 'kafka';
  if (l.sourceTable && l.supplierId && l.value) return 'embedded';
  return 'none';
}

/** Letters split by where a replay sends them (see {@link replayRouteOf}), in the given order. */
export function replayPlan<L extends Pick<StoredDeadLetter, 'topic' | 'partition' | 'sourceTable' | 'supplierId' | 'value'>>(letters: L[]): Record<ReplayRoute, L[]> {
  const plan: Record<ReplayRoute, L[]> = { kafka: [], embedded: [], none: [] };
  for (const l of letters) plan[replayRouteOf(l)].push(l);
  return plan;
}

/**
 * Replays dead letters in id order (resolved letters only when named by id), as `actor`; `sent` lists the
 * topic partitions written (to wait for the stage's group to pass them). Kafka runtime letters: each original message (key and value bytes)
 * is produced again to the topic it came from, with header `cellar-replay-of` (`producer()` is called
 * only when there are such letters). Embedded runtime letters: queued in `cellar.repair_requests`, which
 * the running embedded runtime applies through its normal path within a second. Either way the stage
 * processes the change with the current mapping and catalog; versions make a replayed change that is
 * already applied, or older than what is, a no-op, so replaying twice changes nothing.
 */
export async function replayDeadLetters(
  pool: pg.Pool,
  producer: () => Promise<Producer>,
  f: DeadLetterFilter,
  actor = 'cellar',
): Promise<{ replayed: StoredDeadLetter[]; queued: StoredDeadLetter[]; skipped: StoredDeadLetter[]; sent: Array<{ topic: string; partition: number; stage: string }>; afterId: number }> {
  // Letters this replay causes have higher ids: what an earlier replay caused is not this one's outcome.
  const afterId = Number((await query<{ id: string | null }>(pool, 'reading the newest dead letter', 'SELECT max(id) AS id FROM cellar.dead_letters')).rows[0]?.id ?? 0);
  const letters = (await listDeadLetters(pool, { ...f, limit: f.limit ?? 100_000 })).reverse().filter((l) => l.status !== 'resolved' || f.ids?.includes(l.id));
  const { kafka, embedded, none } = replayPlan(letters);
  const sent: Array<{ topic: string; partition: number; stage: string }> = [];
  if (kafka.length) {
    const p = await producer();
    try {
      for (const [topic, ls] of groupBy(kafka, (l) => l.topic!)) {
        const meta = await p.send({ topic, acks: -1, messages: ls.map((l) => ({ key: l.key, value: l.value, headers: { [REPLAY_HEADER]: String(l.id) } })) });
        for (const m of meta) sent.push({ topic, partition: m.partition, stage: ls[0]!.stage });
      }
    } catch (err) {
      throw fromKafkaError(err, 'replaying dead letters');
    }
  }
  if (embedded.length) {
    await query(
      pool,
      'queueing dead letters for the embedded runtime',
      `INSERT INTO cellar.repair_requests (supplier_id, source_table, key, value, replay_of)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])`,
      [embedded.map((l) => l.supplierId), embedded.map((l) => l.sourceTable), embedded.map((l) => l.key?.toString('utf8') ?? null), embedded.map((l) => l.value!.toString('utf8')), embedded.map((l) => l.id)],
    );
  }
  const ids = [...kafka, ...embedded].map((l) => l.id);
  if (ids.length) {
    await query(pool, 'marking replayed dead letters', `UPDATE cellar.dead_letters SET status = 'replayed', replayed_at = now(), replayed_by = $2, replay_count = replay_count + 1
      WHERE id = ANY($1::bigint[])`, [ids, actor]);
  }
  return { replayed: kafka, queued: embedded, skipped: none, sent, afterId };
}


/**
 * Letters refused again when their replay went through the pipeline: the replayed letter's id → the new
 * letter, among letters filed after `afterId` (the newest letter when the replay began).
 */
export async function refusedAgain(pool: pg.Pool, ids: number[], afterId: number): Promise<Map<number, StoredDeadLetter>> {
  if (!ids.length) return new Map();
  const { rows } = await query<{ id: string }>(pool, 'reading refused replays', 'SELECT max(id) AS id FROM cellar.dead_letters WHERE replay_of = ANY($1::bigint[]) AND id > $2 GROUP BY replay_of', [ids, afterId]);
  if (!rows.length) return new Map();
  const letters = await listDeadLetters(pool, { ids: rows.map((r) => Number(r.id)), limit: rows.length });
  return new Map(letters.map((l) => [l.replayOf!, l]));
}

/** Which of these letters' replays the embedded runtime has not applied yet (still in `cellar.repair_requests`). */
export async function replaysQueued(pool: pg.Pool, ids: number[]): Promise<Set<number>> {
  if (!ids.length) return new Set();
  const { rows } = await query<{ replay_of: string }>(pool, 'reading queued replays', 'SELECT replay_of FROM cellar.repair_requests WHERE replay_of = ANY($1::bigint[])', [ids]);
  return new Set(rows.map((r) => Number(r.replay_of)));
}

/** Marks letters resolved (their replay applied, or an operator's decision with a note); returns how many changed. */
export async function resolveDeadLetters(pool: pg.Pool, ids: number[], actor: string, resolution: string): Promise<number> {
  if (!ids.length) return 0;
  const r = await query(pool, 'resolving dead letters', `UPDATE cellar.dead_letters SET status = 'resolved', resolved_at = now(), resolved_by = $2, resolution = $3
    WHERE id = ANY($1::bigint[]) AND status <> 'resolved'`, [ids, actor, resolution]);
  return r.rowCount ?? 0;
}
