import type pg from 'pg';
import { CellarError } from '../core/errors.js';
import { inTransaction, query } from '../core/pg.js';
import type { StockEventType, StockLevelEvent } from './derive.js';
import type { StockEventRecord } from '../../schemas/records.js';

/**
 * A position in the stock event log: (transaction id, sequence) of the last event a follower has taken.
 * Written as `<xid>.<seq>` (the SSE event id, the webhook cursor).
 */
export interface EventCursor {
  xid: string;
  seq: string;
}

/** A stock event as the log keeps it, with its position. */
export interface LoggedStockEvent extends StockLevelEvent {
  cursor: string;
  /** When the event was written to the log, ms since the epoch. */
  createdTsMs: number;
}

/**
 * An event as Cellar shows it outside (API, SSE, webhook bodies), in the key order {@link eventBody} gives:
 * the record with its source time, and the time it was written to the log, as ISO 8601.
 */
export type StockEventBody = Omit<StockEventRecord, 'sourceTsMs'> & { sourceTs: string; createdAt: string };

/** The outside shape of a logged event. */
export function eventBody(e: LoggedStockEvent): StockEventBody {
  return { id: e.id, type: e.type, region: e.region, sku: e.sku, version: e.version, before: e.before, after: e.after, threshold: e.threshold, sourceTs: new Date(e.sourceTsMs).toISOString(), createdAt: new Date(e.createdTsMs).toISOString() };
}

/** The cursor as text (`<xid>.<seq>`). */
export const cursorText = (c: EventCursor): string => `${c.xid}.${c.seq}`;

/** Parses `<xid>.<seq>`; a malformed one is a non-retriable error naming it. */
export function parseCursor(text: string): EventCursor {
  const m = /^(\d{1,20})\.(-1|\d{1,19})$/.exec(text);
  if (!m) throw new CellarError('invalid_cursor', `stock event cursor ${JSON.stringify(text.slice(0, 60))}: expected <xid>.<seq>, as an event's cursor gives it`, { retriable: false });
  return { xid: m[1]!, seq: m[2]! };
}

/**
 * Writes events in the caller's transaction (the one that writes the history they come from), each once:
 * a replay derives the same ids and is skipped.
 */
export async function saveEvents(tx: pg.PoolClient | pg.Pool, events: StockLevelEvent[]): Promise<void> {
  if (!events.length) return;
  const col = <K extends keyof StockLevelEvent>(k: K) => events.map((e) => e[k]);
  await query(tx, 'writing stock events', `INSERT INTO cellar.stock_events (id, type, region, sku, version, before, after, threshold, source_ts)
    SELECT id, t, r, s, v, b, a, th, to_timestamp(ms / 1000.0)
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::double precision[])
        AS u(id, t, r, s, v, b, a, th, ms)
    ON CONFLICT (id) DO NOTHING`,
  [col('id'), col('type'), col('region'), col('sku'), col('version'), col('before'), col('after'), col('threshold'), col('sourceTsMs')]);
}

interface Row {
  id: string; seq: string; xid: string; type: StockEventType; region: string; sku: string; version: string; before: string; after: string; threshold: string | null; ms: number; created_ms: number;
}

const toEvent = (r: Row): LoggedStockEvent => ({
  id: r.id, type: r.type, region: r.region, sku: r.sku, version: Number(r.version), before: Number(r.before), after: Number(r.after),
  threshold: r.threshold === null ? null : Number(r.threshold), sourceTsMs: Math.round(Number(r.ms)), cursor: `${r.xid}.${r.seq}`, createdTsMs: Math.round(Number(r.created_ms)),
});

/**
 * The events after `cursor`, in log order, at most `limit`: only those of transactions older than every
 * transaction still running, so a later read never finds an event before a position already returned
 * (no event is skipped, however transactions interleave). `cursor` is the position after the last one
 * returned (unchanged when none is).
 */
