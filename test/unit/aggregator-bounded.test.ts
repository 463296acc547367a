import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RegionalAggregator, type Contribution, type KeyLoad, type KeyWant, type StockKey } from '../../pipelines/aggregate/aggregator.js';
import { aggregateObservations, holdKeys } from '../../pipelines/aggregate/stage.js';
import type { RegionalStock, StockObservation } from '../../schemas/records.js';

function obs(contributorId: string, version: number, region: string, sku: string, bottles: number, op: 'UPSERT' | 'DELETE', bottleSizeMl: number): StockObservation {
  return {
    supplierId: 's', warehouseId: 'w', region, sku, supplierSku: sku, vintage: null, bottleSizeMl, bottles, op, contributorId,
    sourceVersion: String(version).padStart(20, '0'), sourceTsMs: version, ingestTsMs: 0, traceId: 't',
  };
}

/**
 * What `cellar.stock_contributions` answers (ContributionStore.loadKeys / loadEntries, Postgres' role
 * here): a key of at most `wholeUpTo` rows whole; a bigger one as its summary (what restoring all its rows
 * gives) and the rows of the contributors wanted.
 */
function storeOver(saved: Map<string, Contribution>, wholeUpTo: number, readSome = false) {
  const rowsOf = (k: StockKey) => [...saved.values()].filter((c) => c.region === k.region && c.sku === k.sku);
  return {
    loadKeys: async (keys: KeyWant[]): Promise<KeyLoad> => {
      const out: KeyLoad = { rows: [], partial: [] };
      for (const k of keys) {
        const rows = rowsOf(k);
        if (rows.length <= wholeUpTo) {
          out.rows.push(...rows);
          continue;
        }
        const whole = new RegionalAggregator();
        whole.restore(rows);
        const t = whole.get(k.region, k.sku)!;
        // readSome: as a read ahead that saw other changes than the batch's, some of the contributors wanted.
        const read = readSome ? k.contributors.filter((_, i) => i % 2 === 1) : k.contributors;
        out.partial.push({ region: k.region, sku: k.sku, version: t.version, bottles: t.bottles, contributors: t.contributors, entries: rows.length, sourceTsMs: t.sourceTsMs, bottleSizeMl: t.bottleSizeMl, read });
        out.rows.push(...rows.filter((c) => read.includes(c.contributorId)));
      }
      return out;
    },
    loadEntries: async (wants: KeyWant[]) => wants.flatMap((w) => rowsOf(w).filter((c) => w.contributors.includes(c.contributorId))),
  };
}

/**
 * Runs batches through an aggregator the way both runtimes do: load the keys it does not hold, apply,
 * drain, persist the drained contributions (`saved`, Postgres' role here), then evict beyond `max`.
 */
async function run(batches: StockObservation[][], max: number, wholeUpTo = 16, readSome = false): Promise<{ totals: RegionalStock[]; letters: string[]; loads: number; peak: number; after: number }> {
  const saved = new Map<string, Contribution>();
  const store = storeOver(saved, wholeUpTo, readSome);
  const agg = new RegionalAggregator();
  const out: RegionalStock[] = [];
  const letters: string[] = [];
  let loads = 0;
  let peak = 0;
  let after = 0;
  const load = async (keys: KeyWant[]) => {
    loads += keys.length;
    return store.loadKeys(keys);
  };
  for (const batch of batches) {
    await holdKeys(agg, batch, load, store.loadEntries);
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
        fc.constantFrom(0, 1, 3, 16),
        fc.boolean(),
        async (raw, max, wholeUpTo, readSome) => {
          const batches = raw.map((b) => b.map((x) => obs(`c${x.c}`, x.v, x.r, `sku-${x.s}`, x.b, x.del ? 'DELETE' : 'UPSERT', x.ml)));
          const unbounded = await run(batches, Number.MAX_SAFE_INTEGER);
          // wholeUpTo 0: every key loaded again is loaded from its summary, holding only what its changes touch.
          const bounded = await run(batches, max, wholeUpTo, readSome);
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

  it('holds a total loaded from its sums with only the contributors read, and reads the others before counting them', () => {
    const a = new RegionalAggregator();
    const key = { region: 'eu', sku: 'x', contributors: ['c1', 'c9'] };
    const c1: Contribution = { region: 'eu', sku: 'x', contributorId: 'c1', supplierId: 's', warehouseId: 'w', bottleSizeMl: 750, bottles: 5, sourceVersion: '00000000000000000003', sourceTsMs: 3, deleted: false, keyVersion: 40 };
    // 120 bottles over 30 live contributors; c1 read (5 bottles), c9 has no row yet.
    a.adopt([key], [c1], [{ region: 'eu', sku: 'x', version: 57, bottles: 120, contributors: 30, entries: 35, sourceTsMs: 9, bottleSizeMl: 750, read: key.contributors }]);
    expect(a.size).toBe(2);
    expect(a.get('eu', 'x')).toMatchObject({ bottles: 120, contributors: 30, version: 57 });
    expect(a.apply(obs('c1', 4, 'eu', 'x', 8, 'UPSERT', 750))).toBe('applied');
    expect(a.apply(obs('c9', 1, 'eu', 'x', 2, 'UPSERT', 750))).toBe('applied');
    expect(a.get('eu', 'x')).toMatchObject({ bottles: 125, contributors: 31, version: 59 });
    expect(a.apply(obs('c1', 3, 'eu', 'x', 1, 'UPSERT', 750))).toBe('stale');
    // c2 was neither read nor wanted: listed as missing, and never counted blind.
    const c2 = obs('c2', 9, 'eu', 'x', 1, 'UPSERT', 750);
    expect(a.missing([c2, c2])).toEqual([{ region: 'eu', sku: 'x', contributors: ['c2'] }]);
    expect(() => a.apply(c2)).toThrow(/holds only some contributors and not c2/);
    a.adoptEntries(a.missing([c2]), [{ ...c1, contributorId: 'c2', bottles: 7, sourceVersion: '00000000000000000010' }]);
    expect(a.apply(c2)).toBe('stale');
    expect(a.get('eu', 'x')).toMatchObject({ bottles: 125, version: 59 });
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
