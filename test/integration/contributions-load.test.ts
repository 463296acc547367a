import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type pg from 'pg';
import { RegionalAggregator, type Contribution, type KeyWant } from '../../pipelines/aggregate/aggregator.js';
import { aggregateObservations, holdKeys } from '../../pipelines/aggregate/stage.js';
import { ContributionStore } from '../../pipelines/state/contributions.js';
import type { RegionalStock, StockObservation } from '../../schemas/records.js';
import { freshDatabase, rid } from '../support/services.js';

const version = (n: number) => String(n).padStart(20, '0');

function obs(sku: string, c: number, v: number, bottles: number, del: boolean, ml: number): StockObservation {
  return {
    supplierId: 's', warehouseId: `w${c % 3}`, region: 'eu', sku, supplierSku: sku, vintage: null, bottleSizeMl: ml, bottles, op: del ? 'DELETE' : 'UPSERT',
    contributorId: `c${c}`, sourceVersion: version(v), sourceTsMs: 1_700_000_000_000 + v * 1000, ingestTsMs: 0, traceId: 't',
  };
}

/**
 * Loading aggregate keys from a real `cellar.stock_contributions`: a key with many contributors comes as a
 * summary Postgres computes and the rows wanted, and must count exactly what its rows would.
 */
describe('loading aggregate keys from Postgres', () => {
  let db: { url: string; pool: pg.Pool };
  let store: ContributionStore;
  beforeAll(async () => {
    db = await freshDatabase();
    store = new ContributionStore(db.pool);
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  it("gives a wide key's summary as restoring all its rows would, its wanted rows, and small keys whole", async () => {
    const partition = 101;
    const sku = rid('sku');
    const row = (sk: string, c: number, v: number, bottles: number, deleted: boolean, ml: number | null): Contribution => ({
      region: 'eu', sku: sk, contributorId: `c${c}`, supplierId: 's', warehouseId: 'w', bottleSizeMl: ml, bottles: deleted ? 0 : bottles,
      sourceVersion: version(v), sourceTsMs: 1_700_000_000_000 + v * 1000, deleted, keyVersion: v,
    });
    // Wide: 40 rows, some deleted, the latest deleted one carrying another size; a total past 2^32.
    const wide = Array.from({ length: 40 }, (_, c) => row(`${sku}-w`, c, c + 1, c === 7 ? 2 ** 40 : c * 3, c % 4 === 0, c === 36 ? 1500 : 750));
    // Only tombstones: the size is the one of the most recently changed.
    const dead = Array.from({ length: 5 }, (_, c) => row(`${sku}-d`, c, 10 - c, 0, true, c === 0 ? 375 : 750));
    const small = Array.from({ length: 3 }, (_, c) => row(`${sku}-s`, c, c + 1, 5, false, 750));
    await store.save([...wide, ...dead, ...small], partition);

    const wants: KeyWant[] = [
      { region: 'eu', sku: `${sku}-w`, contributors: ['c7', 'c12', 'c999'] },
      { region: 'eu', sku: `${sku}-d`, contributors: ['c3'] },
      { region: 'eu', sku: `${sku}-s`, contributors: ['c1'] },
      { region: 'eu', sku: `${sku}-never`, contributors: ['c1'] },
    ];
    const got = await store.loadKeys(partition, wants, 3);
    const expectSummary = (rows: Contribution[], read: string[]) => {
      const a = new RegionalAggregator();
      a.restore(rows);
      const t = a.get('eu', rows[0]!.sku)!;
      return { region: 'eu', sku: t.sku, version: t.version, bottles: t.bottles, contributors: t.contributors, entries: rows.length, sourceTsMs: t.sourceTsMs, bottleSizeMl: t.bottleSizeMl, read };
    };
    expect(got.partial.sort((a, b) => a.sku.localeCompare(b.sku))).toEqual([expectSummary(dead, ['c3']), expectSummary(wide, ['c7', 'c12', 'c999'])]);
    expect(expectSummary(dead, []).bottleSizeMl).toBe(375);
    const ids = (s: string) => got.rows.filter((c) => c.sku === s).map((c) => c.contributorId).sort();
    // The wanted rows that exist (none for c999: new); small keys whole.
    expect(ids(`${sku}-w`)).toEqual(['c12', 'c7']);
    expect(ids(`${sku}-d`)).toEqual(['c3']);
    expect(ids(`${sku}-s`)).toEqual(['c0', 'c1', 'c2']);
    expect(ids(`${sku}-never`)).toEqual([]);
    expect(got.rows.find((c) => c.contributorId === 'c7' && c.sku === `${sku}-w`)?.bottles).toBe(2 ** 40);

    const entries = await store.loadEntries(partition, [{ region: 'eu', sku: `${sku}-w`, contributors: ['c5', 'c6', 'c404'] }]);
    expect(entries.map((c) => c.contributorId).sort()).toEqual(['c5', 'c6']);
    // A wide key none of whose wanted contributors has a row still comes with its summary.
    const none = await store.loadKeys(partition, [{ region: 'eu', sku: `${sku}-w`, contributors: ['c404'] }], 3);
    expect([none.rows, none.partial]).toEqual([[], [expectSummary(wide, ['c404'])]]);
    // At the limit a key is whole; one past it, a summary.
    expect((await store.loadKeys(partition, [{ region: 'eu', sku: `${sku}-d`, contributors: [] }], 5)).partial).toEqual([]);
    expect((await store.loadKeys(partition, [{ region: 'eu', sku: `${sku}-d`, contributors: [] }], 4)).partial).toEqual([expectSummary(dead, [])]);
    // Another partition's rows are not this aggregator's.
    expect((await store.loadKeys(partition + 1, wants, 3)).rows).toEqual([]);
  });

  it('reads keys by their primary key even when the statistics predate a big snapshot', async () => {
    // Its own database: statistics taken while partition 7 had no row, then 300k rows of it (4 a key), as after
    // a snapshot or a rebalance that brought this aggregator a partition.
    const own = await freshDatabase();
    try {
      await own.pool.query('ALTER TABLE cellar.stock_contributions SET (autovacuum_enabled = false)');
      const fill = (partition: number, from: number, to: number) => own.pool.query(`INSERT INTO cellar.stock_contributions
          (region, sku, contributor_id, supplier_id, warehouse_id, bottles, source_version, source_ts, deleted, key_version, partition, bottle_size_ml)
        SELECT 'eu', 'wine-' || (g / 4), 'c' || g, 's', 'w', 5, lpad(g::text, 20, '0'), now(), false, 1, ${partition}, 750 FROM generate_series(${from}, ${to}) g`);
      await fill(1, 300_000, 399_999);
      await own.pool.query('ANALYZE cellar.stock_contributions');
      await fill(7, 0, 299_999);
      const seen: Array<{ text: string; values: unknown[] }> = [];
      const spy = { query: (text: string, values: unknown[]) => (seen.push({ text, values }), own.pool.query(text, values)) } as unknown as pg.Pool;
      const keys = Array.from({ length: 200 }, (_, i) => ({ region: 'eu', sku: `wine-${(i * 373) % 75_000}`, contributors: [`c${((i * 373) % 75_000) * 4 + 3}`] }));
      const got = await new ContributionStore(spy, 2).loadKeys(7, keys);
      expect(got.partial).toHaveLength(200);
      expect(got.rows).toHaveLength(200);
      expect(seen).toHaveLength(3); // rows up to the limit, then the summaries and the wanted rows
      for (const q of seen) {
        const plan = (await own.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${q.text}`, q.values)).rows.map((r) => r['QUERY PLAN']).join('\n');
        expect(plan, 'each key read through the primary key, never the whole partition').not.toMatch(/stock_contributions_partition|Seq Scan on stock_contributions/);
        expect(plan).toMatch(/stock_contributions_pkey/);
      }
    } finally {
      await own.pool.end();
    }
  });

  it('a bounded aggregator loading keys from their summaries emits exactly what an unbounded one does', async () => {
    let partition = 1_000;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.record({
          c: fc.integer({ min: 0, max: 40 }), v: fc.integer({ min: 1, max: 80 }), s: fc.integer({ min: 0, max: 3 }),
          b: fc.integer({ min: 0, max: 1_000 }), del: fc.boolean(), ml: fc.constantFrom(750, 750, 750, 750, 1500),
        }), { minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 30 }),
        fc.constantFrom(0, 2, 8),
        async (raw, max, wholeUpTo) => {
          // Each run its own keys (the table's key is region, sku, contributor) and partition.
          const emitted = async (bound: number) => {
            const part = partition++;
            const skuPrefix = rid('k');
            const batches = raw.map((b) => b.map((x) => obs(`${skuPrefix}-${x.s}`, x.c, x.v, x.b, x.del, x.ml)));
            const agg = new RegionalAggregator();
            const out: RegionalStock[] = [];
            for (const batch of batches) {
              await holdKeys(agg, batch, (keys) => store.loadKeys(part, keys, wholeUpTo), (wants) => store.loadEntries(part, wants));
              aggregateObservations(agg, batch, (o) => o, () => ({}));
              const d = agg.drain(0);
              out.push(...d.totals);
              await store.save(d.contributions, part);
              agg.evict(bound);
            }
            return out.map((t) => ({ ...t, sku: t.sku.slice(skuPrefix.length) }));
          };
          const unbounded = await emitted(Number.MAX_SAFE_INTEGER);
          expect(await emitted(max)).toEqual(unbounded);
        },
      ),
      { numRuns: 40 },
    );
  });
});
