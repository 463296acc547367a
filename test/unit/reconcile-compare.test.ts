import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { contributionCause, contributionMatches, keyDrift, keyOfContributor, repairVersion } from '../../pipelines/reconcile/compare.js';

describe('reconciliation core', () => {
  it('recovers a primary key from a contributor id, whatever the column order, values with commas included', () => {
    const tables = new Map([['public.stock', ['wh', 'sku']], ['inv.levels', ['id']]]);
    expect(keyOfContributor('acme/public.stock/sku=a,b=c,wh=w1', 'acme', tables)).toEqual({ table: 'public.stock', key: { sku: 'a,b=c', wh: 'w1' } });
    expect(keyOfContributor('acme/inv.levels/id=42', 'acme', tables)).toEqual({ table: 'inv.levels', key: { id: '42' } });
    expect(keyOfContributor('other/inv.levels/id=42', 'acme', tables)).toBeUndefined();
    expect(keyOfContributor('acme/unknown.t/id=42', 'acme', tables)).toBeUndefined();
    expect(keyOfContributor('acme/public.stock/sku=a', 'acme', tables)).toBeUndefined(); // a key column missing
  });

  it('a contribution counted at another bottle size than its source row is drift, named as such', () => {
    const at = { region: 'r', sku: 's', bottles: 6 };
    expect(contributionMatches({ ...at, bottleSizeMl: 750 }, { ...at, bottleSizeMl: 750 })).toBe(true);
    expect(contributionMatches({ ...at, bottleSizeMl: 375 }, { ...at, bottleSizeMl: 750 })).toBe(false);
    expect(contributionCause({ ...at, bottleSizeMl: 375 }, { ...at, bottleSizeMl: 750 })).toMatch(/counted as 750 ml bottles, the source row is 375 ml/);
    // Contributions written before sizes were kept carry none: not compared.
    expect(contributionMatches({ ...at, bottleSizeMl: 375 }, { ...at, bottleSizeMl: null })).toBe(true);
  });

  it('a correction sorts above the version Cellar holds and below every later real version', () => {
    const digits = (n: number) => fc.stringMatching(new RegExp(`^[0-9]{${n}}$`));
    fc.assert(
      fc.property(digits(20), digits(20), (held, later) => {
        fc.pre(later > held);
        const v = repairVersion(held);
        expect(v > held).toBe(true);
        expect(v < later).toBe(true);
        expect(repairVersion(v) > v && repairVersion(v) < later).toBe(true); // a second correction too
      }),
      { numRuns: 500 },
    );
    // A row Cellar never saw: below every real version (digits or hex letters), so real changes still apply.
    expect(repairVersion(undefined) < '0'.repeat(20)).toBe(true);
  });

  it('tells apart a wrong total from a wrong Redis field, counting a missing row or field as 0', () => {
    expect(keyDrift({ region: 'r', sku: 's', contributed: 10, stored: 10, cached: 10 })).toBeUndefined();
    expect(keyDrift({ region: 'r', sku: 's', contributed: 0, stored: null, cached: null })).toBeUndefined();
    expect(keyDrift({ region: 'r', sku: 's', contributed: 10, stored: 17, cached: 17 })).toMatchObject({ kind: 'regional_total', expected: 10, actual: 17 });
    expect(keyDrift({ region: 'r', sku: 's', contributed: 10, stored: 10, cached: null })).toMatchObject({ kind: 'redis', expected: 10, actual: null });
    expect(keyDrift({ region: 'r', sku: 's', contributed: 10, stored: 10, cached: 3 })).toMatchObject({ kind: 'redis', actual: 3 });
  });

  it('compares placements by region, SKU and bottles', () => {
    const a = { region: 'r', sku: 's', bottles: 6 };
    expect(contributionMatches(a, { ...a })).toBe(true);
    expect(contributionMatches(undefined, undefined)).toBe(true);
    expect(contributionMatches(a, undefined)).toBe(false);
    expect(contributionMatches(a, { ...a, sku: 't' })).toBe(false);
    expect(contributionMatches(a, { ...a, bottles: 7 })).toBe(false);
  });
});
