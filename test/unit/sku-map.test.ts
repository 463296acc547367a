import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSupplier } from '../../connectors/registry/loader.js';
import { UNITS, unitOf } from '../../connectors/registry/schema.js';
import { parseCatalogCsv, SizeCatalog, splitCsvLine } from '../../pipelines/catalog/catalog.js';
import { ConfigError } from '../../pipelines/core/errors.js';
import { compileMapping } from '../../pipelines/normalize/mapping.js';
import { parseSkuMapCsv, SkuTable, SkuTemplate, type SkuMapEntry } from '../../pipelines/normalize/sku-table.js';
import { northSupplier, rejectionOf, supplierFromYaml } from '../support/fixtures.js';

/** The problems of a ConfigError thrown by `fn` (fails the test when it does not throw one). */
function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.length ? err.problems : [err.message];
    throw err;
  }
  throw new Error('expected a ConfigError');
}

/** A supplier with the given lines appended under `mapping:` (sku a, warehouse w, quantity q). */
function supplierYaml(mappingExtra: string): string {
  return `id: s
name: S
source: { kind: csv, tables: [{ name: feed.rows }] }
mapping:
  sku: a
  warehouse: w
  quantity: q
  regions: { w1: eu-west }
${mappingExtra}`;
}

describe('SkuTable', () => {
  const ALL: SkuMapEntry[] = [
    { supplierSku: 'X', sku: 'x-any' },
    { supplierSku: 'X', vintage: 2019, sku: 'x-2019' },
    { supplierSku: 'X', bottleSizeMl: 1500, sku: 'x-1500' },
    { supplierSku: 'X', vintage: 2019, bottleSizeMl: 1500, sku: 'x-2019-1500' },
  ];

  it.each([
    ['(sku, vintage, size)', 2019, 1500, 'x-2019-1500'],
    ['(sku, size) when the vintage has no entry', 2018, 1500, 'x-1500'],
    ['(sku, size) for a non-vintage row', null, 1500, 'x-1500'],
    ['(sku, vintage) when the size has no entry', 2019, 750, 'x-2019'],
    ['(sku) when neither has an entry', 2018, 375, 'x-any'],
    ['(sku) for a non-vintage row of an unlisted size', null, 750, 'x-any'],
  ])('the most specific entry wins: %s', (_what, vintage, size, want) => {
    expect(new SkuTable(ALL).resolve('X', vintage, size)).toBe(want);
    // Whatever the order of the entries.
    expect(new SkuTable([...ALL].reverse()).resolve('X', vintage, size)).toBe(want);
  });

  it('a size-only entry beats a vintage-only entry when both match; neither matches → undefined', () => {
    const t = new SkuTable([
      { supplierSku: 'X', vintage: 2019, sku: 'by-vintage' },
      { supplierSku: 'X', bottleSizeMl: 1500, sku: 'by-size' },
    ]);
    expect(t.resolve('X', 2019, 1500)).toBe('by-size');
    expect(t.resolve('X', 2019, 750)).toBe('by-vintage');
    expect(t.resolve('X', 2020, 1500)).toBe('by-size');
    expect(t.resolve('X', 2020, 750)).toBeUndefined();
    expect(t.resolve('X', null, 750)).toBeUndefined();
    expect(t.resolve('Y', 2019, 1500)).toBeUndefined();
  });

  it('an entry keyed by size never matches another size, and one keyed by vintage never another vintage', () => {
    const t = new SkuTable([{ supplierSku: 'X', vintage: 2019, bottleSizeMl: 375, sku: 'x-2019-375' }]);
    expect(t.resolve('X', 2019, 375)).toBe('x-2019-375');
    expect(t.resolve('X', 2019, 750)).toBeUndefined();
    expect(t.resolve('X', 2018, 375)).toBeUndefined();
    expect(t.resolve('X', null, 375)).toBeUndefined();
  });

  it('says what it is keyed by, and replace() swaps every entry (a later duplicate wins)', () => {
    expect(new SkuTable([{ supplierSku: 'X', sku: 'x' }]).keyedBy).toBe('supplier SKU');
    expect(new SkuTable([{ supplierSku: 'X', bottleSizeMl: 750, sku: 'x' }]).keyedBy).toBe('supplier SKU, bottle size');
    expect(new SkuTable(ALL).keyedBy).toBe('supplier SKU, vintage, bottle size');
    const t = new SkuTable(ALL);
    t.replace([
      { supplierSku: 'X', bottleSizeMl: 750, sku: 'first' },
      { supplierSku: 'X', bottleSizeMl: 750, sku: 'second' },
    ]);
    expect(t.size).toBe(1);
    expect(t.resolve('X', 2019, 750)).toBe('second');
    expect(t.resolve('X', 2019, 1500)).toBeUndefined();
    expect(t.keyedBy).toBe('supplier SKU, bottle size');
  });
});

