import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RegionalAggregator } from '../../pipelines/aggregate/aggregator.js';
import type { StockObservation } from '../../schemas/records.js';

function obs(contributorId: string, version: number, region: string, sku: string, bottles: number, op: 'UPSERT' | 'DELETE' = 'UPSERT', bottleSizeMl = 750): StockObservation {
  return {
    supplierId: 's', warehouseId: 'w', region, sku, supplierSku: sku, vintage: null, bottleSizeMl, bottles, op, contributorId,
    sourceVersion: String(version).padStart(20, '0'), sourceTsMs: version, ingestTsMs: 0, traceId: 't',
  };
}

describe('RegionalAggregator', () => {
  it('sums contributors and keeps the latest version of each', () => {
    const a = new RegionalAggregator();
    a.apply(obs('c1', 1, 'r', 'x', 10));
    a.apply(obs('c2', 1, 'r', 'x', 5));
    a.apply(obs('c1', 3, 'r', 'x', 7));
    expect(a.apply(obs('c1', 2, 'r', 'x', 100))).toBe('stale');
    expect(a.apply(obs('c1', 3, 'r', 'x', 7))).toBe('stale');
    expect(a.get('r', 'x')).toMatchObject({ bottles: 12, contributors: 2, version: 3 });
  });

  it('contributions drained stay as drained while later changes update the same contributors', () => {
    // A drained group is written while the next one is applied: what it writes must not move under it.
    const a = new RegionalAggregator();
    a.apply(obs('c1', 1, 'r', 'x', 10));
    a.apply(obs('c2', 1, 'r', 'x', 4));
    const first = a.drain(0).contributions;
    const asDrained = structuredClone(first);
    a.apply(obs('c1', 2, 'r', 'x', 3));
    a.apply(obs('c2', 2, 'r', 'x', 0, 'DELETE'));
    expect(first).toEqual(asDrained);
    const second = a.drain(0).contributions;
    expect(second.map((c) => [c.contributorId, c.bottles, c.deleted, c.keyVersion]).sort()).toEqual([['c1', 3, false, 3], ['c2', 0, true, 4]]);
    a.apply(obs('c1', 3, 'r', 'x', 8));
    expect(second.find((c) => c.contributorId === 'c1')).toMatchObject({ bottles: 3, keyVersion: 3 });
    expect(a.get('r', 'x')).toMatchObject({ bottles: 8, contributors: 1 });
  });

  it('a delete removes the contributor and a late older upsert does not bring it back', () => {
    const a = new RegionalAggregator();
    a.apply(obs('c1', 1, 'r', 'x', 10));
    a.apply(obs('c1', 5, 'r', 'x', 0, 'DELETE'));
    a.apply(obs('c1', 4, 'r', 'x', 10));
    expect(a.get('r', 'x')).toMatchObject({ bottles: 0, contributors: 0 });
    a.apply(obs('c1', 6, 'r', 'x', 3));
    expect(a.get('r', 'x')).toMatchObject({ bottles: 3, contributors: 1 });
  });

  it('drains one record per changed key with the latest version, and the changed contributions', () => {
    const a = new RegionalAggregator();
    a.apply(obs('c1', 1, 'r', 'x', 1));
    a.apply(obs('c1', 2, 'r', 'x', 2));
    a.apply(obs('c2', 1, 'r', 'y', 9));
    const { totals, contributions } = a.drain(0);
    expect(totals.map((t) => [t.sku, t.bottles, t.version]).sort()).toEqual([['x', 2, 2], ['y', 9, 1]]);
    expect(contributions.map((c) => [c.contributorId, c.bottles, c.keyVersion]).sort()).toEqual([['c1', 2, 2], ['c2', 9, 1]]);
    expect(a.drain(0).totals).toEqual([]);
  });

  it('restores from persisted contributions with the same totals and versions', () => {
    const a = new RegionalAggregator();
    for (const o of [obs('c1', 1, 'r', 'x', 4), obs('c2', 2, 'r', 'x', 6), obs('c1', 3, 'r', 'x', 0, 'DELETE')]) a.apply(o);
    const { contributions } = a.drain(0);
    const b = new RegionalAggregator();
    b.restore(contributions);
    expect(b.get('r', 'x')).toEqual(a.get('r', 'x'));
  });

  describe('bottle sizes', () => {
    const up = (c: string, v: number, bottles: number, ml: number) => obs(c, v, 'r', 'x', bottles, 'UPSERT', ml);
    const del = (c: string, v: number, ml = 750) => obs(c, v, 'r', 'x', 0, 'DELETE', ml);

    it('refuses an upsert of another size than the key\'s other live contributors and changes nothing', () => {
      const a = new RegionalAggregator();
      expect(a.apply(up('c1', 1, 10, 750))).toBe('applied');
      expect(a.apply(up('c2', 2, 5, 750))).toBe('applied');
      a.drain(0);
      const before = a.get('r', 'x');
      expect(before).toMatchObject({ bottleSizeMl: 750, bottles: 15, contributors: 2, version: 2 });
      // A new contributor of another size, and an existing one changing size while another is live.
      expect(a.apply(up('c3', 3, 7, 375))).toBe('bottle_size_mismatch');
      expect(a.apply(up('c2', 4, 9, 1500))).toBe('bottle_size_mismatch');
      expect(a.get('r', 'x')).toEqual(before);
      expect(a.sizeOf('r', 'x')).toBe(750);
      expect(a.size).toBe(2);
      expect(a.drain(0)).toEqual({ totals: [], contributions: [], history: [] });
      // The refused versions were not recorded: c2's same version at the right size still applies.
      expect(a.apply(up('c2', 4, 9, 750))).toBe('applied');
      expect(a.get('r', 'x')).toMatchObject({ bottles: 19, contributors: 2, version: 3, bottleSizeMl: 750 });
    });

    it('lets a key\'s only live contributor change size', () => {
      const a = new RegionalAggregator();
      a.apply(up('c1', 1, 10, 750));
      a.apply(up('c2', 2, 4, 750));
      a.apply(del('c2', 3));
      expect(a.apply(up('c1', 4, 20, 1500))).toBe('applied');
      expect(a.get('r', 'x')).toMatchObject({ bottleSizeMl: 1500, bottles: 20, contributors: 1 });
      expect(a.sizeOf('r', 'x')).toBe(1500);
      // Now the 750 ml contributor is the odd one out.
      expect(a.apply(up('c2', 5, 4, 750))).toBe('bottle_size_mismatch');
      expect(a.get('r', 'x')).toMatchObject({ bottleSizeMl: 1500, bottles: 20, contributors: 1 });
    });

    it('accepts a new size once every contributor is deleted, and deletes are never refused', () => {
      const a = new RegionalAggregator();
      a.apply(up('c1', 1, 10, 750));
      a.apply(up('c2', 2, 5, 750));
      // A delete carrying another size (e.g. of a row whose upsert was refused) still applies.
      expect(a.apply(del('c3', 3, 375))).toBe('applied');
      expect(a.apply(del('c1', 4))).toBe('applied');
      expect(a.apply(up('c3', 5, 8, 375))).toBe('bottle_size_mismatch');
      expect(a.apply(del('c2', 6))).toBe('applied');
      expect(a.get('r', 'x')).toMatchObject({ bottles: 0, contributors: 0 });
      expect(a.sizeOf('r', 'x')).toBeUndefined();
      expect(a.apply(up('c3', 7, 8, 375))).toBe('applied');
      expect(a.get('r', 'x')).toMatchObject({ bottleSizeMl: 375, bottles: 8, contributors: 1 });
      expect(a.apply(up('c1', 8, 1, 750))).toBe('bottle_size_mismatch');
    });

    it('restore keeps the size of the live contributors', () => {
      const a = new RegionalAggregator();
      a.apply(up('c1', 1, 10, 1500));
      a.apply(up('c2', 2, 5, 1500));
      a.apply(obs('c9', 3, 'r', 'y', 2, 'UPSERT', 375));
      const b = new RegionalAggregator();
      b.restore(a.drain(0).contributions);
      expect(b.get('r', 'x')).toEqual(a.get('r', 'x'));
      expect(b.get('r', 'x')?.bottleSizeMl).toBe(1500);
      expect(b.get('r', 'y')?.bottleSizeMl).toBe(375);
      expect(b.apply(up('c3', 4, 6, 750))).toBe('bottle_size_mismatch');
      expect(b.apply(obs('c10', 4, 'r', 'y', 2, 'UPSERT', 750))).toBe('bottle_size_mismatch');
      expect(b.apply(up('c3', 4, 6, 1500))).toBe('applied');
      expect(b.get('r', 'x')).toMatchObject({ bottleSizeMl: 1500, bottles: 21, contributors: 3 });
    });

    it('restore of a key whose contributors were all deleted gives the same total, size included', () => {
      const a = new RegionalAggregator();
      a.apply(up('c1', 1, 10, 375));
      a.apply(del('c1', 2, 375));
      const b = new RegionalAggregator();
      b.restore(a.drain(0).contributions);
      expect(a.get('r', 'x')?.bottleSizeMl).toBe(375);
      expect(b.get('r', 'x')).toEqual(a.get('r', 'x'));
    });

    it('a mismatch refused, then the key emptied, then the refused row changed again: counted once at its size', () => {
      const a = new RegionalAggregator();
      a.apply(up('c1', 1, 12, 750));
      expect(a.apply(up('c2', 2, 6, 1500))).toBe('bottle_size_mismatch');
      a.apply(del('c1', 3));
      expect(a.apply(up('c2', 4, 6, 1500))).toBe('applied');
      expect(a.apply(up('c2', 4, 6, 1500))).toBe('stale');
      expect(a.get('r', 'x')).toMatchObject({ bottleSizeMl: 1500, bottles: 6, contributors: 1 });
    });
  });

  /**
   * Random histories over several contributors, keys and moves; delivered with duplicates, in chunks,
   * and replayed from random earlier positions onto state restored from a random later checkpoint.
   * The totals must equal those computed from each contributor's latest state.
   */
  it('property: totals equal the truth under duplicates, replays and restores', () => {
    const event = fc.record({
      c: fc.integer({ min: 0, max: 5 }),
      region: fc.constantFrom('r1', 'r2'),
      sku: fc.constantFrom('a', 'b', 'c'),
      bottles: fc.integer({ min: 0, max: 50 }),
      del: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 60 }), fc.nat(), fc.nat(), (events, cut, replayFrom) => {
        // Build observations as the normalizer would: a move emits DELETE at the old key first.
        const where = new Map<number, { region: string; sku: string } | null>();
        const stream: StockObservation[] = [];
        events.forEach((e, i) => {
          const v = i + 1;
          const prev = where.get(e.c);
          if (e.del) {
            if (prev) stream.push(obs(`c${e.c}`, v, prev.region, prev.sku, 0, 'DELETE'));
            where.set(e.c, null);
          } else {
            if (prev && (prev.region !== e.region || prev.sku !== e.sku)) stream.push(obs(`c${e.c}`, v, prev.region, prev.sku, 0, 'DELETE'));
            stream.push(obs(`c${e.c}`, v, e.region, e.sku, e.bottles));
            where.set(e.c, { region: e.region, sku: e.sku });
          }
        });
        const truth = new Map<string, number>();
        const last = new Map<number, { region: string; sku: string; bottles: number } | null>();
        for (const e of events) last.set(e.c, e.del ? null : { region: e.region, sku: e.sku, bottles: e.bottles });
        for (const l of last.values()) if (l) truth.set(`${l.region}|${l.sku}`, (truth.get(`${l.region}|${l.sku}`) ?? 0) + l.bottles);

        // First run: process a prefix, persist, "crash".
        const k = cut % (stream.length + 1);
        const first = new RegionalAggregator();
        for (const o of stream.slice(0, k)) first.apply(o);
        const persisted = first.drain(0).contributions;
        // Restart: restore, then replay from an earlier committed position with duplicates.
        const second = new RegionalAggregator();
        second.restore(persisted);
        const from = k === 0 ? 0 : replayFrom % (k + 1);
        for (const o of stream.slice(from)) {
          second.apply(o);
          if (o.bottles % 3 === 0) second.apply(o);
        }
        const got = new Map(second.totals().filter((t) => t.bottles !== 0 || t.contributors !== 0).map((t) => [`${t.region}|${t.sku}`, t.bottles]));
        for (const [key, b] of truth) expect(got.get(key) ?? 0).toBe(b);
        for (const [key, b] of got) expect(truth.get(key) ?? 0).toBe(b);

        // Same input in one pass gives the same versions as the crash-and-replay run.
        const once = new RegionalAggregator();
        for (const o of stream) once.apply(o);
        const versions = (a: RegionalAggregator) => new Map(a.totals().map((t) => [`${t.region}|${t.sku}`, t.version]));
        expect(versions(second)).toEqual(versions(once));
      }),
      { numRuns: 300 },
    );
  });
});
