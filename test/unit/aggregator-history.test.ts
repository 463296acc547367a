import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { StockObservation } from '../../schemas/records.js';
import { historyOfBatches } from '../support/aggregation.js';

const obs = (contributorId: string, version: number, sku: string, bottles: number, op: 'UPSERT' | 'DELETE' = 'UPSERT'): StockObservation => ({
  supplierId: 's', warehouseId: `w-${contributorId}`, region: 'r', sku, supplierSku: sku, vintage: null, bottleSizeMl: 750, bottles, op, contributorId,
  sourceVersion: String(version).padStart(20, '0'), sourceTsMs: 1_000 + version, ingestTsMs: 0, traceId: 't',
});

const historyOf = historyOfBatches;

const arbObs = fc.array(fc.record({ c: fc.constantFrom('a', 'b', 'c'), v: fc.integer({ min: 1, max: 40 }), sku: fc.constantFrom('x', 'y'), n: fc.integer({ min: 0, max: 50 }), del: fc.boolean() }), { maxLength: 60 })
  .map((xs) => xs.map((x) => obs(x.c, x.v, x.sku, x.n, x.del ? 'DELETE' : 'UPSERT')));

describe('stock history from the aggregator', () => {
  it('one entry per effective change: versions 1..N per key, each total the last plus its delta, duplicates add nothing', () => {
    const h = historyOf([obs('a', 1, 'x', 10), obs('b', 1, 'x', 5), obs('a', 1, 'x', 10), obs('a', 2, 'x', 3), obs('b', 3, 'x', 0, 'DELETE'), obs('a', 1, 'x', 99)], 2);
    expect(h.map((e) => [e.version, e.bottles, e.delta, e.contributorId, e.op])).toEqual([[1, 10, 10, 'a', 'UPSERT'], [2, 15, 5, 'b', 'UPSERT'], [3, 8, -7, 'a', 'UPSERT'], [4, 3, -5, 'b', 'DELETE']]);
  });

  it('is the same whatever the batch boundaries, and replays after a restart repeat entries exactly (kept once by their key)', () => {
    fc.assert(fc.property(arbObs, fc.integer({ min: 1, max: 7 }), (list, size) => {
      const whole = historyOf(list, list.length || 1);
      const batched = historyOf(list, size);
      expect(batched).toEqual(whole);
      // After a restart from the persisted state, redelivered observations add nothing and later ones get the same versions.
      expect(historyOf(list, size, 0)).toEqual(whole);
      expect(historyOf(list, size, 2)).toEqual(whole);
      for (const sku of ['x', 'y']) {
        const rows = whole.filter((e) => e.sku === sku);
        rows.forEach((e, i) => expect(e.bottles - e.delta).toBe(i ? rows[i - 1]!.bottles : 0));
      }
    }), { numRuns: 300 });
  });
});