describe('SkuTemplate', () => {
  it('builds the canonical SKU from the supplier SKU, vintage and size', () => {
    expect(new SkuTemplate('{sku}-{vintage}-{bottleSizeMl}').resolve('NC-MARG', 2019, 375)).toBe('NC-MARG-2019-375');
    expect(new SkuTemplate('wine/{sku}@{bottleSizeMl}ml').resolve('A', null, 1500)).toBe('wine/A@1500ml');
    expect(new SkuTemplate('{sku}').resolve('A', 2019, 750)).toBe('A');
  });

  it('maps nothing when the template needs a vintage the row lacks, or the result has a space', () => {
    expect(new SkuTemplate('{sku}-{vintage}').resolve('A', null, 750)).toBeUndefined();
    expect(new SkuTemplate('{sku}-{bottleSizeMl}').resolve('A B', null, 750)).toBeUndefined();
  });

  it('through place(): a row without vintage is rejected as unknown_sku naming the template; defaultVintage fills it', () => {
    const m = compileMapping(northSupplier(`  vintage: yr
  bottleSizeMl: ml
  skus: { template: '{sku}-{vintage}-{bottleSizeMl}' }`));
    expect(m.place({ item_code: 'NC', depot: 'bdx-1', qty: 3, yr: 2019, ml: 375 })).toMatchObject({ sku: 'NC-2019-375', vintage: 2019, bottleSizeMl: 375, bottles: 3 });
    const r = rejectionOf(() => m.place({ item_code: 'NC', depot: 'bdx-1', qty: 3, yr: null, ml: 375 }));
    expect(r.reason).toBe('unknown_sku');
    expect(r.message).toContain('"NC" (vintage none, 375 ml)');
    expect(r.message).toContain('keyed by template {sku}-{vintage}-{bottleSizeMl}');
    const withDefault = compileMapping(northSupplier(`  vintage: yr
  defaultVintage: 2000
  skus: { template: '{sku}-{vintage}-{bottleSizeMl}' }`));
    expect(withDefault.place({ item_code: 'NC', depot: 'bdx-1', qty: 3 }).sku).toBe('NC-2000-750');
  });
});