export async function readEventsAfter(q: pg.Pool | pg.PoolClient, after: EventCursor, limit: number): Promise<{ events: LoggedStockEvent[]; cursor: EventCursor }> {
  const { rows } = await query<Row>(q, 'reading the stock event log',
    // Ordered by the table's xid8 column (e.xid), never by the text alias: as text, '1000' sorts before '999'.
    `SELECT e.id, e.seq, e.xid::text AS xid, e.type, e.region, e.sku, e.version, e.before, e.after, e.threshold,
            extract(epoch from e.source_ts) * 1000 AS ms, extract(epoch from e.created_at) * 1000 AS created_ms
       FROM cellar.stock_events e
      WHERE (e.xid, e.seq) > ($1::xid8, $2::bigint) AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY e.xid, e.seq LIMIT $3`, [after.xid, after.seq, limit]);
  const last = rows.at(-1);
  return { events: rows.map(toEvent), cursor: last ? { xid: last.xid, seq: last.seq } : after };
}

/** The position of "now": a follower starting here gets every event not yet final, and none before. */
export async function currentCursor(q: pg.Pool | pg.PoolClient): Promise<EventCursor> {
  const { rows } = await query<{ xmin: string }>(q, 'reading the stock event log position', 'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin');
  return { xid: rows[0]!.xmin, seq: '-1' };
}

/** A follower's saved position (undefined: none yet). */
export async function loadCursor(q: pg.Pool | pg.PoolClient, consumer: string): Promise<EventCursor | undefined> {
  const { rows } = await query<{ xid: string; seq: string }>(q, `reading the event cursor of ${consumer}`,
    'SELECT xid::text AS xid, seq FROM cellar.event_cursors WHERE consumer = $1', [consumer]);
  return rows[0] ? { xid: rows[0].xid, seq: String(rows[0].seq) } : undefined;
}

/** Saves a follower's position. */
export async function saveCursor(q: pg.Pool | pg.PoolClient, consumer: string, c: EventCursor): Promise<void> {
  await query(q, `saving the event cursor of ${consumer}`, `INSERT INTO cellar.event_cursors (consumer, xid, seq) VALUES ($1, $2::xid8, $3)
    ON CONFLICT (consumer) DO UPDATE SET xid = excluded.xid, seq = excluded.seq, updated_at = now()`, [consumer, c.xid, c.seq]);
}

/**
 * Runs `fn` holding the follower `consumer` (an advisory lock: one process at a time follows it, others
 * skip; no row lock, so the transaction takes no transaction id until it saves, and holds back no other
 * reader's horizon): `fn` gets its position (created at "now" the first time) and returns the new one,
 * saved in the same transaction. Returns false when another process holds it.
 */
export async function withCursor(pool: pg.Pool, consumer: string, fn: (tx: pg.PoolClient, at: EventCursor) => Promise<EventCursor>): Promise<boolean> {
  return inTransaction(pool, `following the stock event log (${consumer})`, async (tx) => {
    const { rows } = await query<{ ok: boolean }>(tx, `locking the event cursor of ${consumer}`, `SELECT pg_try_advisory_xact_lock(hashtextextended('cellar.event_cursors:' || $1, 0)) AS ok`, [consumer]);
    if (!rows[0]?.ok) return false;
    let at = await loadCursor(tx, consumer);
    if (!at) {
      // The first time only: this transaction then takes an id until it ends.
      await query(tx, `creating the event cursor of ${consumer}`, `INSERT INTO cellar.event_cursors (consumer, xid, seq)
        VALUES ($1, pg_snapshot_xmin(pg_current_snapshot()), -1) ON CONFLICT (consumer) DO NOTHING`, [consumer]);
      at = await loadCursor(tx, consumer);
      if (!at) return false;
    }
    const next = await fn(tx, at);
    if (next.xid !== at.xid || next.seq !== at.seq) await saveCursor(tx, consumer, next);
    return true;
  });
}

/** Deletes events written more than `retentionDays` ago (the log is small: a few rows per crossing). */
export async function pruneEvents(pool: pg.Pool, retentionDays: number): Promise<number> {
  const { rowCount } = await query(pool, 'pruning old stock events', `DELETE FROM cellar.stock_events WHERE created_at < now() - make_interval(days => $1)`, [retentionDays]);
  return rowCount ?? 0;
}
