import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { upsertRegionalStock } from '../../sinks/postgres/sink.js';
import { createRedisSnapshotSink, type RedisSnapshotSink } from '../../sinks/redis/sink.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { createDatabase, startLocalPostgres } from '../../infra/local/postgres.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { migrate } from '../../pipelines/state/migrate.js';
import { freshDatabase, rid, services } from '../support/services.js';
import { call, keysByRole, startTestApi, stock, type TestApi } from './api-support.js';
import type { Role } from '../../pipelines/api/keys-store.js';

/**
 * The read API against real Postgres and Redis: reads from the Redis snapshot with version, bottle size and
 * freshness, the Postgres fallback (key missing from Redis, Redis stopped), region pages with prefix and
 * keyset paging, validation errors, and the OpenAPI document generated from the route schemas.
 */
describe('read API: stock reads', () => {
  const prefix = rid('p');
  const R1 = rid('west');
  const R2 = rid('east');
  let db: { url: string; pool: pg.Pool };
  let redisServer: LocalRedis;
  let sink: RedisSnapshotSink;
  let api: TestApi;
  let keys: Record<Role, string>;

  beforeAll(async () => {
    db = await freshDatabase();
    redisServer = await startLocalRedis(); // private: the outage test stops it
    sink = createRedisSnapshotSink({ url: redisServer.url, keyPrefix: prefix });
    await sink.connect();
    await sink.writeBatch([]); // consumes the first-epoch reset
    const rows = [
      ...Array.from({ length: 25 }, (_, i) => stock(R1, `wine-${String(i).padStart(3, '0')}`, 10 + i, 1)),
      stock(R1, 'beer-001', 7, 3, undefined, 375),
      stock(R2, 'wine-003', 99, 2),
      stock(R2, 'legacy', 2, 1, undefined, null), // written before sizes were kept
    ];
    await upsertRegionalStock(db.pool, rows);
    await sink.writeBatch(rows);
    // Only in Postgres: a key the Redis snapshot does not have (an expired region, a lagging sink).
    await upsertRegionalStock(db.pool, [stock(R2, 'only-in-postgres', 5, 4, 1_700_000_000_000, 1500)]);
    api = await startTestApi({ pgUrl: db.url, redisUrl: redisServer.url, keyPrefix: prefix });
    keys = await keysByRole(db.pool, rid('k'));
  });

  afterAll(async () => {
    await api?.close();
    await sink?.close();
    await db?.pool.end();
    await redisServer?.destroy();
  });

  it('answers one key from Redis with its version and freshness', async () => {
    const t0 = Date.now();
    const r = await call(`${api.url}/v1/stock/${R1}/wine-004`, keys.reader);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ region: R1, sku: 'wine-004', bottleSizeMl: 750, bottles: 14, version: 1, freshness: { store: 'redis' } });
    expect(r.body.freshness.asOfMs).toBeGreaterThan(t0 - 60_000);
    expect(r.body.freshness.ageMs).toBeGreaterThanOrEqual(0);
    expect(r.headers.get('etag')).toBe('"1"');
  });

  it('follows changes of a key read before (its cached copy is updated from the change stream, never going back)', async () => {
    const url = `${api.url}/v1/stock/${R1}/wine-010`;
    expect((await call(url, keys.reader)).body).toMatchObject({ bottles: 20, version: 1 });
    for (let v = 2; v <= 6; v++) {
      await sink.writeBatch([stock(R1, 'wine-010', 100 + v, v)]);
      const seen: number[] = [];
      for (let i = 0; i < 50 && seen.at(-1) !== v; i++) {
        seen.push((await call(url, keys.reader)).body.version);
        if (seen.at(-1) !== v) await new Promise((r) => setTimeout(r, 2));
      }
      expect(seen.at(-1), `versions read after writing ${v}: ${seen.join(',')}`).toBe(v);
      expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    }
    const last = (await call(url, keys.reader)).body;
    expect(last).toMatchObject({ bottleSizeMl: 750, bottles: 106, version: 6, freshness: { store: 'redis' } });
    await sink.writeBatch([stock(R1, 'wine-010', 1, 5)]); // an older version changes nothing, cached or not
    await new Promise((r) => setTimeout(r, 50));
    expect((await call(url, keys.reader)).body).toMatchObject({ bottles: 106, version: 6 });
  });

  it('falls back to Postgres for a key Redis does not hold, and answers 404 when neither has it', async () => {
    const r = await call(`${api.url}/v1/stock/${R2}/only-in-postgres`, keys.reader);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ bottleSizeMl: 1500, bottles: 5, version: 4, freshness: { store: 'postgres', sourceTsMs: 1_700_000_000_000 } });
    const missing = await call(`${api.url}/v1/stock/${R2}/no-such-sku`, keys.reader);
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'not_found' });
    expect(missing.body.error.message).toContain('no-such-sku');
  });

  it('answers a SKU in every region, with URL-encoded SKUs', async () => {
    const r = await call(`${api.url}/v1/skus/wine-003`, keys.reader);
    expect(r.status).toBe(200);
    expect(r.body.regions.map((x: { region: string; bottles: number }) => [x.region, x.bottles]).sort()).toEqual([[R1, 13], [R2, 99]].sort());
    await upsertRegionalStock(db.pool, [stock(R1, 'odd sku/ü', 1, 1)]);
    const odd = await call(`${api.url}/v1/skus/${encodeURIComponent('odd sku/ü')}`, keys.reader);
    expect(odd.status).toBe(200);
    expect(odd.body.regions[0]).toMatchObject({ sku: 'odd sku/ü', freshness: { store: 'postgres' } });
  });

  it('pages a region in SKU order with a prefix filter', async () => {
    const seen: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 10; page++) {
      const q = new URLSearchParams({ prefix: 'wine-', limit: '10', ...(after ? { after } : {}) });
      const r = await call(`${api.url}/v1/stock/${R1}?${q}`, keys.reader);
      expect(r.status).toBe(200);
      seen.push(...r.body.items.map((i: { sku: string }) => i.sku));
      expect(r.body.freshness.store).toBe('postgres');
      if (!r.body.next) break;
      after = r.body.next;
    }
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `wine-${String(i).padStart(3, '0')}`));
    const beer = await call(`${api.url}/v1/stock/${R1}?prefix=beer`, keys.reader);
    expect(beer.body.items).toEqual([expect.objectContaining({ sku: 'beer-001', bottles: 7, version: 3 })]);
  });

  it('carries the SKU\'s bottle size in every stock answer, null when it is unknown', async () => {
    const one = (region: string, sku: string) => call(`${api.url}/v1/stock/${region}/${sku}`, keys.reader).then((r) => r.body);
    expect(await one(R1, 'beer-001')).toMatchObject({ sku: 'beer-001', bottleSizeMl: 375, bottles: 7, freshness: { store: 'redis' } });
    expect(await one(R1, 'beer-001')).toMatchObject({ bottleSizeMl: 375, bottles: 7 }); // a key read before
    expect(await one(R2, 'legacy')).toEqual(expect.objectContaining({ bottleSizeMl: null, bottles: 2, freshness: expect.objectContaining({ store: 'redis' }) }));
    expect(await one(R2, 'only-in-postgres')).toMatchObject({ bottleSizeMl: 1500, freshness: { store: 'postgres' } });
    const sku = await call(`${api.url}/v1/skus/beer-001`, keys.reader);
    expect(sku.body.regions).toEqual([expect.objectContaining({ region: R1, bottleSizeMl: 375 })]);
    const page = await call(`${api.url}/v1/stock/${R2}`, keys.reader);
    expect(page.body.items.map((i: { sku: string; bottleSizeMl: number | null }) => [i.sku, i.bottleSizeMl])).toEqual([['legacy', null], ['only-in-postgres', 1500], ['wine-003', 750]]);
  });

  it('refuses invalid input with a 400 that names the field', async () => {
    const cases: Array<[string, RegExp]> = [
      [`/v1/stock/${encodeURIComponent('bad region!')}/x`, /region/],
      [`/v1/stock/${R1}?limit=0`, /limit/],
      [`/v1/stock/${R1}?limit=5000`, /limit/],
      [`/v1/stock/${R1}?limit=ten`, /limit/],
      [`/v1/stock/${R1}?colour=red`, /additional propert/],
      [`/v1/skus/${'x'.repeat(201)}`, /sku/],
    ];
    for (const [path, msg] of cases) {
      const r = await call(`${api.url}${path}`, keys.reader);
      expect(r.status, path).toBe(400);
      expect(r.body.error.code, path).toBe('invalid_request');
      expect(r.body.error.message, path).toMatch(msg);
    }
    const bodyErr = await call(`${api.url}/v1/ops/dead-letters/replay`, keys.admin, { method: 'POST', body: { ids: ['x'] } });
    expect(bodyErr.status).toBe(400);
    expect(bodyErr.body.error.message).toMatch(/ids/);
  });

  it('publishes an OpenAPI document generated from the route schemas', async () => {
    const r = await call(`${api.url}/openapi.json`, undefined);
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe('3.1.0');
    const paths = r.body.paths as Record<string, Record<string, any>>;
    expect(Object.keys(paths)).toEqual(expect.arrayContaining(['/v1/stock/{region}/{sku}', '/v1/stock/{region}', '/v1/skus/{sku}', '/v1/events', '/v1/pipeline', '/v1/ops/dead-letters/replay']));
    const page = paths['/v1/stock/{region}']!.get;
    expect(page.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toEqual(['path:region', 'query:prefix', 'query:after', 'query:limit', 'query:asOf']);
    expect(page.parameters.find((p: { name: string }) => p.name === 'limit').schema).toMatchObject({ maximum: 1000, default: 100 });
    expect(page.responses['200'].content['application/json'].schema.required).toContain('next');
    expect(page.responses['200'].content['application/json'].schema.properties.items.items.required).toContain('bottleSizeMl');
    const item = paths['/v1/stock/{region}/{sku}']!.get.responses['200'].content['application/json'].schema;
    expect(item.properties.bottleSizeMl).toMatchObject({ type: ['integer', 'null'] });
    expect(item.required).toContain('bottleSizeMl');
    expect(r.body.components.schemas.StockEvent.properties.changes.items.required).toEqual(expect.arrayContaining(['sku', 'bottleSizeMl', 'bottles', 'version']));
    expect(page['x-cellar-role']).toBe('reader');
    expect(paths['/v1/ops/dead-letters/replay']!.post['x-cellar-role']).toBe('admin');
    expect(paths['/v1/events']!.get.responses['200'].content).toHaveProperty(['text/event-stream']);
  });

  it('serves from Postgres while Redis is down, and from Redis again once it is back', async () => {
    await redisServer.stop();
    try {
      const r = await call(`${api.url}/v1/stock/${R1}/wine-004`, keys.reader);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ bottleSizeMl: 750, bottles: 14, version: 1, freshness: { store: 'postgres' } });
      const s = await call(`${api.url}/v1/skus/wine-003`, keys.reader);
      expect(s.body.regions.every((x: { freshness: { store: string } }) => x.freshness.store === 'postgres')).toBe(true);
      expect((await call(`${api.url}/readyz`, undefined)).status).toBe(503);
    } finally {
      await redisServer.start();
    }
    // The Redis server came back empty (no persistence): the sink rewrites after its epoch check.
    const fresh = createRedisSnapshotSink({ url: redisServer.url, keyPrefix: prefix });
    await fresh.connect();
    await fresh.writeBatch([]);
    await fresh.writeBatch([stock(R1, 'wine-004', 15, 2)]);
    await fresh.close();
    let body: any;
    for (let i = 0; i < 40 && body?.freshness?.store !== 'redis'; i++) {
      body = (await call(`${api.url}/v1/stock/${R1}/wine-004`, keys.reader)).body;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(body).toMatchObject({ bottles: 15, version: 2, freshness: { store: 'redis' } });
  });
});

