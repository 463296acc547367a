import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { deriveEvents, globRegExp, matchesFilter, stockEventId, Thresholds, type StockLevelEvent } from '../../pipelines/events/derive.js';
import type { StockObservation } from '../../schemas/records.js';
import { historyOfBatches } from '../support/aggregation.js';

const obs = (c: string, version: number, sku: string, bottles: number, op: 'UPSERT' | 'DELETE' = 'UPSERT', region = 'eu-west'): StockObservation => ({
  supplierId: 's', warehouseId: `w-${c}`, region, sku, supplierSku: sku, vintage: null, bottleSizeMl: 750, bottles, op, contributorId: c,
  sourceVersion: String(version).padStart(20, '0'), sourceTsMs: 1_000 + version, ingestTsMs: 0, traceId: 't',
});

const historyOf = historyOfBatches;

/**
 * The truth, without the aggregator: each contributor's newest state wins by version; after every
 * change that takes effect the key's total is the sum of live rows. Events follow from consecutive totals.
 */
function truthEvents(list: StockObservation[], thresholds: Thresholds): Array<Omit<StockLevelEvent, 'id'>> {
  const rows = new Map<string, Map<string, { v: string; n: number; live: boolean }>>();
  const versions = new Map<string, number>();
  const totals = new Map<string, number>();
  const out: Array<Omit<StockLevelEvent, 'id'>> = [];
  for (const o of list) {
    const k = `${o.region}|${o.sku}`;
    const m = rows.get(k) ?? new Map();
    rows.set(k, m);
    const prev = m.get(o.contributorId);
    if (prev && o.sourceVersion <= prev.v) continue;
    m.set(o.contributorId, { v: o.sourceVersion, n: o.bottles, live: o.op === 'UPSERT' });
    const before = totals.get(k) ?? 0;
    const after = [...m.values()].reduce((s, r) => s + (r.live ? r.n : 0), 0);
    const version = (versions.get(k) ?? 0) + 1;
    versions.set(k, version);
    totals.set(k, after);
    const t = thresholds.of(o.region, o.sku);
    const type = before > 0 && after <= 0 ? 'sold_out' : before <= 0 && after > 0 ? 'back_in_stock' : t !== null && after > 0 && before > t && after <= t ? 'low_stock' : undefined;
    if (type) out.push({ type, region: o.region, sku: o.sku, version, before, after, threshold: type === 'low_stock' ? t : null, sourceTsMs: o.sourceTsMs });
  }
  return out;
}

const RULES = new Thresholds([{ region: '*', skuPattern: '*', threshold: 10 }, { region: 'eu-west', skuPattern: 'x*', threshold: 25 }]);

describe('stock events', () => {
  it('sold out, back in stock and low stock from consecutive totals, with ids from (region, sku, version, type)', () => {
    const h = historyOf([obs('a', 1, 'x', 30), obs('b', 1, 'x', 5), obs('a', 2, 'x', 20), obs('b', 2, 'x', 0, 'DELETE'), obs('a', 3, 'x', 0), obs('a', 4, 'x', 3), obs('a', 5, 'y', 12), obs('a', 6, 'y', 9)], 3);
    const events = deriveEvents(h, RULES);
    expect(events.map((e) => [e.sku, e.type, e.before, e.after, e.version, e.threshold])).toEqual([
      ['x', 'back_in_stock', 0, 30, 1, null],
      ['x', 'low_stock', 35, 25, 3, 25],
      ['x', 'sold_out', 20, 0, 5, null],
      ['x', 'back_in_stock', 0, 3, 6, null],
      ['y', 'back_in_stock', 0, 12, 1, null],
      ['y', 'low_stock', 12, 9, 2, 10],
    ]);
    expect(events[0]!.id).toBe(stockEventId('eu-west', 'x', 1, 'back_in_stock'));
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });

  it('the most specific threshold rule wins: exact region, then the longest pattern', () => {
    const t = new Thresholds([{ region: '*', skuPattern: '*', threshold: 1 }, { region: '*', skuPattern: 'chateau-*', threshold: 2 }, { region: 'eu-west', skuPattern: '*', threshold: 3 }, { region: 'eu-west', skuPattern: 'chateau-*-750', threshold: 4 }]);
    expect(t.of('us-east', 'rioja')).toBe(1);
    expect(t.of('us-east', 'chateau-x-750')).toBe(2);
    expect(t.of('eu-west', 'rioja')).toBe(3);
    expect(t.of('eu-west', 'chateau-x-750')).toBe(4);
    expect(new Thresholds([]).of('eu-west', 'x')).toBeNull();
    expect(globRegExp('a.b*(c)').test('a.b-x(c)')).toBe(true);
    expect(globRegExp('a.b*(c)').test('aXb(c)')).toBe(false);
  });

  it('filters by type, region, SKU and prefix', () => {
    const e = { type: 'sold_out' as const, region: 'eu-west', sku: 'chateau-1' };
    expect(matchesFilter(e, {})).toBe(true);
    expect(matchesFilter(e, { types: ['low_stock', 'sold_out'], region: 'eu-west', skuPrefix: 'chateau' })).toBe(true);
    expect(matchesFilter(e, { types: ['back_in_stock'] })).toBe(false);
    expect(matchesFilter(e, { region: 'us-east' })).toBe(false);
    expect(matchesFilter(e, { sku: 'chateau-2' })).toBe(false);
  });

  it('equal the events of the truth\'s sequence of totals under duplicates, reordering, batching and restarts (property)', () => {
    const arb = fc.array(fc.record({ c: fc.constantFrom('a', 'b', 'c'), v: fc.integer({ min: 1, max: 40 }), sku: fc.constantFrom('x', 'y'), region: fc.constantFrom('eu-west', 'us-east'), n: fc.integer({ min: 0, max: 40 }), del: fc.boolean() }), { maxLength: 80 })
      .map((xs) => xs.map((x) => obs(x.c, x.v, x.sku, x.n, x.del ? 'DELETE' : 'UPSERT', x.region)));
    fc.assert(fc.property(arb, fc.integer({ min: 1, max: 9 }), fc.nat(6), (list, size, restartAt) => {
      const truth = truthEvents(list, RULES);
      const once = deriveEvents(historyOf(list, size), RULES);
      expect(once.map(({ id: _id, ...e }) => e)).toEqual(truth);
      // A replay after a restart derives some events again: with the same ids, and nothing else.
      const replayed = deriveEvents(historyOf(list, size, restartAt), RULES);
      expect([...new Map(replayed.map((e) => [e.id, e])).values()]).toEqual(once);
    }), { numRuns: 400 });
  });
});
