import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { z } from 'zod';
import { inTransaction, query } from '../core/pg.js';
import { parseSpec } from '../core/spec.js';
import { STOCK_EVENT_TYPES, type StockEventFilter } from '../events/derive.js';
import { generateWebhookSecret } from './signing.js';

/**
 * Webhook subscriptions in `cellar.webhook_subscriptions` (schemas/postgres/0024_webhooks.sql): what the
 * API and the CLI manage. The signing secret is written here and read only by the dispatcher
 * ({@link subscriptionsToFollow} does not return it either): every function answering people leaves it out.
 */

/** The shape of a subscription id: `wh_` and 16 hex digits. */
export const WEBHOOK_ID = /^wh_[0-9a-f]{16}$/;

/** The event log follower (cellar.event_cursors) of a subscription. */
export const webhookConsumer = (id: string): string => `webhook:${id}`;

const url = z
  .string()
  .max(2048, 'at most 2048 characters')
  .refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'http:' || u.protocol === 'https:') && !!u.hostname;
    } catch {
      return false;
    }
  }, 'expected an http:// or https:// URL')
  .refine((v) => {
    try {
      const u = new URL(v);
      return !u.username && !u.password;
    } catch {
      return true;
    }
  }, 'credentials in the URL are not sent; authenticate deliveries by their signature instead');

/** Which events a subscription gets (all optional; `{}` = every event). */
export const WebhookFilterSpec = z
  .object({
    types: z.array(z.enum(STOCK_EVENT_TYPES)).max(STOCK_EVENT_TYPES.length).optional().describe('Event types: sold_out, back_in_stock, low_stock. Default all.'),
    region: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a region: 1–64 letters, digits, `.`, `_` or `-`').optional().describe('Only this region.'),
    sku: z.string().min(1).max(200).optional().describe('Only this canonical SKU.'),
    skuPrefix: z.string().min(1).max(200).optional().describe('Only SKUs starting with this.'),
  })
  .strict();

const secret = z.string().min(16, 'at least 16 characters').max(256, 'at most 256 characters').regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');
const description = z.string().max(500, 'at most 500 characters');
const maxAttempts = z.number().int('a whole number').min(1).max(100);

/** A new subscription: `url` required; the secret is generated when absent. */
export const NewWebhookSpec = z
  .object({
    url: url.describe('Where deliveries are POSTed (http or https).'),
    filter: WebhookFilterSpec.default({}),
    secret: secret.optional().describe('Signing secret (16–256 printable characters). Default: generated, `whsec_…`, shown once.'),
    description: description.default(''),
    enabled: z.boolean().default(true),
    maxAttempts: maxAttempts.nullable().default(null).describe('Attempts before a delivery is dead. Default null: the dispatcher\'s setting.'),
  })
  .strict();

/** A change to a subscription (at least one field). */
export const WebhookPatchSpec = z
  .object({ url: url.optional(), filter: WebhookFilterSpec.optional(), description: description.optional(), enabled: z.boolean().optional(), maxAttempts: maxAttempts.nullable().optional() })
  .strict()
  .refine((p) => Object.values(p).some((v) => v !== undefined), 'give at least one of url, filter, description, enabled, maxAttempts');

export type NewWebhook = z.input<typeof NewWebhookSpec>;
export type WebhookPatch = z.input<typeof WebhookPatchSpec>;

/** A subscription as answered to people: never its secret. */
export interface WebhookSubscription {
  id: string;
  url: string;
  filter: StockEventFilter;
  description: string;
  enabled: boolean;
  /** Attempts before a delivery is dead; null: the dispatcher's default. */
  maxAttempts: number | null;
  createdAt: Date;
  updatedAt: Date;
}

/** The outcome of a subscription's latest attempt. */
export interface LastDelivery {
  eventId: string;
  status: 'pending' | 'delivered' | 'dead';
  attempts: number;
  at: Date;
  /** The HTTP status answered; null when there was no answer (refused, timed out). */
  httpStatus: number | null;
  error: string | null;
}

/** A subscription with its delivery counts and latest outcome. */
export interface WebhookSummary extends WebhookSubscription {
  deliveries: { pending: number; delivered: number; dead: number };
  lastDelivery: LastDelivery | null;
}

const SUMMARY = `SELECT s.id, s.url, s.filter, s.description, s.enabled, s.max_attempts, s.created_at, s.updated_at,
       c.pending, c.delivered, c.dead, l.event_id, l.status, l.attempts, l.last_attempt_at, l.last_status, l.last_error
  FROM cellar.webhook_subscriptions s
  CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE status = 'pending') AS pending, count(*) FILTER (WHERE status = 'delivered') AS delivered,
                             count(*) FILTER (WHERE status = 'dead') AS dead
                        FROM cellar.webhook_deliveries d WHERE d.subscription_id = s.id) c
  LEFT JOIN LATERAL (SELECT event_id, status, attempts, last_attempt_at, last_status, last_error FROM cellar.webhook_deliveries d
                      WHERE d.subscription_id = s.id AND d.last_attempt_at IS NOT NULL ORDER BY d.last_attempt_at DESC LIMIT 1) l ON true`;

