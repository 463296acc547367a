import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { Redis } from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase } from '../../infra/local/postgres.js';
import { freePort, stopChild } from '../../infra/local/process.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { keysByRole, call } from '../api/api-support.js';
import { migrate } from '../../pipelines/state/migrate.js';
import { cellarTopics } from '../../pipelines/kafka/topics.js';
import { createCodecs } from '../../schemas/registry.js';
import type { StockEventRecord } from '../../schemas/records.js';
import { addRow, eventDisagreements, historyDisagreements, storesConverged } from '../support/stores.js';
import type { Totals } from '../support/pipeline.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';
import { explainProcess } from '../support/embedded.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';
import { concurrentWriter } from '../support/writers.js';
import { collect, testConfig } from '../support/kafka.js';
import { followSse } from '../support/sse-client.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhookSignature } from '../../pipelines/webhooks/index.js';

/**
 * Stock events from `cellar run embedded --api` with a Postgres supplier: thresholds set through the API;
 * sold out, low stock and back in stock with their totals, in the log, on SSE (filtered, resumed with
 * Last-Event-ID across kills) and on the `stock-events` topic; after kill -9 during a stream of changes,
 * the log holds exactly the events the kept history implies, each once, and every follower got each.
 */
describe('stock events in the embedded runtime', () => {
  const R1 = rid('sw');
  const R2 = rid('se');
  const prefix = `${rid('ev')}.cellar`;
  let pool: pg.Pool;
  let redis: Redis;
  let supplier: pg.Client;
  let env: Record<string, string>;
  let proc: ChildProcess | undefined;
  let apiUrl = '';
  let keys: Awaited<ReturnType<typeof keysByRole>>;
  const logDir = artifactDir('stock-events-embedded');
  let runs = 0;
  let logFile = '';
  const start = () => (proc = spawnCellar(['run', 'embedded', '--api'], env, (logFile = join(logDir, `embedded-${++runs}.log`))));
  const truth = async (): Promise<Totals> => {
    const out: Totals = new Map();
    for (const r of (await supplier.query<{ sku: string; depot: string; qty: number }>('SELECT sku, depot, qty FROM public.stock')).rows) addRow(out, r.depot === 'd1' ? R1 : R2, r.sku, r.qty);
    return out;
  };
  const converged = async () => {
    const diff = await storesConverged(truth, pool, redis, [R1, R2]);
    return diff.length ? [...diff.slice(0, 10), explainProcess(proc, logFile)] : diff;
  };
  const logged = async (sku: string) => (await pool.query<{ type: string; before: string; after: string; threshold: string | null }>(
    'SELECT type, before, after, threshold FROM cellar.stock_events WHERE region = $1 AND sku = $2 ORDER BY version', [R1, sku])).rows.map((r) => `${r.type} ${r.before}→${r.after}${r.threshold ? `/${r.threshold}` : ''}`);

  beforeAll(async () => {
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    pool = createPgPool(cellarUrl, { max: 2 });
    await migrate(pool);
    keys = await keysByRole(pool, 'ev');
    redis = new Redis(services().redisUrl);
    supplier = (await stockSupplier()).client;
    const u = (supplier as unknown as { connectionParameters: { port: number; database: string } }).connectionParameters;
    const dir = supplierDir({ ev: postgresSupplierYaml(`postgres://postgres@127.0.0.1:${u.port}/${u.database}`, { id: 'ev', regions: { d1: R1, d2: R2 } }) });
    const port = await freePort();
    apiUrl = `http://127.0.0.1:${port}`;
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_SUPPLIERS_DIR: dir, CELLAR_API_PORT: String(port), CELLAR_TOPIC_PREFIX: prefix, CELLAR_STOCK_EVENTS_KAFKA: '1' });
  });

  afterAll(async () => {
    if (proc) await stopChild(proc, 'SIGTERM', 15_000);
    await supplier?.end();
    await pool?.end();
    redis?.disconnect();
  });

  it('derives sold out, low stock and back in stock with thresholds set through the API; SSE filters them', async () => {
    start();
    expect(await eventually(async () => (await call(`${apiUrl}/v1/stock-thresholds`, keys.reader)).status === 200, 60_000), explainProcess(proc, logFile)).toBe(true);
    expect((await call(`${apiUrl}/v1/stock-thresholds`, keys.reader, { method: 'PUT', body: { skuPattern: 'lo-*', threshold: 5 } })).status).toBe(403);
    const put = await call(`${apiUrl}/v1/stock-thresholds`, keys.operator, { method: 'PUT', body: { region: R1, skuPattern: 'lo-*', threshold: 5 } });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    const bad = await call(`${apiUrl}/v1/stock-thresholds`, keys.operator, { method: 'PUT', body: { skuPattern: '', threshold: -1 } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/skuPattern.*threshold/s);
    await new Promise((r) => setTimeout(r, 5_500)); // the writers read the rules every 5 s
    const soldOut = followSse(`${apiUrl}/v1/stock-events/stream?region=${R1}&type=sold_out`, keys.reader);
    await eventually(async () => soldOut.connections() > 0, 10_000);

    await supplier.query(`INSERT INTO public.stock VALUES (1, 'lo-a', 'd1', 8), (2, 'lo-a', 'd2', 8)`);
    await eventually(async () => (await logged('lo-a')).length === 1, 30_000);
    await supplier.query('UPDATE public.stock SET qty = 3 WHERE id = 1');
    await supplier.query('UPDATE public.stock SET qty = 0 WHERE id = 1');
    await supplier.query(`INSERT INTO public.stock VALUES (3, 'lo-a', 'd1', 2)`);
    expect(await converged()).toEqual([]);
    expect(await logged('lo-a')).toEqual(['back_in_stock 0→8', 'low_stock 8→3/5', 'sold_out 3→0', 'back_in_stock 0→2']);
    // The other region has no rule: only its first stock.
    expect((await pool.query('SELECT type FROM cellar.stock_events WHERE region = $1', [R2])).rows.map((r) => r.type)).toEqual(['back_in_stock']);
    expect(await eventually(async () => soldOut.messages.length === 1, 10_000), JSON.stringify(soldOut.messages)).toBe(true);
    await soldOut.stop();
    const e = JSON.parse(soldOut.messages[0]!.data) as Record<string, unknown>;
    expect(soldOut.messages[0]!.event).toBe('sold_out');
    expect(e).toMatchObject({ type: 'sold_out', region: R1, sku: 'lo-a', before: 3, after: 0, threshold: null });
    // The same event in the log listing, found by its deterministic id.
    const page = await call(`${apiUrl}/v1/stock-events?region=${R1}&type=sold_out`, keys.reader);
    expect(page.body.events.map((x: { id: string }) => x.id)).toEqual([e.id]);
  }, 120_000);

  it('after kill -9 during a stream of changes: exactly the events the history implies, each once, on SSE and the topic', async () => {
    // A webhook receiver that fails a third of the requests, subscribed through the API to R1's events.
    const received: Array<{ id: string; body: string; valid: boolean }> = [];
    let secret = '';
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        if (Math.random() < 1 / 3) return void res.writeHead(500).end('failing on purpose');
        received.push({ id: (JSON.parse(body) as { id: string }).id, body, valid: verifyWebhookSignature(secret, req.headers['cellar-signature'], body) });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    const hook = await call(`${apiUrl}/v1/webhooks`, keys.admin, { method: 'POST', body: { url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`, filter: { region: R1 } } });
    expect(hook.status, JSON.stringify(hook.body)).toBe(201);
    secret = hook.body.secret;
    const subscribedAt = new Date();
    const all = followSse(`${apiUrl}/v1/stock-events/stream?after=0.-1`, keys.reader);
    const eu = followSse(`${apiUrl}/v1/stock-events/stream?region=${R1}&type=low_stock,sold_out&after=0.-1`, keys.reader);
    await eventually(async () => all.connections() > 0 && eu.connections() > 0, 10_000);
    const writer = concurrentWriter(supplier, 'public.stock', 1_000);
    // Few SKUs and small quantities: totals cross zero and the rule's line often.
    await supplier.query(`INSERT INTO public.stock SELECT g, 'lo-' || (g % 7), 'd' || (1 + g % 2), g % 4 FROM generate_series(100, 400) g`);
    for (let k = 0; k < 2; k++) {
      await supplier.query(`UPDATE public.stock SET qty = (qty + 3 * id + ${k}) % 6 WHERE id % 3 = ${k}`);
      await supplier.query(`DELETE FROM public.stock WHERE id BETWEEN ${100 + k * 40} AND ${110 + k * 40}`);
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
      await stopChild(proc!, 'SIGKILL');
      start();
    }
    await writer.stop();
    expect(await converged()).toEqual([]);
    expect(await historyDisagreements(pool, [R1, R2])).toEqual([]);
    expect(await eventDisagreements(pool, [R1, R2])).toEqual([]);

    const table = new Map((await pool.query<{ id: string; type: string; region: string }>('SELECT id, type, region FROM cellar.stock_events WHERE region = ANY($1)', [[R1, R2]])).rows.map((r) => [r.id, r]));
    const ids = (msgs: Array<{ data: string }>) => msgs.map((m) => (JSON.parse(m.data) as { id: string }).id);
    // SSE: every event once, across the two restarts (each reconnection resumed with Last-Event-ID).
    expect(await eventually(async () => all.connections() >= 2 && eu.connections() >= 2 && new Set(ids(all.messages)).size >= table.size, 60_000),
      `${all.messages.length} of ${table.size} events on SSE over ${all.connections()} connections; missing: ${JSON.stringify((await pool.query('SELECT xid::text, seq, created_at FROM cellar.stock_events WHERE NOT (id = ANY($1)) ORDER BY xid, seq', [ids(all.messages)])).rows)}; received: ${all.messages.map((m) => m.id).join(' ')}; ${explainProcess(proc, logFile)}`).toBe(true);
    await new Promise((r) => setTimeout(r, 1_000)); // a duplicate would come now
    await all.stop();
    await eu.stop();
    const seen = ids(all.messages).filter((id) => table.has(id));
    expect(seen.length, 'an event sent twice on SSE').toBe(new Set(seen).size);
    expect(new Set(seen)).toEqual(new Set(table.keys()));
    const wanted = [...table.values()].filter((r) => r.region === R1 && (r.type === 'low_stock' || r.type === 'sold_out')).map((r) => r.id);
    expect(wanted.length).toBeGreaterThan(0);
    expect(new Set(ids(eu.messages))).toEqual(new Set(wanted));

    // The webhook: every R1 event logged after the subscription, signed; repeats only with the same id and body.
    const hooked = new Set((await pool.query<{ id: string }>('SELECT id FROM cellar.stock_events WHERE region = $1 AND created_at > $2', [R1, subscribedAt])).rows.map((r) => r.id));
    expect(hooked.size).toBeGreaterThan(0);
    expect(await eventually(async () => [...hooked].every((id) => received.some((r) => r.id === id)), 60_000),
      `${new Set(received.map((r) => r.id)).size} of ${hooked.size} events reached the webhook; ${JSON.stringify((await call(`${apiUrl}/v1/webhooks/${hook.body.id}/deliveries?limit=5`, keys.admin)).body).slice(0, 800)}`).toBe(true);
    receiver.close();
    expect(received.filter((r) => !r.valid)).toEqual([]);
    const bodies = new Map<string, string>();
    for (const r of received) {
      expect(bodies.get(r.id) ?? r.body, `event ${r.id} delivered twice with different bodies`).toBe(r.body);
      bodies.set(r.id, r.body);
    }
    expect([...bodies.keys()].filter((id) => !table.has(id) || table.get(id)!.region !== R1)).toEqual([]);

    // The topic: every event of the log, duplicates (a publish cut by a kill) only with the same id and content.
    const codecs = createCodecs(services().schemaRegistryUrl);
    const topic = await collect<StockEventRecord>(testConfig({ CELLAR_TOPIC_PREFIX: prefix }), cellarTopics({ topicPrefix: prefix }).stockEvents, (v) => codecs.stockEvent.decode(v));
    try {
      const onTopic = () => topic.out.filter((e) => table.has(e.id));
      expect(await eventually(async () => new Set(onTopic().map((e) => e.id)).size === table.size, 60_000), `${new Set(onTopic().map((e) => e.id)).size} of ${table.size} events on the topic; ${explainProcess(proc, logFile)}`).toBe(true);
      const byId = new Map<string, string>();
      for (const e of onTopic()) {
        const text = JSON.stringify(e);
        expect(byId.get(e.id) ?? text, `event ${e.id} published twice with different content`).toBe(text);
        byId.set(e.id, text);
      }
    } finally {
      await topic.stop();
    }
  }, 300_000);
});
