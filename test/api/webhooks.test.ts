import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stockEventId, type StockLevelEvent } from '../../pipelines/events/derive.js';
import { saveEvents } from '../../pipelines/events/log.js';
import { startWebhookDispatcher } from '../../pipelines/webhooks/index.js';
import { runCellar } from '../support/cli.js';
import { artifactDir, cellarEnv, eventually, freshDatabase, rid, services } from '../support/services.js';
import { call, keysByRole, memoryLogger, startTestApi, type TestApi } from './api-support.js';

/**
 * Webhook subscriptions through the read API's admin endpoints and `cellar webhooks`: admin keys only,
 * the secret answered once and never again (nor audited), input refused with a 400 naming the field,
 * unknown ids a 404, and the delivery log with dead deliveries and their redelivery.
 */
describe('webhook subscriptions through the API and the CLI', () => {
  let db: { url: string; pool: pg.Pool };
  let api: TestApi;
  let keys: Awaited<ReturnType<typeof keysByRole>>;
  const hooks = () => `${api.url}/v1/webhooks`;

  beforeAll(async () => {
    db = await freshDatabase();
    keys = await keysByRole(db.pool, rid('wh'));
    api = await startTestApi({ pgUrl: db.url, redisUrl: services().redisUrl });
  });
  afterAll(async () => {
    await api?.close();
    await db?.pool.end();
  });

  it('only admin keys may manage webhooks', async () => {
    for (const role of ['reader', 'operator'] as const) {
      expect((await call(hooks(), keys[role])).status, `${role} lists`).toBe(403);
      expect((await call(hooks(), keys[role], { method: 'POST', body: { url: 'https://example.com/hook' } })).status, `${role} creates`).toBe(403);
    }
    expect((await call(hooks(), undefined)).status).toBe(401);
    expect((await call(hooks(), keys.admin)).body).toEqual({ webhooks: [] });
    const paths = (await call(`${api.url}/openapi.json`, undefined)).body.paths;
    for (const [path, method] of [['/v1/webhooks', 'post'], ['/v1/webhooks', 'get'], ['/v1/webhooks/{id}', 'patch'], ['/v1/webhooks/{id}/deliveries', 'get'], ['/v1/webhooks/{id}/redeliver', 'post']] as const) {
      expect(paths[path]?.[method]?.['x-cellar-role'], `${method} ${path}`).toBe('admin');
    }
  });

  it('answers the secret once, when created; no read, change or audit row shows it again', async () => {
    const created = await call(hooks(), keys.admin, { method: 'POST', body: { url: 'https://hooks.example.com/cellar', filter: { types: ['sold_out'], skuPrefix: 'wine-' }, description: 'pricing' } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const { id, secret } = created.body;
    expect(id).toMatch(/^wh_[0-9a-f]{16}$/);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(created.body).toMatchObject({ url: 'https://hooks.example.com/cellar', filter: { types: ['sold_out'], skuPrefix: 'wine-' }, enabled: true, maxAttempts: null, deliveries: { pending: 0, delivered: 0, dead: 0 }, lastDelivery: null });

    const given = 'a-secret-of-my-own-0123456789';
    const mine = await call(hooks(), keys.admin, { method: 'POST', body: { url: 'http://127.0.0.1:9/x', secret: given, maxAttempts: 3 } });
    expect(mine.status).toBe(201);
    expect(mine.body).toMatchObject({ secret: given, maxAttempts: 3, filter: {} });

    const patched = await call(`${hooks()}/${id}`, keys.admin, { method: 'PATCH', body: { enabled: false, filter: { region: 'eu-west' } } });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ id, enabled: false, filter: { region: 'eu-west' }, description: 'pricing' });
    const reads = [patched, await call(hooks(), keys.admin), await call(`${hooks()}/${id}`, keys.admin), await call(`${hooks()}/${mine.body.id}`, keys.admin), await call(`${api.url}/v1/ops/audit?limit=50`, keys.admin)];
    for (const r of reads) {
      expect(r.status).toBe(200);
      const text = JSON.stringify(r.body);
      expect(text).not.toContain(secret);
      expect(text).not.toContain(given);
    }
    expect(reads[1]!.body.webhooks.map((w: { id: string }) => w.id)).toEqual([id, mine.body.id]);
    expect(reads[4]!.body.entries.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['webhooks.create', 'webhooks.update', 'webhooks.list']));
    expect(api.lines.join('\n')).not.toContain(given);

    expect((await call(`${hooks()}/${id}`, keys.admin, { method: 'DELETE' })).body).toEqual({ id, deleted: true });
    expect((await call(`${hooks()}/${mine.body.id}`, keys.admin, { method: 'DELETE' })).status).toBe(200);
    expect((await call(`${hooks()}/${id}`, keys.admin)).status).toBe(404);
    expect((await call(`${hooks()}/${id}`, keys.admin, { method: 'DELETE' })).status).toBe(404);
  });

  it('refuses bad input with a 400 naming what is wrong, and unknown subscriptions with a 404', async () => {
    const post = (body: unknown) => call(hooks(), keys.admin, { method: 'POST', body });
    const cases: Array<[unknown, RegExp]> = [
      [{}, /url/],
      [{ url: 'ftp://example.com/x' }, /url/],
      [{ url: 'https://user:pw@example.com/x' }, /url: credentials in the URL/],
      [{ url: 'https://hooks.example.invalid/x', filter: { types: ['nope'] } }, /types/],
      [{ url: 'https://hooks.example.invalid/x', filter: { colour: 'red' } }, /filter|additional/],
      [{ url: 'https://hooks.example.invalid/x', secret: 'short' }, /secret/],
      [{ url: 'https://hooks.example.invalid/x', maxAttempts: 0 }, /maxAttempts/],
    ];
    for (const [body, says] of cases) {
      const r = await post(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.message, JSON.stringify(body)).toMatch(says);
    }
    const { body: w } = await post({ url: 'https://hooks.example.invalid/x' });
    expect((await call(`${hooks()}/${w.id}`, keys.admin, { method: 'PATCH', body: {} })).status).toBe(400);
    expect((await call(`${hooks()}/${w.id}`, keys.admin, { method: 'PATCH', body: { url: 'mailto:x@example.com' } })).status).toBe(400);
    const unknown = await call(`${hooks()}/wh_0000000000000000`, keys.admin);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toContain('wh_0000000000000000');
    expect((await call(`${hooks()}/wh_0000000000000000/deliveries`, keys.admin)).status).toBe(404);
    expect((await call(`${hooks()}/nope/deliveries`, keys.admin)).status).toBe(400);
    expect((await call(`${hooks()}/${w.id}/redeliver`, keys.admin, { method: 'POST', body: { eventId: '0'.repeat(32) } })).body.error.message).toContain('0'.repeat(32));
    expect((await call(`${hooks()}/${w.id}/deliveries?status=lost`, keys.admin)).status).toBe(400);
    expect((await call(`${hooks()}/${w.id}`, keys.admin, { method: 'DELETE' })).status).toBe(200);
  });

  it('shows dead deliveries in the delivery log and sends them again on request', async () => {
    // A port nothing listens on: every attempt is refused.
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    const region = rid('whapi');
    const { body: w } = await call(hooks(), keys.admin, { method: 'POST', body: { url: `http://127.0.0.1:${port}/hook`, filter: { region }, maxAttempts: 2 } });
    const events: StockLevelEvent[] = Array.from({ length: 5 }, (_, i) => ({ id: stockEventId(region, `wine-${i}`, 1, 'sold_out'), type: 'sold_out', region, sku: `wine-${i}`, version: 1, before: 1, after: 0, threshold: null, sourceTsMs: Date.now() }));
    await saveEvents(db.pool, events);
    const dispatcher = startWebhookDispatcher({ pool: db.pool, log: memoryLogger().log, pollMs: 50, timeoutMs: 500, backoffBaseMs: 50, backoffMaxMs: 100 });
    try {
      const dead = await eventually(async () => (await call(`${hooks()}/${w.id}`, keys.admin)).body.deliveries?.dead === events.length, 15_000, 100);
      expect(dead, `deliveries: ${JSON.stringify((await call(`${hooks()}/${w.id}`, keys.admin)).body.deliveries)}`).toBe(true);
    } finally {
      await dispatcher.stop();
    }
    const one = await call(`${hooks()}/${w.id}`, keys.admin);
    expect(one.body.lastDelivery).toMatchObject({ status: 'dead', attempts: 2, httpStatus: null, error: expect.stringContaining('connection refused') });

    const page1 = await call(`${hooks()}/${w.id}/deliveries?status=dead&limit=3`, keys.admin);
    expect(page1.status).toBe(200);
    expect(page1.body.deliveries).toHaveLength(3);
    expect(page1.body.deliveries[0]).toMatchObject({ status: 'dead', attempts: 2, lastStatus: null, nextAttemptAt: null, event: { type: 'sold_out', region, before: 1, after: 0 } });
    const page2 = await call(`${hooks()}/${w.id}/deliveries?status=dead&limit=3&after=${page1.body.next}`, keys.admin);
    expect(page2.body).toMatchObject({ next: null });
    expect([...page1.body.deliveries, ...page2.body.deliveries].map((d: { eventId: string }) => d.eventId).sort()).toEqual(events.map((e) => e.id).sort());

    const one1 = await call(`${hooks()}/${w.id}/redeliver`, keys.admin, { method: 'POST', body: { eventId: events[0]!.id } });
    expect(one1.body).toEqual({ requeued: [events[0]!.id] });
    const all = await call(`${hooks()}/${w.id}/redeliver`, keys.admin, { method: 'POST' });
    expect(all.body.requeued.sort()).toEqual(events.slice(1).map((e) => e.id).sort());
    const pending = await call(`${hooks()}/${w.id}/deliveries?status=pending`, keys.admin);
    expect(pending.body.deliveries.map((d: { attempts: number }) => d.attempts)).toEqual([0, 0, 0, 0, 0]);
    expect((await call(`${hooks()}/${w.id}`, keys.admin)).body.deliveries).toEqual({ pending: 5, delivered: 0, dead: 0 });
  });

  it('cellar webhooks add, list, show, disable, deliveries, redeliver and remove work on the database', async () => {
    const env = cellarEnv({ CELLAR_PG_URL: db.url });
    const logDir = artifactDir('webhooks-cli');
    // Independent commands run side by side: each is a process of its own.
    const [add, bad] = await Promise.all([
      runCellar(['webhooks', 'add', '--url', 'https://hooks.example.com/cli', '--type', 'sold_out', 'low_stock', '--sku-prefix', 'wine-', '--json'], env, logDir),
      runCellar(['webhooks', 'add', '--url', 'https://hooks.example.com/cli', '--type', 'sold'], env, logDir),
    ]);
    expect(add.code, add.out).toBe(0);
    const created = JSON.parse(add.out.trim().split('\n').at(-1)!) as { id: string; secret: string; filter: unknown };
    expect(created).toMatchObject({ filter: { types: ['sold_out', 'low_stock'], skuPrefix: 'wine-' }, secret: expect.stringMatching(/^whsec_/) });
    const [list, disable, deliveries, redeliver] = await Promise.all([
      runCellar(['webhooks', 'list'], env, logDir),
      runCellar(['webhooks', 'disable', created.id], env, logDir),
      runCellar(['webhooks', 'deliveries', created.id, '--status', 'dead'], env, logDir),
      runCellar(['webhooks', 'redeliver', created.id], env, logDir),
    ]);
    expect(list.code, list.out).toBe(0);
    expect(list.out).toContain(created.id);
    expect(list.out).toContain('types sold_out,low_stock; SKUs wine-*');
    expect(list.out).not.toContain(created.secret);
    expect(disable.code, disable.out).toBe(0);
    expect((await call(`${hooks()}/${created.id}`, keys.admin)).body.enabled).toBe(false);
    expect(deliveries.code, deliveries.out).toBe(0);
    expect(redeliver.out).toContain('no dead deliveries');
    const remove = await runCellar(['webhooks', 'remove', created.id], env, logDir);
    expect(remove.code, remove.out).toBe(0);
    const show = await runCellar(['webhooks', 'show', created.id], env, logDir);
    expect(show.code).toBe(1);
    expect(show.out).toContain(`no webhook "${created.id}"`);
    expect(bad.code, bad.out).toBe(2);
    expect(bad.out).toMatch(/filter\.types/);
  });
});
