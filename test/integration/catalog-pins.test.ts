import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { normalizeBatch, type BatchDeps } from '../../pipelines/normalize/batch.js';
import type { ChangeEvent } from '../../pipelines/normalize/debezium.js';
import { MappingInputsStore } from '../../pipelines/normalize/sku-map-store.js';
import { importCatalog, listCatalog } from '../../pipelines/catalog/store.js';
import { northSupplier } from '../support/fixtures.js';
import { freshDatabase, rid } from '../support/services.js';

/**
 * Two normalizers (two processes' catalogs over one Cellar database) see a SKU the catalog does not list
 * for the first time, in two sizes, at once: the first pin persisted wins, and the other normalizer's
 * batch is normalized again and dead-letters its size instead of summing it.
 */
describe('bottle sizes pinned by racing normalizers', () => {
  const supplier = northSupplier('  bottleSizeMl: ml');
  let db: { url: string; pool: pg.Pool };
  let lsn = 1000;

  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  function change(id: number, sku: string, ml: number): ChangeEvent {
    lsn += 8;
    return {
      op: 'c', table: 'public.stock', key: { id }, before: null, after: { id, item_code: sku, depot: 'bdx-1', qty: 6, ml },
      source: {}, sourceVersion: String(lsn).padStart(20, '0'), sourceTsMs: lsn, position: `lsn=${lsn}`,
    };
  }

  async function normalizer(cachedSizes?: number): Promise<{ run: (c: ChangeEvent) => ReturnType<typeof normalizeBatch<number>>; inputs: MappingInputsStore }> {
    const inputs = new MappingInputsStore(db.pool, [supplier], cachedSizes === undefined ? {} : { cachedSizes });
    await inputs.load();
    const mapping = inputs.compile(supplier);
    const deps: BatchDeps = { routes: async () => new Map(), liveOfTable: async () => [], retry: (_w, fn) => fn(), flushPins: () => inputs.flushPins() };
    return { inputs, run: (c) => normalizeBatch([{ key: null, value: null, change: c, ref: 0 }], { supplierId: supplier.id, mapping, table: 'public.stock' }, deps) };
  }

  it('a normalizer whose catalog is behind loses its pin and dead-letters its size', async () => {
    const a = await normalizer();
    const b = await normalizer(); // loaded before a pins anything
    const sku = rid('wine-');
    const first = await a.run(change(1, sku, 750));
    expect(first.observations.map((o) => [o.sku, o.bottleSizeMl])).toEqual([[sku, 750]]);
    const second = await b.run(change(2, sku, 375));
    expect(second.observations).toEqual([]);
    expect(second.rejected.map((r) => r.reason)).toEqual(['bottle_size_mismatch']);
    expect(second.rejected[0]!.message).toContain(`a 750 ml SKU (pinned when first seen from north-cellars; not in the catalog)`);
    const listed = (await listCatalog(db.pool, { prefix: sku })).map((e) => [e.sku, e.bottleSizeMl, e.origin, e.firstSupplier]);
    expect(listed).toEqual([[sku, 750, 'observed', 'north-cellars']]);
  });

  it('of two normalizers pinning at the same moment, exactly one size is ever emitted', async () => {
    for (let trial = 0; trial < 20; trial++) {
      const [a, b] = await Promise.all([normalizer(), normalizer()]);
      const sku = rid('race-');
      const [ra, rb] = await Promise.all([a.run(change(10, sku, 750)), b.run(change(11, sku, 1500))]);
      const emitted = [...ra.observations, ...rb.observations].map((o) => o.bottleSizeMl);
      const pinned = (await listCatalog(db.pool, { prefix: sku }))[0]!.bottleSizeMl;
      expect(emitted, `trial ${trial}`).toEqual([pinned]);
      expect([...ra.rejected, ...rb.rejected].map((r) => r.reason), `trial ${trial}`).toEqual(['bottle_size_mismatch']);
    }
  });

  it('a normalizer that caches one pinned size holds every size it dropped to the pin in Postgres', async () => {
    const n = await normalizer(1);
    const [first, second] = [rid('wine-'), rid('wine-')];
    expect((await n.run(change(20, first, 750))).observations.map((o) => o.bottleSizeMl)).toEqual([750]);
    expect((await n.run(change(21, second, 1500))).observations.map((o) => o.bottleSizeMl)).toEqual([1500]);
    await n.run(change(22, second, 1500)); // trims the cache to one pin: `first` is dropped
    expect(n.inputs.catalog.sizeOf(first)).toBeUndefined();
    // `first` comes back in another size: the claim persisted meets the 750 ml pin, and the batch is refused.
    const back = await n.run(change(23, first, 375));
    expect(back.observations).toEqual([]);
    expect(back.rejected.map((r) => r.reason)).toEqual(['bottle_size_mismatch']);
    expect(back.rejected[0]!.message).toContain('a 750 ml SKU (pinned when first seen from north-cellars; not in the catalog)');
    expect((await n.run(change(24, first, 750))).observations.map((o) => o.bottleSizeMl)).toEqual([750]);
    // A refresh reads only the listed entries: the cache stays bounded, and an import still applies.
    await importCatalog(db.pool, [{ sku: second, bottleSizeMl: 1500, vintage: null, name: null }]);
    await n.inputs.load();
    expect(n.inputs.catalog.describe(second)).toBe('in the catalog');
    expect(n.inputs.catalog.size).toBeLessThanOrEqual(2);
  });

  it('an import that would change the size of a SKU with live stock lists it and writes nothing, unless forced', async () => {
    const sku = rid('wine-');
    await db.pool.query(
      `INSERT INTO cellar.stock_contributions (region, sku, contributor_id, supplier_id, warehouse_id, bottles, source_version, deleted, key_version, partition, bottle_size_ml)
       VALUES ('eu-west', $1, 'north-cellars/public.stock/id=7', 'north-cellars', 'bdx-1', 12, '1', false, 1, -1, 750),
              ('eu-west', $1, 'north-cellars/public.stock/id=8', 'north-cellars', 'bdx-1', 0, '1', true, 2, -1, 375)`,
      [sku],
    );
    const refused = await importCatalog(db.pool, [{ sku, bottleSizeMl: 375, vintage: null, name: null }]);
    expect(refused.written).toBe(false);
    // The deleted contribution is not stock: only the live 750 ml one conflicts.
    expect(refused.conflicts).toEqual([{ sku, region: 'eu-west', contributorId: 'north-cellars/public.stock/id=7', bottleSizeMl: 750, catalogMl: 375 }]);
    expect(await listCatalog(db.pool, { prefix: sku })).toEqual([]);
    const same = await importCatalog(db.pool, [{ sku, bottleSizeMl: 750, vintage: 2019, name: 'A wine' }]);
    expect([same.written, same.inserted, same.conflicts.length]).toEqual([true, 1, 0]);
    const forced = await importCatalog(db.pool, [{ sku, bottleSizeMl: 375, vintage: 2019, name: 'A wine' }], { force: true });
    expect([forced.written, forced.updated, forced.conflicts.length]).toEqual([true, 1, 1]);
    expect((await listCatalog(db.pool, { prefix: sku })).map((e) => [e.bottleSizeMl, e.origin])).toEqual([[375, 'import']]);
  });
});
