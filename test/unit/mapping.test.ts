import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileMapping, toBottles } from '../../pipelines/normalize/mapping.js';
import { parseDecimal } from '../../pipelines/normalize/decimal.js';
import { Rejection, type ReasonCode } from '../../pipelines/normalize/reasons.js';
import { northSupplier } from '../support/fixtures.js';

function reasonOf(fn: () => unknown): ReasonCode | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof Rejection) return err.reason;
    throw err;
  }
}

describe('units', () => {
  it('converts each unit to whole bottles of the row size', () => {
    const d = (s: string) => parseDecimal(s, 'q');
    expect(toBottles(d('7'), 'bottles', 750)).toBe(7);
    expect(toBottles(d('3'), 'case6', 750)).toBe(18);
    expect(toBottles(d('2'), 'case12', 750)).toBe(24);
    expect(toBottles(d('5'), 'case', 750, 24)).toBe(120);
    expect(toBottles(d('4.5'), 'liters', 750)).toBe(6);
    expect(toBottles(d('3'), 'liters', 1500)).toBe(2);
    expect(toBottles(d('2250'), 'milliliters', 750)).toBe(3);
    expect(toBottles(d('1.50'), 'case12', 750)).toBe(18);
  });

  it('rejects conversions that are not whole bottles instead of rounding', () => {
    const d = (s: string) => parseDecimal(s, 'q');
    expect(reasonOf(() => toBottles(d('1'), 'liters', 750))).toBe('non_integral_quantity');
    expect(reasonOf(() => toBottles(d('0.5'), 'bottles', 750))).toBe('non_integral_quantity');
    expect(reasonOf(() => toBottles(d('1.1'), 'case6', 750))).toBe('non_integral_quantity');
  });

  it('property: liters → bottles is exact or rejected, never rounded', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000_000 }), fc.constantFrom(187, 375, 750, 1500, 3000), (ml, size) => {
        const liters = parseDecimal((ml / 1000).toFixed(3), 'q');
        const reason = reasonOf(() => toBottles(liters, 'liters', size));
        if (ml % size === 0) expect(toBottles(liters, 'liters', size)).toBe(ml / size);
        else expect(reason).toBe('non_integral_quantity');
      }),
    );
  });

  it('property: cases → bottles is cases × size', () => {
    fc.assert(
      fc.property(fc.integer({ min: -100_000, max: 100_000 }), fc.integer({ min: 1, max: 48 }), (cases, size) => {
        expect(toBottles(parseDecimal(String(cases), 'q'), 'case', 750, size)).toBe(cases * size);
      }),
    );
  });
});

describe('supplier mapping', () => {
  const m = compileMapping(northSupplier());

  it('places a row', () => {
    expect(m.place({ item_code: 'barolo-2016', depot: 'nyc-1', qty: 12 })).toEqual({
      supplierSku: 'barolo-2016', sku: 'barolo-2016', warehouseId: 'nyc-1', region: 'us-east', bottles: 12, vintage: null, bottleSizeMl: 750,
    });
  });

  it.each<[Record<string, unknown>, ReasonCode]>([
    [{ depot: 'nyc-1', qty: 1 }, 'missing_field'],
    [{ item_code: 'x', depot: 'nowhere', qty: 1 }, 'unknown_warehouse'],
    [{ item_code: 'x', depot: 'nyc-1', qty: 'lots' }, 'wrong_type'],
    [{ item_code: 'x', depot: 'nyc-1', qty: -3 }, 'negative_quantity'],
    [{ item_code: 'x', depot: 'nyc-1', qty: 2.5 }, 'non_integral_quantity'],
  ])('rejects %j as %s', (row, reason) => {
    expect(reasonOf(() => m.place(row))).toBe(reason);
  });

  it('maps SKUs, units from a field, and allows backorders when configured', () => {
    const m2 = compileMapping(
      northSupplier(`  unit: { field: uom, values: { CS: case12 } }
  skus: { inline: { NC-1: barolo-2016 } }
  allowBackorders: true`),
    );
    expect(m2.place({ item_code: 'NC-1', depot: 'bdx-1', qty: 2, uom: 'CS' }).bottles).toBe(24);
    expect(m2.place({ item_code: 'NC-1', depot: 'bdx-1', qty: -3, uom: 'btl' }).bottles).toBe(-3);
    expect(reasonOf(() => m2.place({ item_code: 'NC-2', depot: 'bdx-1', qty: 1, uom: 'CS' }))).toBe('unknown_sku');
    expect(reasonOf(() => m2.place({ item_code: 'NC-1', depot: 'bdx-1', qty: 1, uom: 'pallet' }))).toBe('unknown_unit');
  });
});