describe('parseSkuMapCsv', () => {
  it('reads a header with vintage and bottle_size_ml; an empty cell matches any', () => {
    const text = '# NC-MARG-19 by size\nsupplier_sku,canonical_sku,vintage,bottle_size_ml\nX,x-any,,\nX,x-2019,2019,\n\nX,x-1500,,1500\nX, x-2019-1500 ,2019,1500\n';
    expect(parseSkuMapCsv(text, 'map.csv')).toEqual([
      { supplierSku: 'X', sku: 'x-any' },
      { supplierSku: 'X', sku: 'x-2019', vintage: 2019 },
      { supplierSku: 'X', sku: 'x-1500', bottleSizeMl: 1500 },
      { supplierSku: 'X', sku: 'x-2019-1500', vintage: 2019, bottleSizeMl: 1500 },
    ]);
    expect(parseSkuMapCsv(text, 'map.csv').every((e) => !('vintage' in e) || typeof e.vintage === 'number')).toBe(true);
  });

  it('reads the two-column form without a header, and header columns in any order after supplier_sku', () => {
    expect(parseSkuMapCsv('A,a\r\nB,b\r\n', 'm.csv')).toEqual([{ supplierSku: 'A', sku: 'a' }, { supplierSku: 'B', sku: 'b' }]);
    expect(parseSkuMapCsv('supplier_sku,bottle_size_ml,canonical_sku\nA,375,a-375\n', 'm.csv')).toEqual([{ supplierSku: 'A', bottleSizeMl: 375, sku: 'a-375' }]);
  });

  it('honors a header row that does not start with supplier_sku instead of reading it as a mapping', () => {
    // A header naming its columns in another order: the rows must not be read as supplier_sku,canonical_sku.
    let entries: SkuMapEntry[] | undefined;
    let error: string[] | undefined;
    try {
      entries = parseSkuMapCsv('canonical_sku,supplier_sku,bottle_size_ml\nmargaux-2019-375,NC-MARG-19,375\n', 'm.csv');
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      error = err.problems;
    }
    if (error) expect(error.join('\n')).toMatch(/m\.csv:1: /);
    else expect(entries).toEqual([{ supplierSku: 'NC-MARG-19', sku: 'margaux-2019-375', bottleSizeMl: 375 }]);
  });

  it('names the file, line and bad value of every problem at once', () => {
    const p = problems(() =>
      parseSkuMapCsv('supplier_sku,canonical_sku,vintage,bottle_size_ml\nA,a,19,\nB,b,,big\n# fine\nC,c c,,\nD,,,\nE,e,2019,0\nF,f,,30001\nG,g,2019,750\n', '/maps/south.csv'),
    );
    expect(p).toEqual([
      '/maps/south.csv:2: vintage "19" is not a year',
      '/maps/south.csv:3: bottle_size_ml "big" is not a bottle size in ml (1–30000)',
      '/maps/south.csv:5: canonical SKU "c c" has a space or "|"',
      '/maps/south.csv:6: expected supplierSku,sku,vintage,bottleSizeMl (supplier SKU and canonical SKU required)',
      '/maps/south.csv:7: bottle_size_ml "0" is not a bottle size in ml (1–30000)',
      '/maps/south.csv:8: bottle_size_ml "30001" is not a bottle size in ml (1–30000)',
    ]);
  });

  it('refuses an unknown header column, naming it and the allowed ones', () => {
    expect(problems(() => parseSkuMapCsv('supplier_sku,canonical_sku,size\nA,a,375\n', 'm.csv'))).toEqual([
      'm.csv:1: unknown column "size"; allowed: supplier_sku, canonical_sku, vintage, bottle_size_ml',
    ]);
  });

  it('through a supplier: { csv: file } is read next to the supplier file; a missing file names both', () => {
    const dir = mkdtempSync(join(tmpdir(), 'skumap-'));
    writeFileSync(join(dir, 'skus.csv'), 'supplier_sku,canonical_sku,bottle_size_ml\nNC,nc-375,375\nNC,nc,750\n');
    const s = supplierFromYaml(supplierYaml('  bottleSizeMl: ml\n  skus: { csv: skus.csv }\n'), join(dir, 's.yaml'));
    const m = compileMapping(s);
    expect(m.place({ a: 'NC', w: 'w1', q: 2, ml: 375 }).sku).toBe('nc-375');
    expect(m.place({ a: 'NC', w: 'w1', q: 2 }).sku).toBe('nc');
    const r = rejectionOf(() => m.place({ a: 'NC', w: 'w1', q: 2, ml: 1500 }));
    expect(r.reason).toBe('unknown_sku');
    expect(r.message).toContain('1500 ml');
    expect(r.message).toContain('keyed by supplier SKU, bottle size');
    const missing = supplierFromYaml(supplierYaml('  skus: { csv: nope.csv }\n'), join(dir, 't.yaml'));
    expect(() => compileMapping(missing)).toThrow(`${join(dir, 't.yaml')}: mapping.skus.csv: cannot read ${join(dir, 'nope.csv')}: ENOENT`);
  });
});

