import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegionalAggregator } from '../../pipelines/aggregate/aggregator.js';
import { ContributionStore } from '../../pipelines/state/contributions.js';
import { maintainHistory } from '../../pipelines/state/history.js';
import { migrate } from '../../pipelines/state/migrate.js';
import { upsertRegionalStock } from '../../sinks/postgres/sink.js';
import type { StockObservation } from '../../schemas/records.js';
import { freshDatabase, rid, services } from '../support/services.js';
import { call, keysByRole, startTestApi, type TestApi } from './api-support.js';

/**
 * The history of totals through the read API, over what the aggregator persisted in a real Postgres:
 * every change of a total in a time range, a region as of a time, the breakdown of a total by supplier and
 * warehouse, and retention dropping whole days.
 */
describe('stock history, as-of and contributors', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let api: TestApi;
  let reader = '';
  const region = rid('hist');
  const day = Date.UTC(2026, 10, 29);
  const at = (h: number) => day + h * 3_600_000;
  const obs = (contributorId: string, supplierId: string, warehouseId: string, sku: string, bottles: number, hour: number, op: 'UPSERT' | 'DELETE' = 'UPSERT'): StockObservation => ({
    supplierId, warehouseId, region, sku, supplierSku: sku, vintage: 2019, bottleSizeMl: 750, bottles, op, contributorId,
    sourceVersion: String(hour).padStart(20, '0'), sourceTsMs: at(hour), ingestTsMs: 0, traceId: 't',
  });

  beforeAll(async () => {
    db = await freshDatabase();
    await migrate(db.pool);
    // Yesterday's and today's partitions, kept 30 days from "tomorrow".
    await maintainHistory(db.pool, 30, day);
    const agg = new RegionalAggregator();
    for (const o of [
      obs('acme/a', 'acme', 'napa', 'rioja-0001-2019', 12, 8), obs('valley/v', 'valley', 'sonoma', 'rioja-0001-2019', 6, 9),
      obs('acme/a', 'acme', 'napa', 'rioja-0001-2019', 2, 10), obs('acme/b', 'acme', 'dock-2', 'rioja-0001-2019', 4, 11),
      obs('valley/v', 'valley', 'sonoma', 'rioja-0001-2019', 0, 12, 'DELETE'), obs('acme/c', 'acme', 'napa', 'rioja-0002-2019', 24, 9),
    ]) agg.apply(o);
    const { totals, contributions, history } = agg.drain(at(13));
    await new ContributionStore(db.pool).saveWithHistory(contributions, 0, history);
    await upsertRegionalStock(db.pool, totals);
    reader = (await keysByRole(db.pool, rid('h'))).reader;
    api = await startTestApi({ pgUrl: db.url, redisUrl: services().redisUrl });
  });
  afterAll(async () => {
    await api?.close();
    await db?.pool.end();
  });

  it('lists every change of a total with its delta and contributor, within a time range', async () => {
    const all = await call(`${api.url}/v1/stock/${region}/rioja-0001-2019/history`, reader);
    expect(all.status).toBe(200);
    expect(all.body.changes.map((c: { version: number; bottles: number; delta: number; contributorId: string; op: string }) => [c.version, c.bottles, c.delta, c.contributorId, c.op])).toEqual([
      [1, 12, 12, 'acme/a', 'UPSERT'], [2, 18, 6, 'valley/v', 'UPSERT'], [3, 8, -10, 'acme/a', 'UPSERT'], [4, 12, 4, 'acme/b', 'UPSERT'], [5, 6, -6, 'valley/v', 'DELETE'],
    ]);
    const window = await call(`${api.url}/v1/stock/${region}/rioja-0001-2019/history?from=${new Date(at(9)).toISOString()}&to=${at(11)}`, reader);
    expect(window.body.changes.map((c: { version: number }) => c.version)).toEqual([2, 3]);
    const page = await call(`${api.url}/v1/stock/${region}/rioja-0001-2019/history?limit=2&after=2`, reader);
    expect(page.body).toMatchObject({ next: 4 });
    expect(page.body.changes.map((c: { version: number }) => c.version)).toEqual([3, 4]);
    expect((await call(`${api.url}/v1/stock/${region}/rioja-0001-2019/history?from=yesterday`, reader)).status).toBe(400);
  });

  it('answers a region as it stood at a time', async () => {
    const asOf = async (t: number) => (await call(`${api.url}/v1/stock/${region}?asOf=${new Date(t).toISOString()}`, reader)).body;
    expect((await asOf(at(7))).items).toEqual([]);
    expect((await asOf(at(9) + 1)).items.map((i: { sku: string; bottles: number }) => [i.sku, i.bottles])).toEqual([['rioja-0001-2019', 18], ['rioja-0002-2019', 24]]);
    const late = await asOf(at(12));
    expect(late.items.map((i: { sku: string; bottles: number; version: number }) => [i.sku, i.bottles, i.version])).toEqual([['rioja-0001-2019', 6, 5], ['rioja-0002-2019', 24, 1]]);
    expect(late.freshness).toMatchObject({ store: 'postgres', asOfMs: at(12) });
  });

  it('breaks a total down by supplier and warehouse', async () => {
    const res = await call(`${api.url}/v1/stock/${region}/rioja-0001-2019/contributors`, reader);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ bottles: 6, suppliers: [{ supplierId: 'acme', bottles: 6, warehouses: [{ warehouseId: 'dock-2', bottles: 4 }, { warehouseId: 'napa', bottles: 2 }] }] });
    expect(res.body.contributors.map((c: { contributorId: string }) => c.contributorId)).toEqual(['acme/b', 'acme/a']);
    expect((await call(`${api.url}/v1/stock/${region}/no-such-sku/contributors`, reader)).status).toBe(404);
  });

  it('retention drops whole days: the history of a day past it is gone, the totals stay', async () => {
    const dropped = await maintainHistory(db.pool, 1, day + 3 * 86_400_000);
    expect(dropped).toContain('stock_history_20261129');
    expect((await call(`${api.url}/v1/stock/${region}/rioja-0001-2019/history`, reader)).body.changes).toEqual([]);
    expect((await call(`${api.url}/v1/stock/${region}/rioja-0001-2019/contributors`, reader)).body.bottles).toBe(6);
  });
});
