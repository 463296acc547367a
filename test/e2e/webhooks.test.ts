import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { createPgPool, inTransaction } from '../../pipelines/core/pg.js';
import { stockEventId, type StockEventType, type StockLevelEvent } from '../../pipelines/events/derive.js';
import { saveEvents } from '../../pipelines/events/log.js';
import {
  createWebhook, getWebhook, listDeliveries, redeliver, startWebhookDispatcher, verifyWebhookSignature,
  type WebhookDispatcherSettings,
} from '../../pipelines/webhooks/index.js';
import { memoryLogger } from '../api/api-support.js';
import { eventually, freshDatabase, rid } from '../support/services.js';

/**
 * Webhooks end to end over a real Postgres and real HTTP receivers (node:http): events written by
 * concurrent transactions while two dispatchers run against the same database reach a receiver that
 * fails, then hangs past the timeout, then recovers: every matching event arrives, signed, none lost,
 * repeated only with the same id. An endpoint that is down ends with dead deliveries, sent again by a
 * redelivery once it is back; a hanging endpoint does not delay another subscription.
 */

/** One request a receiver got. */
interface Hit {
  path: string;
  id: string;
  attempt: number;
  body: string;
  valid: boolean;
  /** What the receiver did: answered 2xx, answered 500, or held the request past the timeout. */
  mode: Mode;
  headers: IncomingMessage['headers'];
  at: number;
}
type Mode = 'ok' | 'fail' | 'hang';