describe('parseCatalogCsv', () => {
  it('reads sku, bottle_size_ml, vintage and quoted names with commas and quotes', () => {
    const text = '# listed sizes\nsku,bottle_size_ml,vintage,name\nmargaux-2019,750,2019,"Château Margaux, Grand Vin"\nmargaux-2019-1500,1500,2019,"The ""big"" one, magnum"\nnv-brut,750,,Brut\n';
    expect(parseCatalogCsv(text, 'catalog.csv')).toEqual([
      { sku: 'margaux-2019', bottleSizeMl: 750, vintage: 2019, name: 'Château Margaux, Grand Vin' },
      { sku: 'margaux-2019-1500', bottleSizeMl: 1500, vintage: 2019, name: 'The "big" one, magnum' },
      { sku: 'nv-brut', bottleSizeMl: 750, vintage: null, name: 'Brut' },
    ]);
  });

  it('finds columns by the header, whatever their order, even after a quoted name with commas', () => {
    expect(parseCatalogCsv('name,sku,bottle_size_ml\n"Rioja, Reserva",rioja-2018-375,375\n', 'c.csv')).toEqual([
      { sku: 'rioja-2018-375', bottleSizeMl: 375, vintage: null, name: 'Rioja, Reserva' },
    ]);
    expect(splitCsvLine('"a, b",c,"d ""e"""')).toEqual(['a, b', 'c', 'd "e"']);
  });

  it('names a missing header column', () => {
    const p = problems(() => parseCatalogCsv('sku,vintage,name\nmargaux-2019,2019,Margaux\n', 'catalog.csv'));
    expect(p).toContain('catalog.csv:1: the header row must name column "bottle_size_ml" (columns: sku, bottle_size_ml, vintage, name)');
  });

  it('names the file, line and value of a bad size, a bad vintage and a SKU listed with two sizes', () => {
    const text = 'sku,bottle_size_ml,vintage\n\nx,75cl,\n# y below\ny,750,2019\nz,1500,19\ny,375,2019\n';
    expect(problems(() => parseCatalogCsv(text, 'data/catalog.csv'))).toEqual([
      'data/catalog.csv:3: bottle_size_ml "75cl" of x is not a bottle size in ml (a whole number, 1–30000)',
      'data/catalog.csv:6: vintage "19" of z is not a year',
      'data/catalog.csv:7: y is listed again with 375 ml (line 5 says 750 ml); one canonical SKU has one bottle size',
    ]);
  });

  it('accepts a SKU listed twice with the same size, once', () => {
    expect(parseCatalogCsv('sku,bottle_size_ml\ny,750\ny,750\n', 'c.csv')).toEqual([{ sku: 'y', bottleSizeMl: 750, vintage: null, name: null }]);
  });

  it('refuses an unknown column and an empty file', () => {
    expect(problems(() => parseCatalogCsv('sku,bottle_size_ml,colour\nx,750,red\n', 'c.csv'))).toEqual([
      'c.csv:1: unknown column "colour"; allowed: sku, bottle_size_ml, vintage, name',
    ]);
    expect(problems(() => parseCatalogCsv('# nothing\n\n', 'c.csv'))).toEqual([
      'c.csv: empty; expected a header row "sku,bottle_size_ml,vintage,name" and one row per canonical SKU',
    ]);
  });
});

describe('SizeCatalog', () => {
  const listed = () => new SizeCatalog([{ sku: 'margaux-2019', bottleSizeMl: 750, origin: 'import', firstSupplier: null }]);

  it('keeps a listed size, pins the first size claimed for an unlisted SKU, and reports each pin once', () => {
    const c = listed();
    expect(c.claim('margaux-2019', 375, 'north')).toBe(750);
    expect(c.hasPending()).toBe(false);
    expect(c.claim('rioja-2018', 1500, 'south')).toBe(1500);
    expect(c.claim('rioja-2018', 750, 'north')).toBe(1500);
    expect(c.claim('rioja-2018', 1500, 'south')).toBe(1500);
    expect(c.sizeOf('rioja-2018')).toBe(1500);
    expect(c.size).toBe(2);
    expect(c.hasPending()).toBe(true);
    expect(c.takePending()).toEqual([{ sku: 'rioja-2018', bottleSizeMl: 1500, supplierId: 'south' }]);
    expect(c.hasPending()).toBe(false);
    expect(c.takePending()).toEqual([]);
    // Still pinned after the pin was handed over.
    expect(c.claim('rioja-2018', 375, 'east')).toBe(1500);
    expect(c.describe('rioja-2018')).toBe('pinned when first seen from south; not in the catalog');
    expect(c.describe('margaux-2019')).toBe('in the catalog');
    expect(c.describe('nope')).toBe('not in the catalog');
  });

  it('keeps unpersisted pins across a re-read, and a listed size replaces a pin', () => {
    const c = listed();
    c.claim('new-1500', 1500, 's');
    c.replace([{ sku: 'margaux-2019', bottleSizeMl: 750, origin: 'import', firstSupplier: null }]);
    expect(c.sizeOf('new-1500')).toBe(1500);
    expect(c.takePending()).toEqual([{ sku: 'new-1500', bottleSizeMl: 1500, supplierId: 's' }]);
    c.claim('other', 375, 's');
    c.set('other', 750, 'import');
    expect(c.sizeOf('other')).toBe(750);
    expect(c.hasPending()).toBe(false);
    c.requeue([{ sku: 'other', bottleSizeMl: 375, supplierId: 's' }]);
    expect(c.hasPending()).toBe(false);
  });

  it('through two suppliers sharing it: the second supplier\'s other size is refused naming who pinned it', () => {
    const catalog = new SizeCatalog();
    const a = compileMapping(northSupplier('  bottleSizeMl: ml'), { catalog });
    const b = compileMapping(
      supplierFromYaml(supplierYaml('  bottleSizeMl: ml\n  skus: { inline: { SV-M: barolo-2016 } }\n').replace('id: s', 'id: south-vines')),
      { catalog },
    );
    expect(a.place({ item_code: 'barolo-2016', depot: 'bdx-1', qty: 6, ml: 1500 }).bottleSizeMl).toBe(1500);
    const r = rejectionOf(() => b.place({ a: 'SV-M', w: 'w1', q: 6, ml: 750 }));
    expect(r.reason).toBe('bottle_size_mismatch');
    expect(r.message).toContain('750 ml of "SV-M"');
    expect(r.message).toContain('"barolo-2016", a 1500 ml SKU (pinned when first seen from north-cellars; not in the catalog)');
    // locate() does not check (it finds where an earlier image was counted).
    expect(b.locate({ a: 'SV-M', w: 'w1', q: 6, ml: 750 }).sku).toBe('barolo-2016');
    expect(catalog.takePending()).toEqual([{ sku: 'barolo-2016', bottleSizeMl: 1500, supplierId: 'north-cellars' }]);
  });
});