function toSummary(r: Record<string, unknown>): WebhookSummary {
  return {
    id: r.id as string,
    url: r.url as string,
    filter: r.filter as StockEventFilter,
    description: r.description as string,
    enabled: r.enabled as boolean,
    maxAttempts: r.max_attempts === null ? null : Number(r.max_attempts),
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
    deliveries: { pending: Number(r.pending ?? 0), delivered: Number(r.delivered ?? 0), dead: Number(r.dead ?? 0) },
    lastDelivery: r.event_id
      ? { eventId: r.event_id as string, status: r.status as LastDelivery['status'], attempts: Number(r.attempts), at: r.last_attempt_at as Date, httpStatus: r.last_status === null ? null : Number(r.last_status), error: (r.last_error as string | null) ?? null }
      : null,
  };
}

/** The filter without empty parts (`types: []` means every type, as absent). */
function compactFilter(f: z.output<typeof WebhookFilterSpec>): StockEventFilter {
  return Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined && !(Array.isArray(v) && !v.length))) as StockEventFilter;
}

/**
 * Creates a subscription and its event log cursor at "now" in one transaction: it gets every event
 * written from then on (those of transactions still running included), none before. Invalid input is a
 * ConfigError naming each field. The secret (given or generated) is returned here only.
 */
export async function createWebhook(pool: pg.Pool, input: NewWebhook): Promise<{ webhook: WebhookSummary; secret: string }> {
  const w = parseSpec(NewWebhookSpec, input, 'webhook');
  const id = `wh_${randomBytes(8).toString('hex')}`;
  const key = w.secret ?? generateWebhookSecret();
  await inTransaction(pool, `creating webhook ${id}`, async (tx) => {
    await query(tx, `creating webhook ${id}`, `INSERT INTO cellar.webhook_subscriptions (id, url, filter, secret, description, enabled, max_attempts)
      VALUES ($1, $2, $3, $4, $5, $6, $7)`, [id, w.url, JSON.stringify(compactFilter(w.filter)), key, w.description, w.enabled, w.maxAttempts]);
    await query(tx, `creating the event cursor of webhook ${id}`, `INSERT INTO cellar.event_cursors (consumer, xid, seq)
      VALUES ($1, pg_snapshot_xmin(pg_current_snapshot()), -1) ON CONFLICT (consumer) DO NOTHING`, [webhookConsumer(id)]);
  });
  return { webhook: (await getWebhook(pool, id))!, secret: key };
}

/** Every subscription with its delivery counts and latest outcome, oldest first. */
export async function listWebhooks(pool: pg.Pool): Promise<WebhookSummary[]> {
  const { rows } = await query(pool, 'listing webhooks', `${SUMMARY} ORDER BY s.created_at, s.id`);
  return rows.map(toSummary);
}

/** One subscription; undefined when there is none with this id. */
export async function getWebhook(pool: pg.Pool, id: string): Promise<WebhookSummary | undefined> {
  if (!WEBHOOK_ID.test(id)) return undefined;
  const { rows } = await query(pool, `reading webhook ${id}`, `${SUMMARY} WHERE s.id = $1`, [id]);
  return rows[0] && toSummary(rows[0]);
}

/**
 * Changes a subscription; undefined when there is none. A new filter applies to events taken from the
 * log after it (deliveries already recorded stay); disabling holds deliveries back (they are still
 * recorded, pending) until enabled again.
 */
export async function updateWebhook(pool: pg.Pool, id: string, patch: WebhookPatch): Promise<WebhookSummary | undefined> {
  const p = parseSpec(WebhookPatchSpec, patch, 'webhook change');
  if (!WEBHOOK_ID.test(id)) return undefined;
  const { rowCount } = await query(pool, `changing webhook ${id}`, `UPDATE cellar.webhook_subscriptions SET
      url = coalesce($2, url), filter = coalesce($3::jsonb, filter), description = coalesce($4, description), enabled = coalesce($5, enabled),
      max_attempts = CASE WHEN $6 THEN $7::integer ELSE max_attempts END, updated_at = now()
    WHERE id = $1`, [id, p.url ?? null, p.filter ? JSON.stringify(compactFilter(p.filter)) : null, p.description ?? null, p.enabled ?? null, p.maxAttempts !== undefined, p.maxAttempts ?? null]);
  return rowCount ? getWebhook(pool, id) : undefined;
}

/** Deletes a subscription, its deliveries and its cursor; false when there was none. */
export async function deleteWebhook(pool: pg.Pool, id: string): Promise<boolean> {
  if (!WEBHOOK_ID.test(id)) return false;
  return inTransaction(pool, `deleting webhook ${id}`, async (tx) => {
    const { rowCount } = await query(tx, `deleting webhook ${id}`, 'DELETE FROM cellar.webhook_subscriptions WHERE id = $1', [id]);
    await query(tx, `deleting the event cursor of webhook ${id}`, 'DELETE FROM cellar.event_cursors WHERE consumer = $1', [webhookConsumer(id)]);
    return (rowCount ?? 0) > 0;
  });
}

/** What the dispatcher follows the log with, per subscription (no secret: claims read it with the row). */
export interface FollowedSubscription {
  id: string;
  filter: StockEventFilter;
  enabled: boolean;
}

/** Every subscription, enabled or not (a disabled one's deliveries are recorded and held). */
export async function subscriptionsToFollow(pool: pg.Pool): Promise<FollowedSubscription[]> {
  const { rows } = await query<{ id: string; filter: StockEventFilter; enabled: boolean }>(pool, 'listing webhooks to follow', 'SELECT id, filter, enabled FROM cellar.webhook_subscriptions ORDER BY id');
  return rows;
}
