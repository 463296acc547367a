import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RegionalAggregator, type Contribution, type StockKey } from '../../pipelines/aggregate/aggregator.js';
import { aggregateObservations, holdKeys } from '../../pipelines/aggregate/stage.js';
import type { RegionalStock, StockObservation } from '../../schemas/records.js';

function obs(contributorId: string, version: number, region: string, sku: string, bottles: number, op: 'UPSERT' | 'DELETE', bottleSizeMl: number): StockObservation {
  return {
    supplierId: 's', warehouseId: 'w', region, sku, supplierSku: sku, vintage: null, bottleSizeMl, bottles, op, contributorId,
    sourceVersion: String(version).padStart(20, '0'), sourceTsMs: version, ingestTsMs: 0, traceId: 't',
  };
}

/**
 * Runs batches through an aggregator the way both runtimes do: load the keys it does not hold, apply,
 * drain, persist the drained contributions (`saved`, Postgres' role here), then evict beyond `max`.
 */
async function run(batches: StockObservation[][], max: number): Promise<{ totals: RegionalStock[]; letters: string[]; loads: number; peak: number; after: number }> {
  const saved = new Map<string, Contribution>();
  const agg = new RegionalAggregator();
  const out: RegionalStock[] = [];
  const letters: string[] = [];
  let loads = 0;
  let peak = 0;
  let after = 0;
  const load = async (keys: StockKey[]) => {
    loads += keys.length;
    const want = new Set(keys.map((k) => `${k.region}|${k.sku}`));
    return [...saved.values()].filter((c) => want.has(`${c.region}|${c.sku}`));
  };
  for (const batch of batches) {
    await holdKeys(agg, batch, load);
    const r = aggregateObservations(agg, batch, (o) => o, () => ({}));
    letters.push(...r.letters.map((l) => `${l.reason}:${l.message}`));
    const { totals, contributions } = agg.drain(0);
    out.push(...totals);
    for (const c of contributions) saved.set(`${c.region}|${c.sku}|${c.contributorId}`, { ...c });
    peak = Math.max(peak, agg.size);
    agg.evict(max);
    after = Math.max(after, agg.size);
  }
  return { totals: out, letters, loads, peak, after };
}

describe('a bounded aggregator (memory capped, keys loaded again when used)', () => {
  it('emits exactly what an unbounded one emits, under duplicates, reordering, deletes, moves and size changes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.record({
          c: fc.integer({ min: 0, max: 30 }), v: fc.integer({ min: 1, max: 60 }), r: fc.constantFrom('eu', 'us'), s: fc.integer({ min: 0, max: 12 }),
          b: fc.integer({ min: 0, max: 50 }), del: fc.boolean(), ml: fc.constantFrom(750, 750, 750, 1500),
        }), { minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 25 }),
        fc.integer({ min: 1, max: 12 }),
        async (raw, max) => {
          const batches = raw.map((b) => b.map((x) => obs(`c${x.c}`, x.v, x.r, `sku-${x.s}`, x.b, x.del ? 'DELETE' : 'UPSERT', x.ml)));
          const unbounded = await run(batches, Number.MAX_SAFE_INTEGER);
          const bounded = await run(batches, max);
          expect(bounded.totals).toEqual(unbounded.totals);
          expect(bounded.letters).toEqual(unbounded.letters);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps memory near the bound and loads evicted keys back', async () => {
    const batches = Array.from({ length: 50 }, (_, i) => Array.from({ length: 40 }, (_, j) => obs(`c${(i * 40 + j) % 1000}`, i + 1, 'eu', `sku-${(i * 40 + j) % 200}`, j, 'UPSERT', 750)));
    const r = await run(batches, 100);
    // Between batches at most the bound; within one, the bound plus the keys the batch loaded (5 rows each).
    expect(r.after).toBeLessThanOrEqual(100);
    expect(r.peak).toBeLessThanOrEqual(100 + 40 * 5);
    expect(r.loads).toBeGreaterThan(200); // keys came back after eviction
    const unbounded = await run(batches, Number.MAX_SAFE_INTEGER);
    expect(r.totals).toEqual(unbounded.totals);
  });

  it('never drops a key with undrained changes', () => {
    const a = new RegionalAggregator();
    a.apply(obs('c1', 1, 'eu', 'x', 5, 'UPSERT', 750));
    a.apply(obs('c2', 1, 'eu', 'y', 5, 'UPSERT', 750));
    expect(a.evict(0)).toBe(0);
    a.drain(0);
    expect(a.evict(0)).toBe(2);
    expect(a.holds('eu', 'x')).toBe(false);
    expect(a.size).toBe(0);
  });
});
