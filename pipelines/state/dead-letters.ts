import type { Producer } from 'kafkajs';
import type pg from 'pg';
import { fromKafkaError } from '../core/errors.js';
import { query } from '../core/pg.js';
import type { DeadLetter } from '../../schemas/records.js';
import { groupBy } from '../core/collections.js';

/** Which dead letters a command applies to. All given conditions must hold. */
export interface DeadLetterFilter {
  ids?: number[];
  reason?: string;
  supplierId?: string;
  stage?: string;
  /** Only letters never replayed. */
  pending?: boolean;
  limit?: number;
}

/** A row of `cellar.dead_letters`: the DeadLetter record plus its id and replay bookkeeping. */
export interface StoredDeadLetter extends Omit<DeadLetter, 'tsMs'> {
  id: number;
  createdAt: Date;
  replayedAt: Date | null;
  replayCount: number;
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
  if (f.pending) conds.push('replayed_at IS NULL');
  return { sql: conds.length ? `WHERE ${conds.join(' AND ')}` : '', values };
}

/** Inserts dead letters (on a pool or inside a caller's transaction); idempotent per Kafka position. */
export async function insertDeadLetters(q: pg.Pool | pg.PoolClient, letters: DeadLetter[]): Promise<void> {
  if (letters.length === 0) return;
  const col = <K extends keyof DeadLetter>(k: K) => letters.map((l) => l[k]);
  await query(
    q,
    'writing dead letters',
    `INSERT INTO cellar.dead_letters (stage, reason, message, supplier_id, topic, partition, "offset", source_position, key, value, created_at, source_table, dedupe_key)
     SELECT u.stage, u.reason, u.message, u.sup, u.topic, u.part, u.off, u.pos, u.k, u.v, to_timestamp(u.ts / 1000.0), u.tbl, u.dk
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::text[], $8::text[],
                   $9::bytea[], $10::bytea[], $11::double precision[], $12::text[], $13::text[]) AS u(stage, reason, message, sup, topic, part, off, pos, k, v, ts, tbl, dk)
     ON CONFLICT DO NOTHING`,
    [col('stage'), col('reason'), col('message'), col('supplierId'), col('topic'), col('partition'), col('offset'), col('sourcePosition'), col('key'), col('value'), col('tsMs'), letters.map((l) => l.sourceTable ?? null), letters.map((l) => l.dedupeKey ?? null)],
  );
}

/** Dead letters, newest first. */
export async function listDeadLetters(pool: pg.Pool, f: DeadLetterFilter = {}): Promise<StoredDeadLetter[]> {
  const w = where(f);
  const { rows } = await query<Record<string, unknown>>(
    pool,
    'listing dead letters',
    `SELECT id, stage, reason, message, supplier_id, topic, partition, "offset", source_position, key, value, created_at, replayed_at, replay_count, source_table
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
    replayedAt: r.replayed_at as Date | null,
    replayCount: r.replay_count as number,
  }));
}

/** Counts of dead letters by stage and reason. */
export async function deadLetterCounts(pool: pg.Pool): Promise<Array<{ stage: string; reason: string; count: number; pending: number }>> {
  const { rows } = await query<{ stage: string; reason: string; count: string; pending: string }>(
    pool,
    'counting dead letters',
    'SELECT stage, reason, count(*) AS count, count(*) FILTER (WHERE replayed_at IS NULL) AS pending FROM cellar.dead_letters GROUP BY 1, 2 ORDER BY 3 DESC',
  );
  return rows.map((r) => ({ stage: r.stage, reason: r.reason, count: Number(r.count), pending: Number(r.pending) }));
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
 * Replays dead letters in id order. Kafka runtime letters: each original message (key and value bytes)
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
): Promise<{ replayed: number[]; queued: number[]; skipped: number[] }> {
  const letters = (await listDeadLetters(pool, { ...f, limit: f.limit ?? 100_000 })).reverse();
  const { kafka, embedded, none } = replayPlan(letters);
  const skipped = none.map((l) => l.id);
  if (kafka.length) {
    const p = await producer();
    try {
      for (const [topic, ls] of groupBy(kafka, (l) => l.topic!)) {
        await p.send({ topic, acks: -1, messages: ls.map((l) => ({ key: l.key, value: l.value, headers: { 'cellar-replay-of': String(l.id) } })) });
      }
    } catch (err) {
      throw fromKafkaError(err, 'replaying dead letters');
    }
  }
  if (embedded.length) {
    await query(
      pool,
      'queueing dead letters for the embedded runtime',
      `INSERT INTO cellar.repair_requests (supplier_id, source_table, key, value)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])`,
      [embedded.map((l) => l.supplierId), embedded.map((l) => l.sourceTable), embedded.map((l) => l.key?.toString('utf8') ?? null), embedded.map((l) => l.value!.toString('utf8'))],
    );
  }
  const ids = [...kafka, ...embedded].map((l) => l.id);
  if (ids.length) {
    await query(pool, 'marking replayed dead letters', 'UPDATE cellar.dead_letters SET replayed_at = now(), replay_count = replay_count + 1 WHERE id = ANY($1::bigint[])', [ids]);
  }
  return { replayed: kafka.map((l) => l.id), queued: embedded.map((l) => l.id), skipped };
}
