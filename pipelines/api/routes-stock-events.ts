import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type pg from 'pg';
import { matchesFilter, STOCK_EVENT_TYPES, type StockEventFilter, type StockEventType } from '../events/derive.js';
import { eventBody, parseCursor, readEventsAfter, type EventCursor, type LoggedStockEvent } from '../events/log.js';
import { checkThresholdRule, listThresholds, removeThreshold, setThreshold } from '../events/thresholds.js';
import type { ApiMetrics } from './api-metrics.js';
import { ApiError, badRequest } from './errors.js';
import { ANY_OBJECT, errorResponses, REGION, SKU } from './schemas.js';
import { compareCursors, type StockEventLogHub } from './stock-event-hub.js';
import { MAX_BUFFERED_BYTES, openEventStream } from './sse.js';

interface FilterQuery { type?: string; region?: string; sku?: string; skuPrefix?: string }

const CURSOR = { type: 'string', pattern: '^\\d{1,20}\\.(-1|\\d{1,19})$', description: 'A position in the event log: an event\'s `cursor` (SSE: its `id`).' } as const;
const FILTER_PROPS = {
  type: { type: 'string', pattern: `^(${STOCK_EVENT_TYPES.join('|')})(,(${STOCK_EVENT_TYPES.join('|')}))*$`, description: `Only these types, comma-separated: ${STOCK_EVENT_TYPES.join(', ')}.` },
  region: REGION,
  sku: SKU,
  skuPrefix: { ...SKU, description: 'Only SKUs starting with this.' },
} as const;

const filterOf = (q: FilterQuery): StockEventFilter => ({
  ...(q.type ? { types: q.type.split(',') as StockEventType[] } : {}), ...(q.region ? { region: q.region } : {}), ...(q.sku ? { sku: q.sku } : {}), ...(q.skuPrefix ? { skuPrefix: q.skuPrefix } : {}),
});

/** An event as the API shows it, with its position. */
const view = (e: LoggedStockEvent) => ({ ...eventBody(e), cursor: e.cursor });

function cursorParam(text: string | undefined, name: string): EventCursor | undefined {
  if (text === undefined) return undefined;
  try {
    return parseCursor(text);
  } catch (err) {
    throw badRequest(`${name}: ${(err as Error).message}`);
  }
}


/**
 * Stock events for downstream teams, role reader: `GET /v1/stock-events` (a page of the log after a
 * cursor), `GET /v1/stock-events/stream` (server-sent events, resumable with Last-Event-ID); and the
 * low-stock thresholds, `GET|PUT|DELETE /v1/stock-thresholds` (changes: role operator).
 */
