import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createRedisSnapshotSink, STOCK_EVENTS_MAXLEN, type RedisSnapshotSink } from '../../sinks/redis/sink.js';
import { eventually, freshDatabase, rid, services } from '../support/services.js';
import { call, keysByRole, openEvents, startTestApi, stock, type SseEvent, type TestApi } from './api-support.js';

const changes = (events: SseEvent[]) => events.filter((e) => e.event === 'stock').flatMap((e) => e.data.changes.map((c: { sku: string; bottles: number; version: number }) => `${e.data.region}/${c.sku}=${c.bottles}@${c.version}`));

/**
 * `GET /v1/events` against the real Redis sink: live changes, filters, resuming with Last-Event-ID after
 * a disconnect without loss or repetition, and a `reset` when the id is older than the kept window.
 */
describe('server-sent stock events', () => {
  const prefix = rid('p');
  const R1 = rid('west');
  const R2 = rid('east');
  let db: { url: string; pool: pg.Pool };
  let sink: RedisSnapshotSink;
  let api: TestApi;
  let key: string;

  beforeAll(async () => {
    db = await freshDatabase();
    sink = createRedisSnapshotSink({ url: services().redisUrl, keyPrefix: prefix });
    await sink.connect();
    await sink.writeBatch([]);
    api = await startTestApi({ pgUrl: db.url, redisUrl: services().redisUrl, keyPrefix: prefix });
    key = (await keysByRole(db.pool, rid('k'))).reader;
  });

  afterAll(async () => {
    await api?.close();
    await sink?.close();
    await db?.pool.end();
  });

  it('streams applied changes with increasing ids, filtered by region and SKU', async () => {
    const all = await openEvents(`${api.url}/v1/events`, key);
    const one = await openEvents(`${api.url}/v1/events?region=${R1}&sku=b`, key);
    const pre = await openEvents(`${api.url}/v1/events?skuPrefix=a`, key);
    try {
      expect(all.status).toBe(200);
      await sink.writeBatch([stock(R1, 'a', 1, 1), stock(R1, 'b', 2, 1), stock(R2, 'b', 3, 1)]);
      await sink.writeBatch([stock(R1, 'b', 4, 2), stock(R1, 'b', 4, 2)]);
      await sink.writeBatch([stock(R1, 'b', 9, 1)]); // older version: not applied, so no event
      await sink.writeBatch([stock(R2, 'a', 5, 1, undefined, null)]); // a total without a known bottle size
      expect(await eventually(async () => changes(all.events).length === 5, 5_000, 20)).toBe(true);
      expect(changes(all.events).sort()).toEqual([`${R1}/a=1@1`, `${R1}/b=2@1`, `${R1}/b=4@2`, `${R2}/a=5@1`, `${R2}/b=3@1`].sort());
      const sizes = all.events.filter((e) => e.event === 'stock').flatMap((e) => e.data.changes.map((c: { sku: string; bottleSizeMl: number | null }) => `${e.data.region}/${c.sku}:${c.bottleSizeMl}`));
      expect(sizes.sort()).toEqual([`${R1}/a:750`, `${R1}/b:750`, `${R1}/b:750`, `${R2}/a:null`, `${R2}/b:750`].sort());
      const ids = all.events.map((e) => e.id!);
      expect([...ids].sort((x, y) => (BigInt(x.split('-')[0]!) - BigInt(y.split('-')[0]!) || Number(x.split('-')[1]) - Number(y.split('-')[1])) > 0 ? 1 : -1)).toEqual(ids);
      expect(all.events[0]!.data.updatedTsMs).toBeGreaterThan(Date.now() - 10_000);
      expect(await eventually(async () => changes(one.events).length === 2, 2_000, 20)).toBe(true);
      expect(changes(one.events)).toEqual([`${R1}/b=2@1`, `${R1}/b=4@2`]);
      expect(await eventually(async () => changes(pre.events).length === 2, 2_000, 20)).toBe(true);
      expect(changes(pre.events)).toEqual([`${R1}/a=1@1`, `${R2}/a=5@1`]);
      // Filtered-out entries still move the client's position, so a resume does not re-scan them.
      expect(one.lastId()).toBe(all.lastId());
    } finally {
      all.close();
      one.close();
      pre.close();
    }
  });

  it('resumes with Last-Event-ID: what was missed while disconnected arrives once, in order, then live changes', async () => {
    const first = await openEvents(`${api.url}/v1/events?region=${R1}`, key);
    await sink.writeBatch([stock(R1, 'r1', 1, 1)]);
    expect(await eventually(async () => changes(first.events).length === 1, 5_000, 20)).toBe(true);
    const last = first.lastId()!;
    first.close();
    await sink.writeBatch([stock(R1, 'r1', 2, 2)]);
    await sink.writeBatch([stock(R2, 'other', 1, 1)]);
    await sink.writeBatch([stock(R1, 'r2', 3, 1), stock(R1, 'r1', 4, 3)]);
    const resumed = await openEvents(`${api.url}/v1/events?region=${R1}`, key, last);
    try {
      expect(resumed.status).toBe(200);
      expect(await eventually(async () => changes(resumed.events).length === 3, 5_000, 20)).toBe(true);
      await sink.writeBatch([stock(R1, 'r2', 5, 2)]);
      expect(await eventually(async () => changes(resumed.events).length === 4, 5_000, 20)).toBe(true);
      await new Promise((r) => setTimeout(r, 200));
      expect(changes(resumed.events)).toEqual([`${R1}/r1=2@2`, `${R1}/r2=3@1`, `${R1}/r1=4@3`, `${R1}/r2=5@2`]);
      expect(resumed.events.some((e) => e.event === 'reset')).toBe(false);
    } finally {
      resumed.close();
    }
  });

  it('sends the newest entries first with ?backlog=N (oldest first, filtered like live ones), then live ones', async () => {
    const R3 = rid('backlog');
    for (let i = 1; i <= 5; i++) await sink.writeBatch([stock(R3, `b${i}`, i, 1)]);
    const bl = await openEvents(`${api.url}/v1/events?backlog=3&region=${R3}`, key);
    const none = await openEvents(`${api.url}/v1/events?backlog=2&region=${rid('elsewhere')}`, key);
    const plain = await openEvents(`${api.url}/v1/events?region=${R3}`, key);
    try {
      expect(bl.status).toBe(200);
      expect(await eventually(async () => changes(bl.events).length === 3, 5_000, 20)).toBe(true);
      expect(changes(bl.events)).toEqual([`${R3}/b3=3@1`, `${R3}/b4=4@1`, `${R3}/b5=5@1`]);
      // Filtered-out backlog entries still move the client's position (id lines without data).
      expect(await eventually(async () => none.lastId() === bl.lastId(), 5_000, 20)).toBe(true);
      await sink.writeBatch([stock(R3, 'b6', 6, 1)]);
      expect(await eventually(async () => changes(bl.events).length === 4 && changes(plain.events).length === 1, 5_000, 20)).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
      expect(changes(bl.events)).toEqual([`${R3}/b3=3@1`, `${R3}/b4=4@1`, `${R3}/b5=5@1`, `${R3}/b6=6@1`]);
      expect(changes(plain.events), 'without backlog: live ones only').toEqual([`${R3}/b6=6@1`]);
      expect(none.events).toEqual([]);
    } finally {
      bl.close();
      none.close();
      plain.close();
    }
    // With Last-Event-ID the client resumes; the backlog is not sent on top.
    const probe = await openEvents(`${api.url}/v1/events?backlog=2&region=${R3}`, key);
    expect(await eventually(async () => changes(probe.events).length === 2, 5_000, 20)).toBe(true);
    const at = probe.events[0]!.id!; // b5's entry
    probe.close();
    const resumed = await openEvents(`${api.url}/v1/events?backlog=100&region=${R3}`, key, at);
    try {
      expect(await eventually(async () => changes(resumed.events).length >= 1, 5_000, 20)).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
      expect(changes(resumed.events)).toEqual([`${R3}/b6=6@1`]);
    } finally {
      resumed.close();
    }
    const bad = await call(`${api.url}/v1/events?backlog=1001`, key);
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/backlog must be <= 1000/);
    const doc = await call(`${api.url}/openapi.json`, undefined);
    const param = doc.body.paths['/v1/events'].get.parameters.find((p: { name: string }) => p.name === 'backlog');
    expect(param).toMatchObject({ in: 'query', required: false, schema: { type: 'integer', minimum: 0, maximum: 1000, default: 0 } });
  });

  it('joins the backlog and live changes without a hole or a repeat while changes keep arriving', async () => {
    const R4 = rid('busy');
    let v = 0;
    let writing = true;
    const writer = (async () => {
      while (writing && v < 400) {
        v++;
        await sink.writeBatch([stock(R4, 'k', v, v)]);
      }
    })();
    try {
      expect(await eventually(async () => v >= 60, 10_000, 5)).toBe(true);
      const c = await openEvents(`${api.url}/v1/events?backlog=50&region=${R4}`, key);
      try {
        await writer;
        const last = v;
        expect(await eventually(async () => changes(c.events).at(-1) === `${R4}/k=${last}@${last}`, 10_000, 20)).toBe(true);
        const versions = c.events.filter((e) => e.event === 'stock').flatMap((e) => e.data.changes.map((x: { version: number }) => x.version));
        expect(versions.length).toBeGreaterThan(50);
        expect(versions, 'contiguous from the first one sent to the last written').toEqual(Array.from({ length: versions.length }, (_, i) => versions[0]! + i));
        expect(versions.at(-1)).toBe(last);
      } finally {
        c.close();
      }
    } finally {
      writing = false;
      await writer;
    }
  });

  it(`sends reset when the Last-Event-ID is older than the kept window (about ${STOCK_EVENTS_MAXLEN} region writes), and 400 for a malformed one`, async () => {
    const probe = await openEvents(`${api.url}/v1/events?region=${R1}`, key);
    await sink.writeBatch([stock(R1, 'w', 1, 1)]);
    expect(await eventually(async () => changes(probe.events).length === 1, 5_000, 20)).toBe(true);
    const old = probe.lastId()!;
    probe.close();
    // More region writes than the stream keeps: one batch touching that many regions.
    const many = Array.from({ length: STOCK_EVENTS_MAXLEN + 500 }, (_, i) => stock(`${R2}-${i}`, 'x', 1, 1));
    await sink.writeBatch(many);
    const late = await openEvents(`${api.url}/v1/events?region=${R1}`, key, old);
    try {
      expect(await eventually(async () => late.events.length >= 1, 5_000, 20)).toBe(true);
      expect(late.events[0]!.event).toBe('reset');
      await sink.writeBatch([stock(R1, 'w', 2, 2)]);
      expect(await eventually(async () => changes(late.events).length === 1, 5_000, 20)).toBe(true);
      expect(changes(late.events)).toEqual([`${R1}/w=2@2`]);
    } finally {
      late.close();
    }
    const bad = await call(`${api.url}/v1/events`, key, { headers: { 'last-event-id': 'yesterday' } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/last-event-id/);
  });
});
