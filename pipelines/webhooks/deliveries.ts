import type pg from 'pg';
import { query } from '../core/pg.js';
import { matchesFilter } from '../events/derive.js';
import { eventBody, readEventsAfter, withCursor, type LoggedStockEvent, type StockEventBody } from '../events/log.js';
import { WEBHOOK_ID, webhookConsumer, type FollowedSubscription } from './store.js';

/**
 * Deliveries in `cellar.webhook_deliveries`: one row per (subscription, event), recorded from the stock
 * event log with the subscription's cursor ({@link followSubscription}), claimed by dispatchers (a short
 * UPDATE … SKIP LOCKED, never held during a request), then marked delivered, retried later or dead. Also
 * the delivery log the API and CLI show.
 */

/** What becomes of a delivery. */
export const DELIVERY_STATUSES = ['pending', 'delivered', 'dead'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** The JSON body of a delivery: the event as the API shows it. */
export type WebhookPayload = StockEventBody;

/** The body of an event's deliveries. */
export const webhookPayload: (e: LoggedStockEvent) => WebhookPayload = eventBody;

/** The request body: the payload's keys in their documented order (jsonb keeps its own). */
export function payloadBody(p: WebhookPayload): string {
  return JSON.stringify(webhookPayloadOrdered(p));
}

function webhookPayloadOrdered(p: WebhookPayload): WebhookPayload {
  return { id: p.id, type: p.type, region: p.region, sku: p.sku, version: p.version, before: p.before, after: p.after, threshold: p.threshold, sourceTs: p.sourceTs, createdAt: p.createdAt };
}

/** Records one pending delivery per payload in the caller's transaction; one already recorded is kept as it is. */
export async function recordDeliveries(tx: pg.PoolClient, subscriptionId: string, payloads: WebhookPayload[]): Promise<number> {
  if (!payloads.length) return 0;
  const { rowCount } = await query(tx, `recording deliveries of webhook ${subscriptionId}`, `INSERT INTO cellar.webhook_deliveries (subscription_id, event_id, event)
    SELECT $1, e->>'id', e FROM jsonb_array_elements($2::jsonb) AS e
    ON CONFLICT (subscription_id, event_id) DO NOTHING`, [subscriptionId, JSON.stringify(payloads)]);
  return rowCount ?? 0;
}

/** What one {@link followSubscription} call did. */
export interface FanOutResult {
  /** False when another process is following this subscription right now (it does the work). */
  followed: boolean;
  /** Events read from the log. */
  read: number;
  /** Deliveries recorded (events that match the filter, not recorded before). */
  recorded: number;
  /** True when the batch limit stopped it with more events waiting. */
  more: boolean;
}

/**
 * Takes a subscription's new events from the stock event log: reads after its cursor (only events of
 * finished transactions, so none is ever skipped), records a pending delivery for each that matches its
 * filter, and moves the cursor, all in one transaction: an event is recorded exactly once per
 * subscription, whichever process follows it and however they crash. One process at a time follows a
 * subscription (the cursor's advisory lock); another gets `followed: false`. At most `batches` reads of
 * `batchSize` events per call, so one backlog does not hold the others back.
 */
export async function followSubscription(pool: pg.Pool, sub: FollowedSubscription, o: { batchSize: number; batches: number }): Promise<FanOutResult> {
  const out: FanOutResult = { followed: false, read: 0, recorded: 0, more: false };
  out.followed = await withCursor(pool, webhookConsumer(sub.id), async (tx, at) => {
    let cursor = at;
    for (let i = 0; i < o.batches; i++) {
      const { events, cursor: next } = await readEventsAfter(tx, cursor, o.batchSize);
      cursor = next;
      out.read += events.length;
      out.recorded += await recordDeliveries(tx, sub.id, events.filter((e) => matchesFilter(e, sub.filter)).map(webhookPayload));
      out.more = events.length === o.batchSize;
      if (!out.more) break;
    }
    return cursor;
  });
  return out;
}

/**
 * The newest final event's position (`<xid>.<seq>`; '' when there is none): it changes whenever an event
 * becomes readable by followers, so a dispatcher that followed every subscription up to it has nothing to
 * do until it moves.
 */
export async function logHead(pool: pg.Pool): Promise<string> {
  const { rows } = await query<{ head: string }>(pool, 'reading the stock event log head', `SELECT xid::text || '.' || seq AS head FROM cellar.stock_events
    WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid DESC, seq DESC LIMIT 1`);
  return rows[0]?.head ?? '';
}

/** One row of the delivery log. */
export interface WebhookDelivery {
  subscriptionId: string;
  eventId: string;
  /** Position in the subscription's log (pass as `after` to page). */
  seq: number;
  status: DeliveryStatus;
  attempts: number;
  event: WebhookPayload;
  nextAttemptAt: Date | null;
  lastAttemptAt: Date | null;
  /** The HTTP status of the last attempt; null when there was no answer. */
  lastStatus: number | null;
  lastError: string | null;
  deliveredAt: Date | null;
  createdAt: Date;
}

function toDelivery(r: Record<string, unknown>): WebhookDelivery {
  return {
    subscriptionId: r.subscription_id as string,
    eventId: r.event_id as string,
    seq: Number(r.seq),
    status: r.status as DeliveryStatus,
    attempts: Number(r.attempts),
    event: webhookPayloadOrdered(r.event as WebhookPayload),
    nextAttemptAt: r.status === 'pending' ? (r.next_attempt_at as Date) : null,
    lastAttemptAt: (r.last_attempt_at as Date | null) ?? null,
    lastStatus: r.last_status === null ? null : Number(r.last_status),
    lastError: (r.last_error as string | null) ?? null,
    deliveredAt: (r.delivered_at as Date | null) ?? null,
    createdAt: r.created_at as Date,
  };
}

/**
 * A subscription's delivery log in the order its events were taken: at most `limit` (default 100) rows
 * after `after` (a `seq`), of one status when given; `next` is the `after` of the following page (null:
 * none).
 */
export async function listDeliveries(pool: pg.Pool, subscriptionId: string, f: { status?: DeliveryStatus; limit?: number; after?: number; eventId?: string } = {}): Promise<{ deliveries: WebhookDelivery[]; next: number | null }> {
  const limit = f.limit ?? 100;
  const { rows } = await query(pool, `reading the deliveries of webhook ${subscriptionId}`, `SELECT * FROM cellar.webhook_deliveries
    WHERE subscription_id = $1 AND seq > $2 AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR event_id = $4)
    ORDER BY seq LIMIT $5`, [subscriptionId, f.after ?? 0, f.status ?? null, f.eventId ?? null, limit]);
  const deliveries = rows.map(toDelivery);
  return { deliveries, next: deliveries.length === limit ? deliveries.at(-1)!.seq : null };
}

/**
 * Sends deliveries again: every dead one of the subscription, or the one of `eventId` whatever its status
 * (delivered included). Each goes back to pending, due now, with a full set of attempts. Returns the
 * event ids requeued (none: nothing dead, or no delivery of that event).
 */
export async function redeliver(pool: pg.Pool, subscriptionId: string, o: { eventId?: string } = {}): Promise<string[]> {
  if (!WEBHOOK_ID.test(subscriptionId)) return [];
  const { rows } = await query<{ event_id: string }>(pool, `requeuing deliveries of webhook ${subscriptionId}`, `UPDATE cellar.webhook_deliveries
      SET status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = NULL
    WHERE subscription_id = $1 AND (CASE WHEN $2::text IS NULL THEN status = 'dead' ELSE event_id = $2 END)
    RETURNING event_id`, [subscriptionId, o.eventId ?? null]);
  return rows.map((r) => r.event_id);
}

/** A delivery a dispatcher claimed: what it sends, where, with which secret. */
export interface ClaimedDelivery {
  subscriptionId: string;
  eventId: string;
  event: WebhookPayload;
  /** This attempt's number, from 1 (counted at the claim, so an attempt whose outcome is lost counts). */
  attempt: number;
  maxAttempts: number;
  url: string;
  secret: string;
}

/**
 * Claims due pending deliveries of enabled subscriptions: at most `caps.get(id)` per subscription and
 * `limit` in all, the longest due first. Each is counted as an attempt and leased for `leaseMs` (its
 * `next_attempt_at` moved ahead), so no other dispatcher takes it meanwhile and one that stops during the
 * request leaves it to be retried after the lease. Rows another dispatcher is claiming are skipped.
 */
export async function claimDeliveries(pool: pg.Pool, o: { caps: ReadonlyMap<string, number>; limit: number; defaultMaxAttempts: number; leaseMs: number }): Promise<ClaimedDelivery[]> {
  const subs = [...o.caps].filter(([, n]) => n > 0);
  if (!subs.length || o.limit < 1) return [];
  const { rows } = await query(pool, 'claiming webhook deliveries', `WITH cap AS (SELECT * FROM unnest($1::text[], $2::int[]) AS c(sub, n)),
    picked AS (
      SELECT p.subscription_id, p.event_id FROM cap
        JOIN cellar.webhook_subscriptions s ON s.id = cap.sub AND s.enabled
        CROSS JOIN LATERAL (
          SELECT d.subscription_id, d.event_id, d.next_attempt_at, d.seq FROM cellar.webhook_deliveries d
           WHERE d.subscription_id = cap.sub AND d.status = 'pending' AND d.next_attempt_at <= now() AND d.attempts < coalesce(s.max_attempts, $3)
           ORDER BY d.next_attempt_at, d.seq LIMIT cap.n
           FOR UPDATE OF d SKIP LOCKED) p
       ORDER BY p.next_attempt_at, p.seq LIMIT $4)
    UPDATE cellar.webhook_deliveries d
       SET attempts = d.attempts + 1, last_attempt_at = now(), next_attempt_at = now() + make_interval(secs => $5::double precision / 1000)
      FROM picked, cellar.webhook_subscriptions s
     WHERE d.subscription_id = picked.subscription_id AND d.event_id = picked.event_id AND s.id = d.subscription_id
    RETURNING d.subscription_id, d.event_id, d.event, d.attempts, coalesce(s.max_attempts, $3) AS max_attempts, s.url, s.secret`,
  [subs.map(([id]) => id), subs.map(([, n]) => n), o.defaultMaxAttempts, o.limit, o.leaseMs]);
  return rows.map((r) => ({ subscriptionId: r.subscription_id, eventId: r.event_id, event: r.event as WebhookPayload, attempt: Number(r.attempts), maxAttempts: Number(r.max_attempts), url: r.url, secret: r.secret }));
}

/** Marks a claimed delivery delivered (unless it was requeued or given up meanwhile). */
export async function markDelivered(pool: pg.Pool, d: ClaimedDelivery, httpStatus: number): Promise<void> {
  await query(pool, `recording delivery of ${d.eventId} to webhook ${d.subscriptionId}`, `UPDATE cellar.webhook_deliveries
      SET status = 'delivered', delivered_at = now(), last_status = $3, last_error = NULL
    WHERE subscription_id = $1 AND event_id = $2 AND status = 'pending' AND attempts = $4`, [d.subscriptionId, d.eventId, httpStatus, d.attempt]);
}

/**
 * Records a failed attempt: dead when it was the last one (`d.maxAttempts`), else pending again, due in
 * `retryInMs`. A row requeued or re-claimed since this attempt was claimed is left alone (its newer owner
 * decides). Returns the row's status after it, undefined when it was left alone.
 */
export async function markFailed(pool: pg.Pool, d: ClaimedDelivery, o: { httpStatus: number | null; error: string; retryInMs: number }): Promise<DeliveryStatus | undefined> {
  const { rows } = await query<{ status: DeliveryStatus }>(pool, `recording a failed delivery of ${d.eventId} to webhook ${d.subscriptionId}`, `UPDATE cellar.webhook_deliveries
      SET last_status = $3, last_error = $4, status = CASE WHEN attempts >= $5 THEN 'dead' ELSE 'pending' END,
          next_attempt_at = now() + make_interval(secs => $6::double precision / 1000)
    WHERE subscription_id = $1 AND event_id = $2 AND status = 'pending' AND attempts = $7
    RETURNING status`, [d.subscriptionId, d.eventId, o.httpStatus, o.error.slice(0, 1000), d.maxAttempts, o.retryInMs, d.attempt]);
  return rows[0]?.status;
}

/**
 * Hands a claimed delivery back uncounted, due now, for any dispatcher to send: its dispatcher stopped
 * before or during the request (the endpoint did not fail it). Left alone when requeued or re-claimed since.
 */
export async function releaseClaim(pool: pg.Pool, d: ClaimedDelivery, error: string): Promise<void> {
  await query(pool, `handing back a delivery of ${d.eventId} to webhook ${d.subscriptionId}`, `UPDATE cellar.webhook_deliveries
      SET attempts = attempts - 1, next_attempt_at = now(), last_error = coalesce($3, last_error)
    WHERE subscription_id = $1 AND event_id = $2 AND status = 'pending' AND attempts = $4`, [d.subscriptionId, d.eventId, error || null, d.attempt]);
}

/**
 * Gives up deliveries whose last attempt's lease ran out without an outcome (its dispatcher stopped
 * during the request) and that have no attempt left: dead, saying so. Returns how many.
 */
export async function expireExhausted(pool: pg.Pool, defaultMaxAttempts: number): Promise<number> {
  const { rowCount } = await query(pool, 'giving up webhook deliveries without attempts left', `UPDATE cellar.webhook_deliveries d
      SET status = 'dead', last_error = 'the outcome of the last attempt is unknown: its dispatcher stopped during the request'
     FROM cellar.webhook_subscriptions s
    WHERE s.id = d.subscription_id AND d.status = 'pending' AND d.next_attempt_at <= now() AND d.attempts >= coalesce(s.max_attempts, $1)`, [defaultMaxAttempts]);
  return rowCount ?? 0;
}

/** Deletes delivered and dead rows created more than `days` ago, and cursors of deleted subscriptions. */
export async function pruneDeliveries(pool: pg.Pool, days: number): Promise<number> {
  const { rowCount } = await query(pool, 'pruning old webhook deliveries', `DELETE FROM cellar.webhook_deliveries
    WHERE status <> 'pending' AND created_at < now() - make_interval(days => $1)`, [days]);
  await query(pool, 'dropping event cursors of deleted webhooks', `DELETE FROM cellar.event_cursors c
    WHERE c.consumer LIKE 'webhook:%' AND NOT EXISTS (SELECT 1 FROM cellar.webhook_subscriptions s WHERE 'webhook:' || s.id = c.consumer)`);
  return rowCount ?? 0;
}