export function registerStockEventRoutes(app: FastifyInstance, pool: pg.Pool, hub: StockEventLogHub, apiMetrics: ApiMetrics): void {
  app.get<{ Querystring: FilterQuery & { after?: string; limit: number } }>('/v1/stock-events', {
    config: { role: 'reader' },
    schema: {
      summary: 'Stock events (sold out, back in stock, low stock) after a position in the log',
      description: 'In log order; at least once across pages (deduplicate by `id`, which a replay keeps). Page with `after` = the answer\'s `next`. Without `after`, from the oldest event kept (CELLAR_HISTORY_RETENTION_DAYS). `next` is also where to follow from when the page is not full.',
      tags: ['events'],
      querystring: { type: 'object', additionalProperties: false, properties: { ...FILTER_PROPS, after: CURSOR, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } },
      response: { 200: ANY_OBJECT, ...errorResponses(400, 503) },
    },
  }, async (req) => {
    const f = filterOf(req.query);
    let at = cursorParam(req.query.after, 'after') ?? { xid: '0', seq: '-1' };
    const events: LoggedStockEvent[] = [];
    // Filtered-out events still move the position, so a page reads on until it is full or the log ends.
    for (let reads = 0; events.length < req.query.limit && reads < 20; reads++) {
      const page = await readEventsAfter(pool, at, 1000);
      for (const e of page.events) {
        if (events.length === req.query.limit) break;
        at = parseCursor(e.cursor);
        if (matchesFilter(e, f)) events.push(e);
      }
      if (page.events.length < 1000 || events.length === req.query.limit) {
        if (page.events.length < 1000 && events.length < req.query.limit) at = page.cursor;
        break;
      }
    }
    return { events: events.map(view), next: `${at.xid}.${at.seq}` };
  });

  app.get<{ Querystring: FilterQuery & { after?: string }; Headers: { 'last-event-id'?: string } }>('/v1/stock-events/stream', {
    config: { role: 'reader' },
    schema: {
      summary: 'Server-sent stock events, filtered, resumable with Last-Event-ID',
      description: 'Content type `text/event-stream`. Each event is `event: <type>` (sold_out, back_in_stock, low_stock), `id: <cursor>`, data the event (with its deterministic `id`). Reconnecting with `Last-Event-ID` (or `?after=`) sends every event after that position still kept, then live ones, without a hole; without either, live events from the connection on. A comment line every 15 s.',
      tags: ['events'],
      querystring: { type: 'object', additionalProperties: false, properties: { ...FILTER_PROPS, after: CURSOR } },
      headers: { type: 'object', properties: { 'last-event-id': { type: 'string', description: 'Resume after this cursor.' } } },
      response: { 200: { description: 'An event stream (text/event-stream).', type: 'string' }, ...errorResponses(400, 503) },
    },
  }, async (req: FastifyRequest<{ Querystring: FilterQuery & { after?: string }; Headers: { 'last-event-id'?: string } }>, reply: FastifyReply) => {
    const f = filterOf(req.query);
    const resume = cursorParam(req.headers['last-event-id'] ?? req.query.after, req.headers['last-event-id'] ? 'Last-Event-ID' : 'after');
    await hub.ready();
    let sentUpTo: EventCursor = resume ?? hub.last;
    const stream = openEventStream(reply, apiMetrics, () => `: ping ${sentUpTo.xid}.${sentUpTo.seq}`);
    const raw = stream.raw;
    let replaying = resume !== undefined;
    const queued: LoggedStockEvent[] = [];
    let closed = false;
    const send = (e: LoggedStockEvent) => {
      const at = parseCursor(e.cursor);
      if (closed || compareCursors(at, sentUpTo) <= 0) return;
      sentUpTo = at;
      if (matchesFilter(e, f)) raw.write(`id: ${e.cursor}\nevent: ${e.type}\ndata: ${JSON.stringify(view(e))}\n\n`);
      if (raw.writableLength > MAX_BUFFERED_BYTES) close();
    };
    stream.onClose(hub.subscribe((e) => (replaying ? queued.push(e) : send(e))));
    stream.onClose(() => (closed = true));
    const close = stream.close;
    if (resume) {
      const upTo = hub.last;
      try {
        for (const e of await hub.since(resume, upTo)) send(e);
      } catch (err) {
        req.log.warn({ err: (err as Error).message }, 'replaying stock events failed');
        raw.write(`event: reset\ndata: ${JSON.stringify({ reason: 'the event log could not be read; reconnect with the same Last-Event-ID' })}\n\n`);
        close();
        return;
      }
      if (compareCursors(sentUpTo, upTo) < 0) sentUpTo = upTo;
      replaying = false;
      for (const e of queued.splice(0)) send(e);
    }
  });

  app.get('/v1/stock-thresholds', {
    config: { role: 'reader' },
    schema: { summary: 'Low-stock thresholds', description: 'Each rule: region (`*`: any), SKU glob (`*`: any run of characters), threshold in bottles. The most specific rule of a key applies: an exact region before `*`, then the longest pattern.', tags: ['events'], response: { 200: ANY_OBJECT, ...errorResponses(503) } },
  }, async () => ({ thresholds: await listThresholds(pool) }));

  app.put<{ Body: { region?: string; skuPattern: string; threshold: number } }>('/v1/stock-thresholds', {
    config: { role: 'operator' },
    schema: {
      summary: 'Set a low-stock threshold',
      description: 'Creates or replaces the rule for (region, skuPattern). A total crossing from above it to at most it (still above zero) is a `low_stock` event. Applies to changes written from the writers\' next refresh (within 5 s); events already written stay as they were.',
      tags: ['events'],
      body: { type: 'object', additionalProperties: false, required: ['skuPattern', 'threshold'], properties: { region: { type: 'string', description: 'A region, or `*` (default) for every region.' }, skuPattern: { type: 'string' }, threshold: { type: 'integer' } } },
      response: { 200: ANY_OBJECT, 201: ANY_OBJECT, ...errorResponses(400, 503) },
    },
  }, async (req, reply) => {
    let rule;
    try {
      rule = checkThresholdRule(req.body);
    } catch (err) {
      throw badRequest((err as Error).message);
    }
    const created = await setThreshold(pool, rule);
    reply.code(created ? 201 : 200);
    return { ...rule, created };
  });

  app.delete<{ Querystring: { region?: string; skuPattern: string } }>('/v1/stock-thresholds', {
    config: { role: 'operator' },
    schema: {
      summary: 'Remove a low-stock threshold', tags: ['events'],
      querystring: { type: 'object', additionalProperties: false, required: ['skuPattern'], properties: { region: { type: 'string', default: '*' }, skuPattern: { type: 'string' } } },
      response: { 200: ANY_OBJECT, ...errorResponses(404, 503) },
    },
  }, async (req) => {
    const region = req.query.region ?? '*';
    if (!(await removeThreshold(pool, region, req.query.skuPattern))) throw new ApiError(404, 'not_found', `no low-stock threshold for region ${region} and SKU pattern ${req.query.skuPattern}`);
    return { removed: { region, skuPattern: req.query.skuPattern } };
  });
}
