import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { ConfigError } from '../core/errors.js';
import { STOCK_EVENT_TYPES } from '../events/derive.js';
import { DELIVERY_STATUSES, listDeliveries, redeliver, type DeliveryStatus, type WebhookDelivery } from '../webhooks/deliveries.js';
import { createWebhook, deleteWebhook, getWebhook, listWebhooks, updateWebhook, type NewWebhook, type WebhookPatch, type WebhookSummary } from '../webhooks/store.js';
import { ApiError, badRequest, notFound } from './errors.js';
import { errorResponses, REGION, SKU } from './schemas.js';

/** What the webhook endpoints act on. */
export interface WebhookRouteDeps {
  pool: pg.Pool;
}

const ID = { type: 'string', pattern: '^wh_[0-9a-f]{16}$', description: 'Subscription id (`wh_` and 16 hex digits).' } as const;
const EVENT_ID = { type: 'string', pattern: '^[0-9a-f]{32}$', description: 'Stock event id (32 hex digits), as the `cellar-event-id` header and the body\'s `id` give it.' } as const;
const TIME = { type: ['string', 'null'], format: 'date-time' } as const;
const URL_FIELD = { type: 'string', minLength: 8, maxLength: 2048, pattern: '^https?://', description: 'Where deliveries are POSTed: http:// or https://, without credentials (deliveries are authenticated by their signature).' } as const;

const FILTER = {
  type: 'object',
  additionalProperties: false,
  description: 'Which stock events the subscription gets; each part optional, all must match. `{}`: every event.',
  properties: {
    types: { type: 'array', items: { type: 'string', enum: [...STOCK_EVENT_TYPES] }, uniqueItems: true, description: 'Any of these types (default all).' },
    region: REGION,
    sku: SKU,
    skuPrefix: { type: 'string', minLength: 1, maxLength: 200, description: 'SKUs starting with this.' },
  },
} as const;

const MAX_ATTEMPTS = { type: ['integer', 'null'], minimum: 1, maximum: 100, description: 'Attempts before a delivery is dead; null: the dispatcher\'s default (8).' } as const;

/** A subscription as answered: never its secret. */
const WEBHOOK = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    url: { type: 'string' },
    filter: { ...FILTER, additionalProperties: true },
    description: { type: 'string' },
    enabled: { type: 'boolean', description: 'A disabled subscription records its deliveries and holds them (pending) until enabled.' },
    maxAttempts: MAX_ATTEMPTS,
    createdAt: TIME,
    updatedAt: TIME,
    deliveries: {
      type: 'object',
      description: 'Deliveries by status: pending (to send or retry), delivered, dead (gave up after max attempts; `POST …/redeliver` sends them again).',
      properties: { pending: { type: 'integer' }, delivered: { type: 'integer' }, dead: { type: 'integer' } },
      required: ['pending', 'delivered', 'dead'],
    },
    lastDelivery: {
      type: ['object', 'null'],
      description: 'The latest attempt: its event, the delivery\'s status, the HTTP status answered (null: no answer) and the error.',
      properties: { eventId: { type: 'string' }, status: { type: 'string' }, attempts: { type: 'integer' }, at: TIME, httpStatus: { type: ['integer', 'null'] }, error: { type: ['string', 'null'] } },
    },
  },
  required: ['id', 'url', 'filter', 'description', 'enabled', 'maxAttempts', 'createdAt', 'deliveries', 'lastDelivery'],
} as const;

const DELIVERY = {
  type: 'object',
  properties: {
    eventId: { type: 'string' },
    seq: { type: 'integer', description: 'Position in the subscription\'s log; pass as `after` to page.' },
    status: { type: 'string', enum: [...DELIVERY_STATUSES] },
    attempts: { type: 'integer' },
    nextAttemptAt: { ...TIME, description: 'Pending: when it is due (or its attempt in flight ends).' },
    lastAttemptAt: TIME,
    lastStatus: { type: ['integer', 'null'], description: 'HTTP status of the last attempt; null: no answer.' },
    lastError: { type: ['string', 'null'] },
    deliveredAt: TIME,
    createdAt: TIME,
    event: { type: 'object', additionalProperties: true, description: 'The body sent.' },
  },
  required: ['eventId', 'seq', 'status', 'attempts', 'event'],
} as const;

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

