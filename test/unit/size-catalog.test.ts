import { describe, expect, it } from 'vitest';
import { SizeCatalog } from '../../pipelines/catalog/catalog.js';

describe('SizeCatalog with a bounded cache of pinned sizes', () => {
  it('drops the oldest pins beyond its bound, never a listed entry or a pin not yet persisted', () => {
    const c = new SizeCatalog([{ sku: 'listed', bottleSizeMl: 750, origin: 'import', firstSupplier: null }], 2);
    for (const sku of ['a', 'b', 'c']) c.claim(sku, 375, 's1');
    expect(c.trim()).toBe(0); // all three wait to be persisted
    const pins = c.takePending();
    expect(pins.map((p) => p.sku)).toEqual(['a', 'b', 'c']);
    c.requeue([pins[0]!]); // persisting `a` failed
    expect(c.trim()).toBe(1);
    expect([c.sizeOf('a'), c.sizeOf('b'), c.sizeOf('c'), c.sizeOf('listed')]).toEqual([375, undefined, 375, 750]);
    // A dropped SKU is pinned again (its size comes back from Postgres when the pin is persisted).
    expect(c.claim('b', 1500, 's2')).toBe(1500);
    expect(c.takePending().map((p) => p.sku)).toEqual(['a', 'b']);
    c.set('b', 375, 'observed', 's1');
    expect([c.sizeOf('b'), c.describe('b')]).toEqual([375, 'pinned when first seen from s1; not in the catalog']);
  });

  it('a refresh of listed entries replaces them, keeps cached pins and lets an import win over a pin', () => {
    const c = new SizeCatalog([], 10);
    c.claim('x', 375, 's1');
    c.takePending();
    c.claim('y', 750, 's1');
    c.replace([{ sku: 'x', bottleSizeMl: 1500, origin: 'import', firstSupplier: null }]);
    expect([c.sizeOf('x'), c.describe('x'), c.sizeOf('y')]).toEqual([1500, 'in the catalog', 750]);
    expect(c.hasPending()).toBe(true); // `y` still waits to be persisted
    c.replace([]);
    expect(c.sizeOf('x')).toBeUndefined(); // no longer listed, and its pin was replaced by the import
    expect(c.size).toBe(1);
  });

  it('without a bound keeps every size read and pinned', () => {
    const c = new SizeCatalog([{ sku: 'p', bottleSizeMl: 750, origin: 'observed', firstSupplier: 's9' }]);
    for (let i = 0; i < 1000; i++) c.claim(`k${i}`, 750, 's1');
    c.takePending();
    expect(c.trim()).toBe(0);
    expect([c.size, c.describe('p')]).toEqual([1001, 'pinned when first seen from s9; not in the catalog']);
  });
});
