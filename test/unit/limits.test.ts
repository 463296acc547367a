import { describe, expect, it } from 'vitest';
import { RegionalAggregator } from '../../pipelines/aggregate/aggregator.js';
import { parseDecimal } from '../../pipelines/normalize/decimal.js';
import { compileMapping, MAX_ROW_BOTTLES, toBottles } from '../../pipelines/normalize/mapping.js';
import type { StockObservation } from '../../schemas/records.js';
import { northSupplier, rejectionOf } from '../support/fixtures.js';

const obs = (id: string, v: number, bottles: number, op: 'UPSERT' | 'DELETE' = 'UPSERT'): StockObservation => ({
  supplierId: 's', warehouseId: 'w', region: 'r', sku: 'x', supplierSku: 'x', vintage: null, bottleSizeMl: 750, bottles, op,
  contributorId: id, sourceVersion: String(v).padStart(20, '0'), sourceTsMs: v, ingestTsMs: 0, traceId: 't',
});

describe('quantities at their limits', () => {
  it('a row holds at most ±10^12 bottles; beyond is quantity_out_of_range, never rounded', () => {
    const d = (s: string) => parseDecimal(s, 'q');
    expect(toBottles(d(String(MAX_ROW_BOTTLES)), 'bottles', 750)).toBe(1e12);
    expect(toBottles(d(`-${MAX_ROW_BOTTLES}`), 'bottles', 750)).toBe(-1e12);
    const over = rejectionOf(() => toBottles(d('1000000000001'), 'bottles', 750));
    expect(over.reason).toBe('quantity_out_of_range');
    expect(over.message).toContain('1000000000001 bottles, beyond the ±1000000000000 bottles one row may hold');
    expect(rejectionOf(() => toBottles(d('9007199254740993'), 'bottles', 750)).reason).toBe('quantity_out_of_range');
    // 10^11 cases of 12 is 1.2 × 10^12 bottles: the converted count is what is checked.
    expect(rejectionOf(() => toBottles(d('100000000000'), 'case12', 750)).reason).toBe('quantity_out_of_range');
  });

  it('a total that would leave ±(2^53 − 1) is refused with nothing changed; deleting gives exactly 0', () => {
    const a = new RegionalAggregator();
    expect(a.apply(obs('c1', 1, Number.MAX_SAFE_INTEGER - 1))).toBe('applied');
    expect(a.apply(obs('c2', 2, 2))).toBe('quantity_out_of_range');
    expect(a.get('r', 'x')).toMatchObject({ bottles: Number.MAX_SAFE_INTEGER - 1, contributors: 1, version: 1 });
    expect(a.apply(obs('c2', 3, 1))).toBe('applied');
    expect(a.get('r', 'x')).toMatchObject({ bottles: Number.MAX_SAFE_INTEGER, contributors: 2 });
    // Replacing a contributor's quantity is checked on the total it would give, not on the sum of both.
    expect(a.apply(obs('c1', 4, Number.MAX_SAFE_INTEGER - 2))).toBe('applied');
    expect(a.apply(obs('c1', 5, 0, 'DELETE'))).toBe('applied');
    expect(a.apply(obs('c2', 6, 0, 'DELETE'))).toBe('applied');
    expect(a.get('r', 'x')).toMatchObject({ bottles: 0, contributors: 0 });
    expect(a.apply(obs('c3', 7, -Number.MAX_SAFE_INTEGER))).toBe('applied');
    expect(a.apply(obs('c4', 8, -1))).toBe('quantity_out_of_range');
  });
});

describe('canonical SKUs', () => {
  const m = compileMapping(northSupplier());
  const row = (item_code: string) => ({ item_code, depot: 'bdx-1', qty: 1 });

  it('refuses a canonical SKU with "|", white space, control characters or over 128 characters (invalid_sku)', () => {
    for (const bad of ['a|b', 'a b', 'a\tb', 'a\u0000b', 'x'.repeat(129)]) {
      const r = rejectionOf(() => m.place(row(bad)));
      expect(r.reason, JSON.stringify(bad)).toBe('invalid_sku');
      expect(r.message).toContain('from supplier SKU field "item_code"');
    }
    expect(rejectionOf(() => m.place(row('x'.repeat(500)))).message).toContain('(500 characters');
  });

  it('accepts 128 characters and the punctuation real codes use, also after a first check', () => {
    for (const good of ['x'.repeat(128), 'CH-MARG:2019/750', 'château-margaux-2019', 'A.B_C#1']) {
      expect(m.place(row(good)).sku).toBe(good);
      expect(m.place(row(good)).sku).toBe(good);
    }
  });
});