function webhookView(w: WebhookSummary) {
  return { ...w, createdAt: iso(w.createdAt), updatedAt: iso(w.updatedAt), lastDelivery: w.lastDelivery && { ...w.lastDelivery, at: iso(w.lastDelivery.at) } };
}

function deliveryView(d: WebhookDelivery) {
  return { eventId: d.eventId, seq: d.seq, status: d.status, attempts: d.attempts, nextAttemptAt: iso(d.nextAttemptAt), lastAttemptAt: iso(d.lastAttemptAt), lastStatus: d.lastStatus, lastError: d.lastError, deliveredAt: iso(d.deliveredAt), createdAt: iso(d.createdAt), event: d.event };
}

/** The store's validation problems (each `webhook: field: what`) as one 400. */
async function validated<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ConfigError) throw badRequest(err.problems.length ? err.problems.join('; ') : err.message);
    throw err;
  }
}

const unknown = (id: string) => notFound(`no webhook ${id} (GET /v1/webhooks lists them)`);
const params = { type: 'object', properties: { id: ID }, required: ['id'] } as const;

/**
 * Webhook subscriptions (role admin; every call audited): create (the secret is answered once, by this
 * call only), list and read with delivery counts and the latest outcome, change, delete, the delivery log
 * of one, and redelivery of dead deliveries or one event.
 */