describe('read API while Postgres is down', () => {
  it('keeps answering from Redis (keys verified before the outage stay valid), region pages included', async () => {
    const prefix = rid('p');
    const region = rid('r');
    const pgServer = await startLocalPostgres({ walLevel: 'replica' });
    const sink = createRedisSnapshotSink({ url: services().redisUrl, keyPrefix: prefix });
    let api: TestApi | undefined;
    try {
      const url = await createDatabase(pgServer.url, 'cellar');
      const pool = createPgPool(url, { max: 2 });
      await migrate(pool);
      const keys = await keysByRole(pool, rid('k'));
      await pool.end();
      await sink.connect();
      await sink.writeBatch([]);
      await sink.writeBatch([stock(region, 'c', 3, 1), stock(region, 'a', 1, 1, undefined, 375), stock(region, 'b', 2, 5)]);
      api = await startTestApi({ pgUrl: url, redisUrl: services().redisUrl, keyPrefix: prefix });
      expect((await call(`${api.url}/v1/stock/${region}?limit=2`, keys.reader)).body).toMatchObject({ items: [], freshness: { store: 'postgres' } });
      await pgServer.stop();
      const one = await call(`${api.url}/v1/stock/${region}/b`, keys.reader);
      expect(one.status).toBe(200);
      expect(one.body).toMatchObject({ bottleSizeMl: 750, bottles: 2, version: 5, freshness: { store: 'redis' } });
      const page = await call(`${api.url}/v1/stock/${region}?limit=2`, keys.reader);
      expect(page.status).toBe(200);
      expect(page.body).toMatchObject({ region, next: 'b', freshness: { store: 'redis' } });
      expect(page.body.items.map((i: { sku: string; version: number; bottleSizeMl: number }) => `${i.sku}@${i.version}/${i.bottleSizeMl}`)).toEqual(['a@1/375', 'b@5/750']);
      // A key never seen before cannot be checked without Postgres: 503, not a guess.
      const unknown = await call(`${api.url}/v1/stock/${region}/b`, keys.operator);
      expect(unknown.status).toBe(503);
      expect((await call(`${api.url}/readyz`, undefined)).status).toBe(503);
    } finally {
      await api?.close();
      await sink.close();
      await pgServer.destroy();
    }
  });
});