/** A local endpoint; `mode(path)` decides each answer; `secrets` verify each signature. */
async function startReceiver(mode: (path: string) => Mode, secrets: Map<string, string>, port = 0, hangMs = 1_500): Promise<{ url: string; port: number; hits: Hit[]; close(): Promise<void> }> {
  const hits: Hit[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const path = req.url ?? '/';
      const m = mode(path);
      let id = '';
      try {
        id = (JSON.parse(raw) as { id: string }).id;
      } catch {
        /* recorded as is */
      }
      hits.push({ path, id, attempt: Number(req.headers['cellar-delivery-attempt']), body: raw, valid: verifyWebhookSignature(secrets.get(path) ?? '', req.headers['cellar-signature'], raw), mode: m, headers: req.headers, at: Date.now() });
      if (m === 'ok') res.writeHead(204).end();
      else if (m === 'fail') res.writeHead(500, { 'content-type': 'text/plain' }).end('receiver is failing on purpose');
      else setTimeout(() => res.writeHead(200).end(), hangMs).unref();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const p = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${p}`,
    port: p,
    hits,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

/** A port nothing listens on (taken from the system, then released). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

let version = 0;
function event(region: string, sku: string, type: StockEventType): StockLevelEvent {
  const v = ++version;
  const [before, after, threshold] = type === 'sold_out' ? [3, 0, null] : type === 'back_in_stock' ? [0, 6, null] : [12, 4, 5];
  return { id: stockEventId(region, sku, v, type), type, region, sku, version: v, before, after, threshold, sourceTsMs: 1_790_000_000_000 + v };
}

/** The body a delivery of `e` must carry (createdAt is the log's). */
const expectedBody = (e: StockLevelEvent) => ({ id: e.id, type: e.type, region: e.region, sku: e.sku, version: e.version, before: e.before, after: e.after, threshold: e.threshold, sourceTs: new Date(e.sourceTsMs).toISOString() });

describe('webhooks', () => {
  let db: { url: string; pool: pg.Pool };
  let producer: pg.Pool;
  const pools: pg.Pool[] = [];
  const logs = memoryLogger();

  /** Two dispatchers on their own pools, as two processes would run them; `attempts()`: the requests each made. */
  function dispatchers(settings: WebhookDispatcherSettings): { stop(): Promise<void>; attempts(): Promise<number[]> } {
    const started = [0, 1].map(() => {
      const pool = createPgPool(db.url, { max: 4 });
      pools.push(pool);
      const metrics = new CellarMetrics(false);
      return { metrics, dispatcher: startWebhookDispatcher({ pool, log: logs.log, metrics, pollMs: 50, backoffBaseMs: 100, backoffMaxMs: 500, ...settings }) };
    });
    return {
      stop: async () => void (await Promise.all(started.map((d) => d.dispatcher.stop()))),
      attempts: () => Promise.all(started.map((d) => d.metrics.value('cellar_webhook_attempts_total'))),
    };
  }

  /** Writes `batches`, each in its own transaction, all at once; each transaction writes in two steps with a pause between. */
  async function produce(batches: StockLevelEvent[][]): Promise<void> {
    await Promise.all(batches.map((batch) => inTransaction(producer, 'writing test events', async (tx) => {
      const half = Math.ceil(batch.length / 2);
      await saveEvents(tx, batch.slice(0, half));
      await tx.query('SELECT pg_sleep($1)', [Math.random() * 0.15]);
      await saveEvents(tx, batch.slice(half));
    })));
  }

  beforeAll(async () => {
    db = await freshDatabase();
    producer = createPgPool(db.url, { max: 8 });
  });
  afterAll(async () => {
    await Promise.all([...pools, producer, db?.pool].filter(Boolean).map((p) => p!.end().catch(() => undefined)));
  });

  it('a receiver that fails, times out and recovers gets every matching event, each signed, none lost, repeated only with the same id', async () => {
    const region = rid('wh');
    const secrets = new Map<string, string>();
    let t0 = 0;
    // 500s for 1.5 s from the first request, then 1.5 s of answers held past the timeout, then 2xx.
    const receiver = await startReceiver(() => {
      t0 ||= Date.now();
      const t = Date.now() - t0;
      return t < 1_500 ? 'fail' : t < 3_000 ? 'hang' : 'ok';
    }, secrets);
    const { webhook, secret } = await createWebhook(db.pool, { url: `${receiver.url}/flaky`, filter: { region, types: ['sold_out', 'back_in_stock'], skuPrefix: 'wine-' } });
    secrets.set('/flaky', secret);
    const running = dispatchers({ timeoutMs: 400, maxAttempts: 100, maxInFlightPerSubscription: 4 });
    const wanted: StockLevelEvent[] = [];
    try {
      // 8 rounds of 4 concurrent transactions over ~3.5 s: the receiver's three phases all see traffic.
      for (let round = 0; round < 8; round++) {
        const batches = [0, 1, 2, 3].map((tx) => {
          const b = [
            event(region, `wine-${round}-${tx}-a`, 'sold_out'), event(region, `wine-${round}-${tx}-b`, 'back_in_stock'),
            event(region, `wine-${round}-${tx}-c`, 'low_stock'), event(region, `beer-${round}-${tx}`, 'sold_out'), event(`${region}x`, `wine-${round}-${tx}`, 'sold_out'),
          ];
          wanted.push(b[0]!, b[1]!);
          return b;
        });
        await produce(batches);
        await new Promise((r) => setTimeout(r, 400));
      }
      const want = new Map(wanted.map((e) => [e.id, e]));
      const acked = () => new Set(receiver.hits.filter((h) => h.mode === 'ok').map((h) => h.id));
      const converged = await eventually(async () => {
        const { deliveries } = await listDeliveries(db.pool, webhook.id, { limit: 1000 });
        return [...want.keys()].every((id) => acked().has(id)) && deliveries.length === want.size && deliveries.every((d) => d.status === 'delivered');
      }, 30_000, 200);
      const missing = [...want.keys()].filter((id) => !acked().has(id));
      expect(converged, `${missing.length} of ${want.size} events never acknowledged by the receiver (${receiver.hits.length} requests seen)`).toBe(true);

      const hits = receiver.hits;
      // The receiver went through its three phases.
      expect(hits.filter((h) => h.mode === 'fail').length, 'requests answered 500').toBeGreaterThan(0);
      expect(hits.filter((h) => h.mode === 'hang').length, 'requests held past the timeout').toBeGreaterThan(0);
      expect(hits.some((h) => h.attempt > 1), 'some deliveries needed several attempts').toBe(true);
      // Every request: signed with the subscription's secret, one of the wanted events, its headers as documented.
      expect(hits.filter((h) => !h.valid).map((h) => h.id), 'requests whose signature did not verify').toEqual([]);
      expect(hits.filter((h) => !want.has(h.id)).map((h) => h.body), 'events outside the filter').toEqual([]);
      for (const h of hits) {
        expect(h.headers['cellar-event-id']).toBe(h.id);
        expect(h.headers['content-type']).toBe('application/json');
        expect(h.headers['user-agent']).toBe('cellar-webhooks');
        expect(JSON.parse(h.body)).toEqual({ ...expectedBody(want.get(h.id)!), createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/) });
      }
      // Duplicates only with the same id and the same event; each attempt of an event sent once (two dispatchers, no double claim).
      const byId = new Map<string, Hit[]>();
      for (const h of hits) byId.set(h.id, [...(byId.get(h.id) ?? []), h]);
      for (const [id, hs] of byId) {
        expect(new Set(hs.map((h) => JSON.stringify(JSON.parse(h.body)))).size, `bodies of ${id}`).toBe(1);
        expect(new Set(hs.map((h) => h.attempt)).size, `attempt numbers of ${id}: ${hs.map((h) => h.attempt).join(',')}`).toBe(hs.length);
      }
      expect(byId.size).toBe(want.size);
      // Both dispatchers sent some of them.
      const [a, b] = await running.attempts();
      expect(a! > 0 && b! > 0, `requests per dispatcher: ${a}, ${b}`).toBe(true);
      const summary = await getWebhook(db.pool, webhook.id);
      expect(summary?.deliveries).toEqual({ pending: 0, delivered: want.size, dead: 0 });
      expect(summary?.lastDelivery).toMatchObject({ status: 'delivered', httpStatus: 204, error: null });
      expect(logs.lines.join('\n')).not.toContain(secret);
    } finally {
      await running.stop();
      await receiver.close();
    }
  });

  it('an endpoint that is down ends with dead deliveries after max attempts; a redelivery sends them once it is back', async () => {
    const region = rid('wh');
    const port = await freePort();
    const { webhook, secret } = await createWebhook(db.pool, { url: `http://127.0.0.1:${port}/down`, filter: { region }, maxAttempts: 3 });
    const running = dispatchers({ timeoutMs: 400, maxAttempts: 8 });
    let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;
    try {
      const events = Array.from({ length: 6 }, (_, i) => event(region, `wine-down-${i}`, i % 2 ? 'sold_out' : 'low_stock'));
      await produce([events.slice(0, 3), events.slice(3)]);
      const dead = await eventually(async () => (await getWebhook(db.pool, webhook.id))?.deliveries.dead === events.length, 20_000, 100);
      expect(dead, `deliveries dead: ${JSON.stringify((await getWebhook(db.pool, webhook.id))?.deliveries)}`).toBe(true);
      const { deliveries } = await listDeliveries(db.pool, webhook.id, { status: 'dead' });
      expect(deliveries.map((d) => d.eventId).sort()).toEqual(events.map((e) => e.id).sort());
      for (const d of deliveries) {
        expect(d).toMatchObject({ status: 'dead', attempts: 3, lastStatus: null, nextAttemptAt: null });
        expect(d.lastError).toMatch(/connection refused \(ECONNREFUSED\) at 127\.0\.0\.1:\d+/);
      }
      const summary = await getWebhook(db.pool, webhook.id);
      expect(summary?.lastDelivery).toMatchObject({ status: 'dead', attempts: 3, httpStatus: null });
      expect(JSON.stringify([summary, deliveries])).not.toContain(secret);

      // Back up: dead stays dead until redelivered.
      const secrets = new Map([['/down', secret]]);
      receiver = await startReceiver(() => 'ok', secrets, port);
      await new Promise((r) => setTimeout(r, 500));
      expect(receiver.hits).toEqual([]);
      expect((await redeliver(db.pool, webhook.id)).sort()).toEqual(events.map((e) => e.id).sort());
      const sent = await eventually(async () => (await getWebhook(db.pool, webhook.id))?.deliveries.delivered === events.length, 10_000, 100);
      expect(sent, `after redelivery: ${JSON.stringify((await getWebhook(db.pool, webhook.id))?.deliveries)}`).toBe(true);
      expect(receiver.hits.map((h) => h.id).sort()).toEqual(events.map((e) => e.id).sort());
      expect(receiver.hits.every((h) => h.valid && h.attempt === 1)).toBe(true);

      // One event again, on request: the same id.
      expect(await redeliver(db.pool, webhook.id, { eventId: events[0]!.id })).toEqual([events[0]!.id]);
      expect(await eventually(async () => receiver!.hits.length === events.length + 1, 10_000, 100), 'the one redelivered event arrived').toBe(true);
      expect(receiver.hits.at(-1)).toMatchObject({ id: events[0]!.id, valid: true });
      expect(await redeliver(db.pool, webhook.id)).toEqual([]);
    } finally {
      await running.stop();
      await receiver?.close();
    }
  });

  it('a hanging endpoint does not delay another subscription\'s deliveries', async () => {
    const region = rid('wh');
    const secrets = new Map<string, string>();
    // The slow endpoint never answers within the timeout (15 s): its requests are all still hanging when the fast one is done.
    const receiver = await startReceiver((path) => (path === '/slow' ? 'hang' : 'ok'), secrets, 0, 60_000);
    const slow = await createWebhook(db.pool, { url: `${receiver.url}/slow`, filter: { region } });
    const fast = await createWebhook(db.pool, { url: `${receiver.url}/fast`, filter: { region } });
    secrets.set('/slow', slow.secret).set('/fast', fast.secret);
    const running = dispatchers({ timeoutMs: 15_000, maxInFlight: 8, maxInFlightPerSubscription: 2, stopTimeoutMs: 200 });
    const t = Date.now();
    try {
      const events = Array.from({ length: 40 }, (_, i) => event(region, `wine-slow-${i}`, 'sold_out'));
      // Let the slow endpoint take every slot it may have before the rest of the events come.
      await produce([events.slice(0, 20)]);
      expect(await eventually(async () => receiver.hits.filter((h) => h.path === '/slow').length >= 4, 10_000, 20), 'the slow endpoint holds its requests').toBe(true);
      await produce([events.slice(20)]);
      const fastIds = () => new Set(receiver.hits.filter((h) => h.path === '/fast').map((h) => h.id));
      const fastDone = await eventually(async () => fastIds().size === events.length, 12_000, 20);
      expect(fastDone, `the fast subscription got ${fastIds().size} of ${events.length} events while the slow endpoint hung`).toBe(true);
      // Done before any request to the slow endpoint ended: nothing waited for it.
      expect(Date.now() - t).toBeLessThan(15_000);
      const { deliveries } = await listDeliveries(db.pool, slow.webhook.id, { limit: 100 });
      expect(deliveries.filter((d) => d.status !== 'pending' || d.lastError !== null || d.attempts > 1)).toEqual([]);
      // The slow endpoint has at most its share of requests in flight: 2 per dispatcher.
      expect(receiver.hits.filter((h) => h.path === '/slow').length).toBeLessThanOrEqual(4);
      expect(receiver.hits.every((h) => h.valid)).toBe(true);
    } finally {
      const stopping = Date.now();
      await running.stop();
      // stop() interrupts what still hangs after its bound, handing the deliveries back.
      expect(Date.now() - stopping).toBeLessThan(5_000);
      await receiver.close();
    }
    const { deliveries } = await listDeliveries(db.pool, slow.webhook.id, { limit: 100 });
    expect(deliveries.filter((d) => d.status !== 'pending' || d.attempts !== 0)).toEqual([]);
  });
});
