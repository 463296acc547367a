import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from '../core/logger.js';
import { STOCK_EVENTS_MAXLEN, stockEventsKey } from '../../sinks/redis/sink.js';
import type { ApiMetrics } from './api-metrics.js';
import { errorResponses, REGION, SKU } from './schemas.js';

/** One entry of the change stream: a region's applied changes of one sink batch. */
export interface StockEvent {
  /** Stream entry id (`<ms>-<seq>`), increasing; the SSE event id. */
  id: string;
  region: string;
  updatedTsMs: number;
  /** `bottleSizeMl` is null when the SKU's size is unknown (the stream entry leaves it out). */
  changes: Array<{ sku: string; bottles: number; version: number; bottleSizeMl: number | null }>;
}

/** Compares stream ids numerically (`ms-seq`). */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}

const ID_RE = /^\d{1,20}-\d{1,20}$/;

function toEvent(id: string, fields: string[]): StockEvent | undefined {
  const i = fields.indexOf('data');
  if (i < 0 || i + 1 >= fields.length) return undefined;
  try {
    const d = JSON.parse(fields[i + 1]!) as { region: string; updatedTsMs: number; changes: unknown };
    // cjson encodes an empty array as {}: normalize.
    const changes = Array.isArray(d.changes) ? (d.changes as Array<{ sku: string; bottles: number; version: number; bottleSizeMl?: number }>) : [];
    return {
      id,
      region: d.region,
      updatedTsMs: d.updatedTsMs,
      changes: changes.map((c) => ({ sku: c.sku, bottles: c.bottles, version: c.version, bottleSizeMl: c.bottleSizeMl ?? null })),
    };
  } catch {
    return undefined;
  }
}

/**
 * Follows the Redis change stream (`<prefix>:stock-events`, written by the Redis sink in the same script
 * as the totals) with one blocking XREAD per process, and hands each entry to every subscriber. Started
 * on first use; the position is the last id read, so a Redis hiccup loses nothing still in the stream.
 */
export class StockEventHub {
  private readonly subs = new Set<(e: StockEvent) => void>();
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Id of the newest entry handed to subscribers. */
  last = '0-0';
  /**
   * True while every change written to the stream reaches subscribers without a hole: from the first read
   * of the stream's end until the reading connection drops or a read fails. `generation` counts the holes,
   * so state kept from events (the API's key cache) can tell it may have missed one.
   */
  live = false;
  generation = 0;

  constructor(
    private readonly reader: Redis,
    private readonly history: Redis,
    private readonly log: Logger,
    private readonly keyPrefix = 'cellar',
  ) {
    reader.on('close', () => this.hole());
  }

  private hole(): void {
    this.live = false;
    this.generation++;
  }

  get key(): string {
    return stockEventsKey(this.keyPrefix);
  }

  /** Calls `fn` with every new entry until the returned function is called. */
  subscribe(fn: (e: StockEvent) => void): () => void {
    this.subs.add(fn);
    this.running ??= this.run();
    return () => this.subs.delete(fn);
  }

  /** Resolves once the hub knows the stream's current end (so replay and live delivery meet exactly). */
  async ready(): Promise<void> {
    this.running ??= this.run();
    while (!this.started && !this.stopped) await new Promise((r) => setTimeout(r, 5));
  }
  private started = false;