export function registerWebhookRoutes(app: FastifyInstance, deps: WebhookRouteDeps): void {
  const { pool } = deps;

  app.post<{ Body: NewWebhook }>(
    '/v1/webhooks',
    {
      config: { role: 'admin', audit: 'webhooks.create' },
      schema: {
        summary: 'Subscribe a URL to stock events (answers the signing secret, once)',
        description: 'Deliveries start with the events written from now on. Each is POSTed as JSON, signed with `cellar-signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, retried with backoff, at least once (deduplicate by `id`).',
        tags: ['webhooks'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['url'],
          properties: {
            url: URL_FIELD,
            filter: FILTER,
            secret: { type: 'string', minLength: 16, maxLength: 256, description: 'Signing secret (16–256 printable characters). Default: generated (`whsec_…`). Answered by this call only.' },
            description: { type: 'string', maxLength: 500 },
            enabled: { type: 'boolean', default: true },
            maxAttempts: MAX_ATTEMPTS,
          },
        },
        response: { 201: { ...WEBHOOK, properties: { ...WEBHOOK.properties, secret: { type: 'string', description: 'The signing secret: shown here only.' } }, required: [...WEBHOOK.required, 'secret'] }, ...errorResponses(503) },
      },
    },
    async (req, reply) => {
      const { webhook, secret } = await validated(() => createWebhook(pool, req.body));
      req.auditTarget = webhook.id;
      return reply.code(201).send({ ...webhookView(webhook), secret });
    },
  );

  app.get(
    '/v1/webhooks',
    {
      config: { role: 'admin', audit: 'webhooks.list' },
      schema: {
        summary: 'Every webhook subscription with its delivery counts and latest outcome (never secrets)',
        tags: ['webhooks'],
        response: { 200: { type: 'object', properties: { webhooks: { type: 'array', items: WEBHOOK } }, required: ['webhooks'] }, ...errorResponses(503) },
      },
    },
    async () => ({ webhooks: (await listWebhooks(pool)).map(webhookView) }),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/webhooks/:id',
    {
      config: { role: 'admin', audit: 'webhooks.show' },
      schema: { summary: 'One webhook subscription with its delivery counts and latest outcome', tags: ['webhooks'], params, response: { 200: WEBHOOK, ...errorResponses(404, 503) } },
    },
    async (req) => {
      req.auditTarget = req.params.id;
      const w = await getWebhook(pool, req.params.id);
      if (!w) throw unknown(req.params.id);
      return webhookView(w);
    },
  );

  app.patch<{ Params: { id: string }; Body: WebhookPatch }>(
    '/v1/webhooks/:id',
    {
      config: { role: 'admin', audit: 'webhooks.update' },
      schema: {
        summary: 'Change a subscription: enable or disable it, its URL, filter, description or max attempts',
        description: 'A new filter applies to events taken from the log after it. Disabled, a subscription\'s deliveries are recorded and held until it is enabled again.',
        tags: ['webhooks'],
        params,
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: { url: URL_FIELD, filter: FILTER, description: { type: 'string', maxLength: 500 }, enabled: { type: 'boolean' }, maxAttempts: MAX_ATTEMPTS },
        },
        response: { 200: WEBHOOK, ...errorResponses(404, 503) },
      },
    },
    async (req) => {
      req.auditTarget = req.params.id;
      const w = await validated(() => updateWebhook(pool, req.params.id, req.body));
      if (!w) throw unknown(req.params.id);
      return webhookView(w);
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/webhooks/:id',
    {
      config: { role: 'admin', audit: 'webhooks.delete' },
      schema: {
        summary: 'Delete a subscription and its delivery log (requests in flight still end)',
        tags: ['webhooks'],
        params,
        response: { 200: { type: 'object', properties: { id: { type: 'string' }, deleted: { type: 'boolean' } }, required: ['id', 'deleted'] }, ...errorResponses(404, 503) },
      },
    },
    async (req) => {
      req.auditTarget = req.params.id;
      if (!(await deleteWebhook(pool, req.params.id))) throw unknown(req.params.id);
      return { id: req.params.id, deleted: true };
    },
  );

  app.get<{ Params: { id: string }; Querystring: { status?: DeliveryStatus; limit: number; after?: number; eventId?: string } }>(
    '/v1/webhooks/:id/deliveries',
    {
      config: { role: 'admin', audit: 'webhooks.deliveries' },
      schema: {
        summary: 'The delivery log of a subscription: each event\'s status, attempts, last HTTP status and error',
        description: 'In the order events were taken from the log. Page with `after` = the `next` of the previous page.',
        tags: ['webhooks'],
        params,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: [...DELIVERY_STATUSES] },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            after: { type: 'integer', minimum: 0, description: 'Only deliveries after this `seq` (paging).' },
            eventId: EVENT_ID,
          },
        },
        response: {
          200: { type: 'object', properties: { deliveries: { type: 'array', items: DELIVERY }, next: { type: ['integer', 'null'], description: 'Pass as `after` for the next page; null on the last.' } }, required: ['deliveries', 'next'] },
          ...errorResponses(404, 503),
        },
      },
    },
    async (req) => {
      req.auditTarget = req.params.id;
      if (!(await getWebhook(pool, req.params.id))) throw unknown(req.params.id);
      const { deliveries, next } = await listDeliveries(pool, req.params.id, req.query);
      return { deliveries: deliveries.map(deliveryView), next };
    },
  );

  app.post<{ Params: { id: string }; Body: { eventId?: string } | null }>(
    '/v1/webhooks/:id/redeliver',
    {
      config: { role: 'admin', audit: 'webhooks.redeliver' },
      schema: {
        summary: 'Send deliveries again: every dead one, or the one of an event (whatever its status)',
        description: 'Each goes back to pending, due now, with a full set of attempts. The receiver gets the same event id again.',
        tags: ['webhooks'],
        params,
        body: { type: ['object', 'null'], additionalProperties: false, properties: { eventId: EVENT_ID } },
        response: {
          200: { type: 'object', properties: { requeued: { type: 'array', items: { type: 'string' }, description: 'Event ids sent again.' } }, required: ['requeued'] },
          ...errorResponses(404, 503),
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      const eventId = req.body?.eventId;
      req.auditTarget = eventId ? `${id} ${eventId}` : id;
      if (!(await getWebhook(pool, id))) throw unknown(id);
      const requeued = await redeliver(pool, id, eventId ? { eventId } : {});
      if (eventId && !requeued.length) throw new ApiError(404, 'not_found', `webhook ${id} has no delivery of event ${eventId} (its filter did not match it, or it came before the subscription)`);
      req.auditDetail = `requeued ${requeued.length}`;
      return { requeued };
    },
  );
}
