import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { RegionalAggregator } from '../../pipelines/aggregate/aggregator.js';
import { normalizeBatch, sweepTruncated, type BatchDeps } from '../../pipelines/normalize/batch.js';
import type { ChangeEvent } from '../../pipelines/normalize/debezium.js';
import { compileMapping } from '../../pipelines/normalize/mapping.js';
import { RouteStore } from '../../pipelines/state/routes.js';
import { ContributionStore } from '../../pipelines/state/contributions.js';
import type { Route } from '../../pipelines/normalize/normalize.js';
import type { StockObservation } from '../../schemas/records.js';
import { northSupplier } from '../support/fixtures.js';
import { freshDatabase } from '../support/services.js';

/**
 * The Kafka runtime normalizes one table's changes on several partitions at once, and a TRUNCATE lands on
 * one of them. Against real Postgres routes, in the adversarial orders: the truncate processed before
 * older inserts of another partition, and while another partition's inserts are normalized but not yet
 * saved. The totals must equal the table after the truncate either way.
 */
describe('truncate barrier across partitions', () => {
  const supplier = northSupplier();
  const mapping = compileMapping(supplier);
  let db: { url: string; pool: pg.Pool };
  let store: RouteStore;
  let deps: BatchDeps;

  beforeAll(async () => {
    db = await freshDatabase();
    store = new RouteStore(db.pool);
    deps = { routes: (ids) => store.get(ids), liveOfTable: (s, t, before) => store.liveOfTable(s, t, before), retry: (_w, fn) => fn(), truncates: store };
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  const v = (n: number) => String(n).padStart(20, '0');
  const insert = (id: number, lsn: number, qty = 6, sku = 'a'): ChangeEvent => ({
    op: 'c', table: 'public.stock', key: { id }, before: null, after: { id, item_code: sku, depot: 'bdx-1', qty }, source: {}, sourceVersion: v(lsn), sourceTsMs: lsn, position: `lsn=${lsn}`,
  });
  const truncate = (lsn: number): ChangeEvent => ({ op: 't', table: 'public.stock', key: null, before: null, after: null, source: {}, sourceVersion: v(lsn), sourceTsMs: lsn, position: `lsn=${lsn}` });
  const items = (changes: ChangeEvent[]) => changes.map((change) => ({ key: null, value: null, change, ref: 0 }));
  /** One partition's batch: normalize, then (optionally later) save its routes and sweep, as the Kafka normalizer does. */
  async function partition(changes: ChangeEvent[]) {
    const res = await normalizeBatch(items(changes), { supplierId: supplier.id, mapping, table: 'public.stock' }, deps);
    return {
      observations: res.observations,
      save: async (): Promise<StockObservation[]> => {
        await store.save(res.routes);
        const swept = await sweepTruncated(res.routes, supplier.id, 'public.stock', deps);
        await store.save(swept.routes);
        return swept.observations;
      },
    };
  }

  it('inserts older than a truncate processed on another partition afterwards count nothing; newer ones count', async () => {
    const agg = new RegionalAggregator();
    const first = await partition([insert(1, 100)]);
    first.observations.forEach((o) => agg.apply(o));
    await first.save();
    const t = await partition([truncate(300)]);
    t.observations.forEach((o) => agg.apply(o));
    await t.save();
    // Partition B was behind: its inserts from before the truncate arrive now, with one from after it.
    const late = await partition([insert(2, 150), insert(3, 200), insert(4, 400, 12)]);
    late.observations.forEach((o) => agg.apply(o));
    (await late.save()).forEach((o) => agg.apply(o));
    expect(agg.get('eu-west', 'a')).toMatchObject({ bottles: 12, contributors: 1 });
  });

  it("inserts normalized while the truncate looks up the table's rows are removed when their routes are saved", async () => {
    await db.pool.query('TRUNCATE cellar.contributor_routes, cellar.table_truncates');
    const agg = new RegionalAggregator();
    const b = await partition([insert(11, 500), insert(12, 510, 7, 'b')]); // normalized, not yet saved
    b.observations.forEach((o) => agg.apply(o));
    const t = await partition([truncate(600)]); // does not see B's rows: their routes are not saved
    t.observations.forEach((o) => agg.apply(o));
    expect(t.observations).toEqual([]);
    (await t.save()).forEach((o) => agg.apply(o));
    const swept = await b.save();
    expect(swept.map((o) => [o.op, o.sku, o.sourceVersion])).toEqual([['DELETE', 'a', v(600)], ['DELETE', 'b', v(600)]]);
    swept.forEach((o) => agg.apply(o));
    expect(agg.get('eu-west', 'a')).toMatchObject({ bottles: 0, contributors: 0 });
    expect(agg.get('eu-west', 'b')).toMatchObject({ bottles: 0, contributors: 0 });
    // A change after the truncate brings a row back.
    const after = await partition([insert(11, 700, 3)]);
    after.observations.forEach((o) => agg.apply(o));
    expect(await after.save()).toEqual([]);
    expect(agg.get('eu-west', 'a')).toMatchObject({ bottles: 3, contributors: 1 });
  });
  it('a truncate reads only the rows last seen before it, by the route\'s version or the contribution\'s', async () => {
    const sup = 'sup-trunc-read';
    const table = 'public.big';
    const route = (id: number, lsn: number): Route => ({ contributorId: `${sup}/${table}/id=${id}`, supplierId: sup, sourceTable: table, region: 'eu', sku: 'a', supplierSku: 'A', warehouseId: 'w', vintage: null, bottleSizeMl: 750, sourceVersion: v(lsn), deleted: false });
    // 1: re-read after the truncate (route newer); 2: route older, its contribution newer (a change of
    // quantity alone, whose route the embedded runtime does not write); 3: seen last before it; 4: deleted.
    await store.save([route(1, 300), route(2, 100), route(3, 100), { ...route(4, 100), deleted: true }]);
    await new ContributionStore(db.pool).save([
      { region: 'eu', sku: 'a', contributorId: `${sup}/${table}/id=2`, supplierId: sup, warehouseId: 'w', bottleSizeMl: 750, bottles: 5, sourceVersion: v(300), sourceTsMs: 0, deleted: false, keyVersion: 1 },
      { region: 'eu', sku: 'a', contributorId: `${sup}/${table}/id=3`, supplierId: sup, warehouseId: 'w', bottleSizeMl: 750, bottles: 5, sourceVersion: v(100), sourceTsMs: 0, deleted: false, keyVersion: 2 },
    ], 0);
    expect((await store.liveOfTable(sup, table, v(200))).map((r) => r.contributorId)).toEqual([`${sup}/${table}/id=3`]);
    expect((await store.liveOfTable(sup, table, v(50))).map((r) => r.contributorId)).toEqual([]);
  });
});