  private async run(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      try {
        if (!this.started) {
          const tail = (await this.history.xrevrange(this.key, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
          this.last = tail[0]?.[0] ?? '0-0';
          this.started = true;
          this.live = true;
        }
        const gen = this.generation;
        const res = (await this.reader.xread('COUNT', 1000, 'BLOCK', 5_000, 'STREAMS', this.key, this.last)) as Array<[string, Array<[string, string[]]>]> | null;
        // Entries after `last` are all here, whatever happened to the connection meanwhile.
        if (gen === this.generation) this.live = true;
        for (const [, entries] of res ?? []) {
          for (const [id, fields] of entries) {
            this.last = id;
            const e = toEvent(id, fields);
            if (e) for (const fn of this.subs) fn(e);
          }
        }
      } catch (err) {
        this.hole();
        if (this.stopped) return;
        this.log.warn({ err: (err as Error).message }, 'reading the stock change stream failed; retrying');
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }

  /**
   * The newest `count` entries up to `upTo` (oldest first), for a client asking for a backlog
   * (`?backlog=`): what happened just before it connected.
   */
  async latest(count: number, upTo: string): Promise<StockEvent[]> {
    if (count <= 0 || compareIds(upTo, '0-0') === 0) return [];
    const chunk = (await this.history.xrevrange(this.key, upTo, '-', 'COUNT', count)) as Array<[string, string[]]>;
    const events: StockEvent[] = [];
    for (let i = chunk.length - 1; i >= 0; i--) {
      const e = toEvent(chunk[i]![0], chunk[i]![1]);
      if (e) events.push(e);
    }
    return events;
  }

  /**
   * Entries after `afterId` up to the hub's position, for a client resuming with Last-Event-ID. `gap` is
   * true when entries after `afterId` may be gone: the stream was trimmed past it (it keeps about
   * {@link STOCK_EVENTS_MAXLEN} entries) or was lost with Redis' data.
   */
  async since(afterId: string, upTo: string): Promise<{ events: StockEvent[]; gap: boolean }> {
    const first = (await this.history.xrange(this.key, '-', '+', 'COUNT', 1)) as Array<[string, string[]]>;
    const oldest = first[0]?.[0];
    if (oldest === undefined) return { events: [], gap: afterId !== '0-0' && compareIds(afterId, upTo) !== 0 };
    const gap = compareIds(oldest, afterId) > 0 || compareIds(afterId, upTo) > 0;
    const events: StockEvent[] = [];
    let from = `(${afterId}`;
    for (;;) {
      if (compareIds(upTo, '0-0') === 0) break;
      const chunk = (await this.history.xrange(this.key, from, upTo, 'COUNT', 1000)) as Array<[string, string[]]>;
      for (const [id, fields] of chunk) {
        const e = toEvent(id, fields);
        if (e) events.push(e);
      }
      if (chunk.length < 1000) break;
      from = `(${chunk[chunk.length - 1]![0]}`;
    }
    return { events, gap };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.reader.disconnect();
    await this.running?.catch(() => undefined);
  }
}

interface EventsQuery {
  region?: string;
  sku?: string;
  skuPrefix?: string;
  /** The newest this many stream entries first (without Last-Event-ID). */
  backlog?: number;
}

/** The most a client may ask for with `?backlog=`. */
export const MAX_BACKLOG = 1_000;

/** Keeps a subscriber's changes that pass its filters; undefined when none do. */
function filtered(e: StockEvent, q: EventsQuery): StockEvent | undefined {
  if (q.region && e.region !== q.region) return undefined;
  if (!q.sku && !q.skuPrefix) return e;
  const changes = e.changes.filter((c) => (!q.sku || c.sku === q.sku) && (!q.skuPrefix || c.sku.startsWith(q.skuPrefix)));
  return changes.length ? { ...e, changes } : undefined;
}

/**
 * Opens a server-sent event stream on `reply` (hijacked from Fastify): the headers, a reconnect hint of 1 s,
 * a comment line from `ping()` every 15 s, the SSE client gauge. `close()` ends it once (also when the
 * client goes) and runs what `onClose` registered.
 */
export function openEventStream(reply: FastifyReply, apiMetrics: ApiMetrics, ping: () => string): { raw: FastifyReply['raw']; close: () => void; onClose: (fn: () => void) => void } {
  const raw = reply.raw;
  reply.hijack();
  raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  raw.write('retry: 1000\n: connected\n\n');
  apiMetrics.sseClients.inc();
  const cleanups: Array<() => void> = [];
  const heartbeat = setInterval(() => raw.write(`${ping()}\n\n`), HEARTBEAT_MS);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    for (const fn of cleanups) fn();
    apiMetrics.sseClients.dec();
    raw.end();
  };
  raw.on('close', close);
  return { raw, close, onClose: (fn) => void cleanups.push(fn) };
}

/** A client whose unsent output exceeds this is disconnected; it resumes with Last-Event-ID. */
export const MAX_BUFFERED_BYTES = 4 << 20;
const HEARTBEAT_MS = 15_000;

/**
 * `GET /v1/events`: server-sent events of stock changes. Each event is one stream entry (a region's changes
 * from one sink batch), `event: stock`, `id: <entry id>`, data `{region, updatedTsMs, changes: [{sku,
 * bottles, version, bottleSizeMl}]}`, filtered by `region`, `sku` or `skuPrefix`. A client reconnecting with
 * `Last-Event-ID` first gets every entry after that id still in the stream (about 10,000 region batches),
 * then live ones; if entries may be missing it gets `event: reset` first and should reload the stock. A
 * client connecting without Last-Event-ID may ask for `?backlog=N` (up to {@link MAX_BACKLOG}): the newest N
 * stream entries (region writes) before it connected, filtered like live ones, then live ones, without a
 * hole or a repeat between the two (a dashboard shows the latest changes at once instead of an empty list).
 */
export function registerEventRoutes(app: FastifyInstance, hub: StockEventHub, apiMetrics: ApiMetrics, onRegion: (r: string) => void): void {
  hub.subscribe((e) => onRegion(e.region));
  app.get<{ Querystring: EventsQuery; Headers: { 'last-event-id'?: string } }>(
    '/v1/events',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'Server-sent events of stock changes, resumable with Last-Event-ID',
        description:
          'Content type `text/event-stream`. Each `stock` event carries one region\'s changes from one sink write as `{region, updatedTsMs, changes: [{sku, bottleSizeMl, bottles, version}]}` ' +
          '(a `StockEvent`); its `id` is the Redis stream entry id. ' +
          `Reconnect with \`Last-Event-ID\` to receive what was missed, within the last ~${STOCK_EVENTS_MAXLEN.toLocaleString('en-US')} region writes; ` +
          'older ids get `event: reset` (reload, then follow). Without `Last-Event-ID`, `backlog=N` first sends the newest N stream entries ' +
          '(region writes) before the connection, filtered like live ones, then follows. A comment line is sent every 15 s.',
        tags: ['stock'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            region: REGION,
            sku: SKU,
            skuPrefix: { ...SKU, description: 'Only SKUs starting with this.' },
            backlog: {
              type: 'integer',
              minimum: 0,
              maximum: MAX_BACKLOG,
              default: 0,
              description: `First send the newest this many stream entries (region writes, 0–${MAX_BACKLOG}) from before the connection, then live ones. Ignored with Last-Event-ID, which resumes instead.`,
            },
          },
        },
        headers: { type: 'object', properties: { 'last-event-id': { type: 'string', pattern: ID_RE.source, description: 'Resume after this event id.' } } },
        response: { 200: { description: 'An event stream (text/event-stream).', type: 'string' }, ...errorResponses(503) },
      },
    },
    async (req: FastifyRequest<{ Querystring: EventsQuery; Headers: { 'last-event-id'?: string } }>, reply: FastifyReply) => {
      const q = req.query;
      const resumeFrom = req.headers['last-event-id'];
      await hub.ready();
      const stream = openEventStream(reply, apiMetrics, () => ': ping');
      const raw = stream.raw;
      const backlog = resumeFrom === undefined ? (q.backlog ?? 0) : 0;
      let sentUpTo = resumeFrom ?? hub.last;
      let replaying = resumeFrom !== undefined || backlog > 0;
      const queued: StockEvent[] = [];
      let closed = false;
      const send = (e: StockEvent) => {
        if (closed || compareIds(e.id, sentUpTo) <= 0) return;
        sentUpTo = e.id;
        const f = filtered(e, q);
        if (f) raw.write(`id: ${e.id}\nevent: stock\ndata: ${JSON.stringify({ region: f.region, updatedTsMs: f.updatedTsMs, changes: f.changes })}\n\n`);
        else raw.write(`id: ${e.id}\n: filtered\n\n`); // advances the client's Last-Event-ID past entries it does not want
        if (raw.writableLength > MAX_BUFFERED_BYTES) close();
      };
      stream.onClose(hub.subscribe((e) => (replaying ? queued.push(e) : send(e))));
      stream.onClose(() => (closed = true));
      const close = stream.close;
      if (resumeFrom !== undefined) {
        // Entries up to `upTo` come from the stream's history, later ones from the queue (the hub sets its
        // position and notifies subscribers in one step, so the two meet without a hole).
        const upTo = hub.last;
        const reset = (reason: string) => {
          raw.write(`event: reset\ndata: ${JSON.stringify({ reason })}\n\n`);
          sentUpTo = upTo;
        };
        try {
          const { events, gap } = await hub.since(resumeFrom, upTo);
          if (gap) reset('events after the given Last-Event-ID are no longer kept; reload the stock and follow from here');
          else for (const e of events) send(e);
        } catch (err) {
          req.log.warn({ err: (err as Error).message }, 'replaying stock events failed');
          reset('the change history could not be read; reload the stock and follow from here');
        }
        replaying = false;
        for (const e of queued.splice(0)) send(e);
      } else if (backlog > 0) {
        // The newest entries up to `upTo` from the stream's history, later ones from the queue (as above).
        const upTo = hub.last;
        try {
          const events = await hub.latest(backlog, upTo);
          sentUpTo = '0-0';
          for (const e of events) send(e);
        } catch (err) {
          req.log.warn({ err: (err as Error).message }, 'reading the stock event backlog failed');
        }
        if (compareIds(sentUpTo, upTo) < 0) sentUpTo = upTo;
        replaying = false;
        for (const e of queued.splice(0)) send(e);
      }
    },
  );
}