describe('supplier registry: units, sizes and SKU templates', () => {
  it('refuses an unknown unit naming the value and listing the allowed units', () => {
    const p = problems(() => parseSupplier(supplierYaml('  unit: pallets\n'), 'suppliers/s.yaml')).join('\n');
    expect(p).toMatch(/^suppliers\/s\.yaml: mapping\.unit: /m);
    expect(p).toContain('"pallets"');
    for (const u of UNITS) expect(p).toContain(u);
    expect(p).toContain('litre');
  });

  it('refuses an unknown unit in unit.values naming the value and listing the allowed units', () => {
    const p = problems(() => parseSupplier(supplierYaml('  unit: { field: uom, values: { PAL: pallets } }\n'), 's.yaml')).join('\n');
    expect(p).toContain('"pallets"');
    expect(p).toContain('case12');
  });

  it.each([
    ['bottle', 'bottles'],
    ['Bottle', 'bottles'],
    ['litre', 'liters'],
    ['Liters', 'liters'],
    ['L', 'liters'],
    ['CS12', 'case12'],
    ['ml', 'milliliters'],
  ])('accepts the unit spelling %s as %s', (spelling, unit) => {
    expect(parseSupplier(supplierYaml(`  unit: ${spelling}\n`), 's.yaml').mapping.unit).toBe(unit);
    expect(unitOf(` ${spelling} `)).toBe(unit);
  });

  it('accepts spellings in unit.values and in row values', () => {
    const s = parseSupplier(supplierYaml('  unit: { field: uom, values: { KART: CS6, LTR: Litre } }\n  bottleSizeMl: ml\n'), 's.yaml');
    expect(s.mapping.unit).toEqual({ field: 'uom', values: { KART: 'case6', LTR: 'liters' } });
    const m = compileMapping(s);
    // One canonical SKU per size (identity mapping): the catalog pins each SKU's size.
    const row = (uom: string, q: number | string, ml = 750) => ({ a: `X-${ml}`, w: 'w1', q, uom, ml });
    expect(m.place(row('KART', 2)).bottles).toBe(12);
    expect(m.place(row('LTR', '4.5')).bottles).toBe(6);
    expect(m.place(row('Litre', '4.5', 1500)).bottles).toBe(3);
    expect(m.place(row('liters', '0.75', 375)).bottles).toBe(2);
    expect(m.place(row('BTL', 7)).bottles).toBe(7);
    expect(m.place(row('cs12', 1)).bottles).toBe(12);
    const r = rejectionOf(() => m.place(row('pallet', 1)));
    expect(r.reason).toBe('unknown_unit');
    expect(r.message).toContain('"pallet"');
    expect(r.message).toContain('bottles, case6, case12, case, liters, milliliters');
  });

  it('checks caseSize after reading a spelling of "case"', () => {
    expect(problems(() => parseSupplier(supplierYaml('  unit: cs\n'), 's.yaml'))).toEqual(['s.yaml: mapping.caseSize: required when unit is "case"']);
    expect(parseSupplier(supplierYaml('  unit: Cases\n  caseSize: 24\n'), 's.yaml').mapping).toMatchObject({ unit: 'case', caseSize: 24 });
  });

  it('refuses a SKU template with an unknown placeholder, naming it and the allowed ones', () => {
    const p = problems(() => parseSupplier(supplierYaml("  skus: { template: '{sku}-{year}-{bottleSizeMl}' }\n"), 's.yaml'));
    expect(p).toEqual(['s.yaml: mapping.skus.template: unknown placeholder "{year}" in SKU template "{sku}-{year}-{bottleSizeMl}"; allowed: {sku}, {vintage}, {bottleSizeMl}']);
  });

  it('refuses a template without {sku}, and one with {vintage} when nothing gives a vintage', () => {
    expect(problems(() => parseSupplier(supplierYaml("  vintage: yr\n  skus: { template: 'wine-{vintage}' }\n"), 's.yaml'))).toEqual([
      's.yaml: mapping.skus.template: SKU template "wine-{vintage}" must use {sku}',
    ]);
    expect(problems(() => parseSupplier(supplierYaml("  skus: { template: '{sku}-{vintage}' }\n"), 's.yaml'))).toEqual([
      's.yaml: mapping.skus.template: uses {vintage}, but the mapping has neither vintage (a field) nor defaultVintage',
    ]);
    expect(parseSupplier(supplierYaml("  defaultVintage: 2019\n  skus: { template: '{sku}-{vintage}' }\n"), 's.yaml').mapping.skus).toEqual({ template: '{sku}-{vintage}' });
  });

  it('refuses bad inline size-keyed entries, naming the entry and field', () => {
    const p = problems(() =>
      parseSupplier(
        supplierYaml(`  skus:
    inline:
      - { supplierSku: X, bottleSizeMl: 0, sku: x }
      - { supplierSku: X, vintage: 19, sku: x-19 }
      - { supplierSku: X, sku: "x y" }
      - { supplierSku: X, size: 750, sku: x-750 }
`),
        's.yaml',
      ),
    ).join('\n');
    expect(p).toMatch(/s\.yaml: mapping\.skus\.inline\[0\]\.bottleSizeMl: /);
    expect(p).toMatch(/s\.yaml: mapping\.skus\.inline\[1\]\.vintage: /);
    expect(p).toMatch(/s\.yaml: mapping\.skus\.inline\[2\]\.sku: a canonical SKU is 1–128 characters without spaces/);
    expect(p).toMatch(/s\.yaml: mapping\.skus\.inline\[3\]: .*size/);
  });

  it('defaults the bottle size to 750 ml and reads defaultBottleSizeMl and dotted size paths', () => {
    expect(parseSupplier(supplierYaml(''), 's.yaml').mapping.defaultBottleSizeMl).toBe(750);
    const m = compileMapping(parseSupplier(supplierYaml('  bottleSizeMl: fmt.ml\n  defaultBottleSizeMl: 1500\n'), 's.yaml'));
    expect(m.place({ a: 'X-375', w: 'w1', q: 1, fmt: { ml: 375 } }).bottleSizeMl).toBe(375);
    expect(m.place({ a: 'X-1500', w: 'w1', q: 1, fmt: { ml: null } }).bottleSizeMl).toBe(1500);
    expect(m.place({ a: 'X-1500', w: 'w1', q: 1 }).bottleSizeMl).toBe(1500);
    expect(m.place({ a: 'X-750', w: 'w1', q: 1, fmt: { ml: '750' } }).bottleSizeMl).toBe(750);
    const zero = rejectionOf(() => m.place({ a: 'X-0', w: 'w1', q: 1, fmt: { ml: 0 } }));
    expect(zero.reason).toBe('wrong_type');
    expect(zero.message).toContain('bottle size 0 ml in field "fmt.ml"');
    expect(problems(() => parseSupplier(supplierYaml('  defaultBottleSizeMl: 0\n'), 's.yaml')).join('\n')).toMatch(/mapping\.defaultBottleSizeMl: /);
  });
});
