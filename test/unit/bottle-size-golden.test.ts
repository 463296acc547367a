import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Supplier } from '../../connectors/registry/loader.js';
import { RegionalAggregator, type ApplyOutcome } from '../../pipelines/aggregate/aggregator.js';
import { parseCatalogCsv, SizeCatalog } from '../../pipelines/catalog/catalog.js';
import { normalizeBatch, type BatchDeps, type NormalizedBatch, type RawItem } from '../../pipelines/normalize/batch.js';
import { decodeDebeziumJson } from '../../pipelines/normalize/debezium.js';
import { compileMapping, getPath, type CompiledMapping } from '../../pipelines/normalize/mapping.js';
import { runMappingTest } from '../../pipelines/normalize/mapping-test.js';
import type { Route } from '../../pipelines/normalize/normalize.js';
import { SkuTable } from '../../pipelines/normalize/sku-table.js';
import type { StockObservation } from '../../schemas/records.js';
import { supplierFromYaml } from '../support/fixtures.js';

/**
 * Golden Debezium change events (test/fixtures/debezium-sizes/), one file per connector, in which one
 * supplier SKU is stocked as 375, 750 and 1500 ml rows of the same region. Each size must land on its
 * own canonical SKU, and the regional totals must carry that size: bottles of different sizes are never
 * summed.
 */

interface Message {
  description: string;
  key: unknown;
  value: unknown;
}
interface GoldenFile {
  description: string;
  connector: string;
  topic: string;
  messages: Message[];
}

const FIXTURES = fileURLToPath(new URL('../fixtures/debezium-sizes/', import.meta.url));
const golden = (name: string): GoldenFile => JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as GoldenFile;

/** A message as Kafka delivers it: key and value as the JSON converter's bytes. */
function raw(m: Message, ref: number): RawItem<number> {
  const bytes = (v: unknown) => (v === null ? null : Buffer.from(JSON.stringify(v)));
  return { key: bytes(m.key), value: bytes(m.value), ref };
}

function byKey(a: { region: string; sku: string }, b: { region: string; sku: string }): number {
  const x = `${a.region}|${a.sku}`;
  const y = `${b.region}|${b.sku}`;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The runtime's route store and aggregator, in memory. */
class Pipeline {
  readonly routes = new Map<string, Route>();
  readonly aggregator = new RegionalAggregator();
  readonly applied: Array<{ observation: StockObservation; outcome: ApplyOutcome }> = [];

  private deps(): BatchDeps {
    return {
      routes: async (ids) => new Map(ids.filter((id) => this.routes.has(id)).map((id) => [id, this.routes.get(id)!])),
      liveOfTable: async (supplierId, table) => [...this.routes.values()].filter((r) => r.supplierId === supplierId && r.sourceTable === table && !r.deleted),
      retry: (_what, fn) => fn(),
    };
  }

  /** Normalizes one batch, saves its routes and feeds its observations to the aggregator. */
  async run(mapping: CompiledMapping, table: string, items: Array<RawItem<number>>): Promise<NormalizedBatch<number>> {
    const out = await normalizeBatch(items, { supplierId: mapping.supplier.id, mapping, table }, this.deps(), 1_000);
    for (const r of out.routes) this.routes.set(r.contributorId, r);
    for (const o of out.observations) this.applied.push({ observation: o, outcome: this.aggregator.apply(o) });
    return out;
  }

  /** Every total, sorted, without versions and timestamps. */
  totals() {
    return this.aggregator
      .totals()
      .map(({ region, sku, bottleSizeMl, bottles, contributors }) => ({ region, sku, bottleSizeMl, bottles, contributors }))
      .sort(byKey);
  }
}

type Total = ReturnType<Pipeline['totals']>[number];
const total = (region: string, sku: string, bottleSizeMl: number, bottles: number, contributors: number): Total => ({ region, sku, bottleSizeMl, bottles, contributors });
const sortTotals = (t: Total[]) => [...t].sort(byKey);

interface Case {
  file: string;
  form: string;
  table: string;
  /** The supplier and what its mapping reads besides its file. */
  supplier: () => { supplier: Supplier; skuTable?: SkuTable };
  /** Expected decoded op of each message (null: tombstone). */
  ops: Array<string | null>;
  /** Refs (message indexes) the normalizer rejects, with their reasons. */
  rejected: Array<[number, string]>;
  expected: Total[];
  /** Per message, a one-line summary of what it emits (as `cellar mapping test` reports it). */
  lines: string[];
}

const CASES: Case[] = [
  {
    file: 'postgres-sizes.json',
    form: 'inline entries keyed by bottle size; liters converted with the row size',
    table: 'public.stock',
    supplier: () => ({
      supplier: supplierFromYaml(`id: north-cellars
name: North Cellars
source:
  kind: postgres
  connection: { host: db, password: "\${PW}" }
  topicPrefix: north
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: liters
  unit: litre
  bottleSizeMl: bottle_ml
  skus:
    inline:
      - { supplierSku: NC-MARG-19, bottleSizeMl: 375, sku: margaux-2019-375 }
      - { supplierSku: NC-MARG-19, bottleSizeMl: 750, sku: margaux-2019 }
      - { supplierSku: NC-MARG-19, bottleSizeMl: 1500, sku: margaux-2019-1500 }
  regions: { bdx-1: eu-west, lyon-2: eu-west }
`),
    }),
    ops: ['c', 'c', 'c', 'c', 'u', 'd', null],
    rejected: [],
    expected: [
      total('eu-west', 'margaux-2019', 750, 60, 2),
      total('eu-west', 'margaux-2019-1500', 1500, 6, 1),
      total('eu-west', 'margaux-2019-375', 375, 0, 0),
    ],
    lines: [
      'UPSERT eu-west|margaux-2019-375 375ml 24',
      'UPSERT eu-west|margaux-2019 750ml 60',
      'UPSERT eu-west|margaux-2019-1500 1500ml 6',
      'UPSERT eu-west|margaux-2019 750ml 12',
      'UPSERT eu-west|margaux-2019 750ml 48',
      'DELETE eu-west|margaux-2019-375 375ml 0',
      'ignored tombstone',
    ],
  },
  {
    file: 'mysql-sizes.json',
    form: 'CSV SKU map with a bottle_size_ml column, next to the supplier file',
    table: 'warehouse.stock_levels',
    supplier: () => {
      const dir = mkdtempSync(join(tmpdir(), 'sizes-csv-'));
      writeFileSync(
        join(dir, 'south-skus.csv'),
        '# SV-RIO-18 comes in three sizes\nsupplier_sku,canonical_sku,bottle_size_ml\nSV-RIO-18,rioja-2018-375,375\nSV-RIO-18,rioja-2018,750\nSV-RIO-18,rioja-2018-1500,1500\n',
      );
      const yaml = `id: south-vines
name: South Vines
source:
  kind: mysql
  connection: { host: db, password: "\${PW}" }
  topicPrefix: south
  tables: [{ name: warehouse.stock_levels }]
mapping:
  sku: sku
  warehouse: warehouse
  quantity: bottles
  unit: Bottle
  bottleSizeMl: bottle_ml
  skus: { csv: south-skus.csv }
  regions: { nj-a: us-east, nj-b: us-east }
`;
      return { supplier: supplierFromYaml(yaml, join(dir, 'south-vines.yaml')) };
    },
    ops: ['c', 'c', 'c', 'c', 'u', 'u', 'd', null],
    rejected: [],
    expected: [
      total('us-east', 'rioja-2018', 750, 104, 2),
      total('us-east', 'rioja-2018-1500', 1500, 10, 1),
      total('us-east', 'rioja-2018-375', 375, 0, 0),
    ],
    lines: [
      'UPSERT us-east|rioja-2018-375 375ml 36',
      'UPSERT us-east|rioja-2018 750ml 120',
      'UPSERT us-east|rioja-2018-1500 1500ml 10',
      'UPSERT us-east|rioja-2018-1500 1500ml 4',
      'UPSERT us-east|rioja-2018 750ml 96',
      'DELETE us-east|rioja-2018-1500 1500ml 0 + UPSERT us-east|rioja-2018 750ml 8',
      'DELETE us-east|rioja-2018-375 375ml 0',
      'ignored tombstone',
    ],
  },
  {
    file: 'mongodb-sizes.json',
    form: 'template {sku}-{vintage}-{bottleSizeMl} over nested document fields',
    table: 'cellar_feed.stock',
    supplier: () => ({
      supplier: supplierFromYaml(`id: east-imports
name: East Imports
source:
  kind: mongodb
  connection: { host: mongo, password: "\${PW}" }
  topicPrefix: east
  tables: [{ name: cellar_feed.stock }]
mapping:
  sku: product.code
  warehouse: location.warehouse
  quantity: stock.qty
  unit: { field: stock.unit }
  vintage: product.vintage
  bottleSizeMl: product.format.ml
  skus: { template: '{sku}-{vintage}-{bottleSizeMl}' }
  regions: { bos-1: us-east }
`),
    }),
    ops: ['c', 'c', 'c', 'c', 'u', 'd', null],
    rejected: [[3, 'unknown_sku']],
    expected: [
      total('us-east', 'E-BAR-16-2016-1500', 1500, 18, 1),
      total('us-east', 'E-BAR-16-2016-375', 375, 0, 0),
      total('us-east', 'E-BAR-16-2016-750', 750, 48, 1),
    ],
    lines: [
      'UPSERT us-east|E-BAR-16-2016-375 375ml 48',
      'UPSERT us-east|E-BAR-16-2016-750 750ml 60',
      'UPSERT us-east|E-BAR-16-2016-1500 1500ml 18',
      'rejected unknown_sku',
      'UPSERT us-east|E-BAR-16-2016-750 750ml 48',
      'DELETE us-east|E-BAR-16-2016-375 375ml 0',
      'ignored tombstone',
    ],
  },
  {
    file: 'sqlserver-sizes.json',
    form: 'cellar.sku_map rows (SkuTable) keyed by vintage and/or size, with less specific decoys',
    table: 'Inventory.dbo.StockOnHand',
    supplier: () => ({
      supplier: supplierFromYaml(`id: west-merchants
name: West Merchants
source:
  kind: sqlserver
  connection: { host: mssql, password: "\${PW}" }
  topicPrefix: west
  tables: [{ name: Inventory.dbo.StockOnHand }]
mapping:
  sku: ArticleNo
  warehouse: Site
  quantity: Cases6
  unit: CS6
  vintage: Vintage
  bottleSizeMl: BottleMl
  skus: { table: cellar.sku_map }
  regions: { MIA: us-south }
`),
      skuTable: new SkuTable([
        // Less specific entries that must lose to the size-keyed ones below.
        { supplierSku: 'W-CHB-20', sku: 'chambertin-any' },
        { supplierSku: 'W-CHB-20', vintage: 2020, sku: 'chambertin-2020-any-size' },
        { supplierSku: 'W-CHB-20', vintage: 2020, bottleSizeMl: 375, sku: 'chambertin-2020-375' },
        { supplierSku: 'W-CHB-20', bottleSizeMl: 750, sku: 'chambertin-2020' },
        { supplierSku: 'W-CHB-20', vintage: 2020, bottleSizeMl: 1500, sku: 'chambertin-2020-1500' },
      ]),
    }),
    ops: ['c', 'c', 'c', 'u', 'd', null],
    rejected: [],
    expected: [
      total('us-south', 'chambertin-2020', 750, 48, 1),
      total('us-south', 'chambertin-2020-1500', 1500, 12, 1),
      total('us-south', 'chambertin-2020-375', 375, 0, 0),
    ],
    lines: [
      'UPSERT us-south|chambertin-2020-375 375ml 48',
      'UPSERT us-south|chambertin-2020 750ml 60',
      'UPSERT us-south|chambertin-2020-1500 1500ml 12',
      'UPSERT us-south|chambertin-2020 750ml 48',
      'DELETE us-south|chambertin-2020-375 375ml 0',
      'ignored tombstone',
    ],
  },
];

describe('golden Debezium fixtures with 375, 750 and 1500 ml rows of one supplier SKU', () => {
  for (const c of CASES) {
    describe(`${c.file} (${c.form})`, () => {
      const g = golden(c.file);

      it('decodes every message of the fixture: ops, table, one supplier SKU in three sizes', () => {
        const events = g.messages.map((m, i) => {
          const r = raw(m, i);
          return decodeDebeziumJson(r.key, r.value);
        });
        expect(events.map((e) => e?.op ?? null)).toEqual(c.ops);
        const live = events.filter((e) => e !== null);
        expect(new Set(live.map((e) => e.table))).toEqual(new Set([c.table]));
        expect(g.topic.split('.').slice(1).join('.')).toBe(c.table);
        // Source versions strictly increase through the file (each message is a later change).
        const versions = live.map((e) => e.sourceVersion);
        expect([...versions].sort()).toEqual(versions);
        expect(new Set(versions).size).toBe(versions.length);
        const { supplier } = c.supplier();
        const rows = live.flatMap((e) => [e.before, e.after]).filter((r) => r !== null);
        const sizes = rows.map((r) => getPath(r, supplier.mapping.bottleSizeMl!)).filter((v) => v !== null && v !== undefined);
        expect(new Set(sizes)).toEqual(new Set([375, 750, 1500]));
        expect(new Set(rows.map((r) => getPath(r, supplier.mapping.sku)).filter((v) => v !== null && v !== undefined)).size).toBe(1);
      });

      it('keeps each size on its own canonical SKU: exact totals and bottle size per (region, sku)', async () => {
        const { supplier, skuTable } = c.supplier();
        const p = new Pipeline();
        const out = await p.run(compileMapping(supplier, { skuTable }), c.table, g.messages.map(raw));
        expect(out.rejected.map((r) => [r.ref, r.reason])).toEqual(c.rejected);
        expect(out.stale).toBe(0);
        expect(p.applied.map((a) => a.outcome).filter((o) => o !== 'applied')).toEqual([]);
        expect(p.totals()).toEqual(sortTotals(c.expected));
        // Every observation carries the size of the total it lands in.
        for (const { observation: o } of p.applied) expect(o.bottleSizeMl).toBe(p.aggregator.get(o.region, o.sku)?.bottleSizeMl);
        // No total mixes sizes: the three sizes of the one supplier SKU are three keys.
        expect(new Set(p.totals().map((t) => t.bottleSizeMl))).toEqual(new Set([375, 750, 1500]));
        expect(new Set(p.applied.map((a) => a.observation.supplierSku)).size).toBe(1);
      });

      it('gives the same totals one message per batch, and a replay of the whole file changes nothing', async () => {
        const { supplier, skuTable } = c.supplier();
        const mapping = compileMapping(supplier, { skuTable });
        const p = new Pipeline();
        for (const [i, m] of g.messages.entries()) await p.run(mapping, c.table, [raw(m, i)]);
        expect(p.totals()).toEqual(sortTotals(c.expected));
        const before = p.aggregator.totals();
        const replay = await p.run(mapping, c.table, g.messages.map(raw));
        // Every change was seen (rejected ones have no route and are rejected again).
        expect(replay.observations).toEqual([]);
        expect(replay.stale).toBe(g.messages.filter((m) => m.value !== null).length - c.rejected.length);
        expect(p.aggregator.totals()).toEqual(before);
      });

      it('cellar mapping test reports the same observations line by line', () => {
        const { supplier, skuTable } = c.supplier();
        const text = g.messages.map((m) => JSON.stringify({ key: m.key, value: m.value })).join('\n');
        const lines = runMappingTest(supplier, text, { skuTable });
        expect(
          lines.map((l) =>
            l.status === 'accepted' ? l.observations.map((o) => `${o.op} ${o.region}|${o.sku} ${o.bottleSizeMl}ml ${o.bottles}`).join(' + ')
            : l.status === 'rejected' ? `rejected ${l.reason}`
            : `ignored ${l.why}`,
          ),
        ).toEqual(c.lines);
      });
    });
  }

  it('mongodb: vintage and size come from nested paths, and a non-vintage document is refused naming what is missing', async () => {
    const c = CASES.find((x) => x.file === 'mongodb-sizes.json')!;
    const p = new Pipeline();
    const out = await p.run(compileMapping(c.supplier().supplier), c.table, golden(c.file).messages.map(raw));
    const first = p.applied[0]!.observation;
    expect(first).toMatchObject({ supplierSku: 'E-BAR-16', vintage: 2016, bottleSizeMl: 375, warehouseId: 'bos-1', contributorId: 'east-imports/cellar_feed.stock/id=674b1f0e2c9d4a6b8e0f1a21' });
    expect(out.rejected).toHaveLength(1);
    expect(out.rejected[0]!.message).toContain('supplier SKU "E-BAR-16" (vintage none, 750 ml)');
    expect(out.rejected[0]!.message).toContain('template {sku}-{vintage}-{bottleSizeMl}');
  });

  it('sqlserver: the most specific cellar.sku_map row wins over vintage-only and SKU-only rows', async () => {
    const c = CASES.find((x) => x.file === 'sqlserver-sizes.json')!;
    const { supplier, skuTable } = c.supplier();
    const p = new Pipeline();
    await p.run(compileMapping(supplier, { skuTable }), c.table, golden(c.file).messages.map(raw));
    const skus = new Set(p.applied.map((a) => a.observation.sku));
    expect(skus.has('chambertin-any')).toBe(false);
    expect(skus.has('chambertin-2020-any-size')).toBe(false);
    expect(p.applied.map((a) => a.observation.vintage)).toEqual(p.applied.map(() => 2020));
  });

  it('mysql: a row relabelled from 1500 to 750 ml moves between canonical SKUs in one change', async () => {
    const c = CASES.find((x) => x.file === 'mysql-sizes.json')!;
    const g = golden(c.file);
    const p = new Pipeline();
    const mapping = compileMapping(c.supplier().supplier);
    await p.run(mapping, c.table, g.messages.slice(0, 5).map(raw));
    expect(p.aggregator.get('us-east', 'rioja-2018-1500')).toMatchObject({ bottles: 14, contributors: 2, bottleSizeMl: 1500 });
    const move = await p.run(mapping, c.table, [raw(g.messages[5]!, 5)]);
    expect(move.observations.map((o) => [o.op, o.sku, o.bottleSizeMl, o.bottles])).toEqual([
      ['DELETE', 'rioja-2018-1500', 1500, 0],
      ['UPSERT', 'rioja-2018', 750, 8],
    ]);
    expect(new Set(move.observations.map((o) => o.sourceVersion)).size).toBe(1);
    expect(p.aggregator.get('us-east', 'rioja-2018-1500')).toMatchObject({ bottles: 10, contributors: 1, bottleSizeMl: 1500 });
    expect(p.aggregator.get('us-east', 'rioja-2018')).toMatchObject({ bottles: 104, contributors: 2, bottleSizeMl: 750 });
  });
});

describe('a row whose size conflicts with the catalog', () => {
  const g = golden('postgres-sizes.json');
  const TABLE = 'public.stock';
  const supplierWith = (skus: string) =>
    supplierFromYaml(`id: north-cellars
name: North Cellars
source:
  kind: postgres
  connection: { host: db, password: "\${PW}" }
  topicPrefix: north
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: liters
  unit: liters
  bottleSizeMl: bottle_ml
  skus:
${skus}
  regions: { bdx-1: eu-west, lyon-2: eu-west }
`);
  /** The mapping before the fix: every size of NC-MARG-19 under the one 750 ml canonical SKU. */
  const unsized = () => supplierWith('    inline: { NC-MARG-19: margaux-2019 }');
  /** The fixed mapping: the 375 and 1500 ml bottles get canonical SKUs of their own. */
  const sized = () =>
    supplierWith(`    inline:
      - { supplierSku: NC-MARG-19, sku: margaux-2019 }
      - { supplierSku: NC-MARG-19, bottleSizeMl: 375, sku: margaux-2019-375 }
      - { supplierSku: NC-MARG-19, bottleSizeMl: 1500, sku: margaux-2019-1500 }`);
  const catalog = () =>
    new SizeCatalog(
      parseCatalogCsv('sku,bottle_size_ml,vintage,name\nmargaux-2019,750,2019,"Château Margaux, Grand Vin"\n', 'catalog.csv').map((e) => ({ ...e, origin: 'import' as const, firstSupplier: null })),
    );

  it('is rejected as bottle_size_mismatch naming both sizes, is not summed, and counts exactly once after the mapping is fixed', async () => {
    const cat = catalog();
    const p = new Pipeline();
    const first = await p.run(compileMapping(unsized(), { catalog: cat }), TABLE, g.messages.slice(0, 5).map(raw));

    // The 375 ml (message 0) and 1500 ml (message 2) rows are refused; the 750 ml rows are counted.
    expect(first.rejected.map((r) => [r.ref, r.reason])).toEqual([[0, 'bottle_size_mismatch'], [2, 'bottle_size_mismatch']]);
    const [half, magnum] = first.rejected.map((r) => r.message);
    expect(half).toContain('375 ml of "NC-MARG-19"');
    expect(half).toContain('→ "margaux-2019", a 750 ml SKU (in the catalog)');
    expect(magnum).toContain('1500 ml of');
    expect(magnum).toContain('a 750 ml SKU');
    expect(first.rejected.every((r) => r.position !== null && r.position.startsWith('lsn='))).toBe(true);
    expect(first.observations.map((o) => o.bottleSizeMl)).toEqual([750, 750, 750]);
    expect(p.totals()).toEqual([total('eu-west', 'margaux-2019', 750, 60, 2)]);
    expect(cat.sizeOf('margaux-2019')).toBe(750);

    // Fix the mapping (recompiled, same catalog) and replay the dead letters as `cellar dlq replay` does.
    const fixed = compileMapping(sized(), { catalog: cat });
    const deadLetters = first.rejected.map((r) => raw(g.messages[r.ref]!, r.ref));
    const replay = await p.run(fixed, TABLE, deadLetters);
    expect(replay.rejected).toEqual([]);
    expect(replay.observations.map((o) => [o.op, o.sku, o.bottleSizeMl, o.bottles])).toEqual([
      ['UPSERT', 'margaux-2019-375', 375, 24],
      ['UPSERT', 'margaux-2019-1500', 1500, 6],
    ]);
    expect(p.totals()).toEqual([
      total('eu-west', 'margaux-2019', 750, 60, 2),
      total('eu-west', 'margaux-2019-1500', 1500, 6, 1),
      total('eu-west', 'margaux-2019-375', 375, 24, 1),
    ]);
    // The new canonical SKUs were pinned at their sizes, once each.
    expect(cat.takePending().map((x) => [x.sku, x.bottleSizeMl, x.supplierId]).sort()).toEqual([
      ['margaux-2019-1500', 1500, 'north-cellars'],
      ['margaux-2019-375', 375, 'north-cellars'],
    ]);

    // Replaying the same dead letters again is stale: still counted once.
    const again = await p.run(fixed, TABLE, deadLetters);
    expect(again.stale).toBe(2);
    expect(again.observations).toEqual([]);
    expect(p.aggregator.apply(replay.observations[0]!)).toBe('stale');
    expect(p.aggregator.get('eu-west', 'margaux-2019-375')).toMatchObject({ bottles: 24, contributors: 1, bottleSizeMl: 375 });

    // The rest of the stream: the 375 ml row's key-only delete finds its route.
    await p.run(fixed, TABLE, g.messages.slice(5).map((m, i) => raw(m, 5 + i)));
    expect(p.totals()).toEqual([
      total('eu-west', 'margaux-2019', 750, 60, 2),
      total('eu-west', 'margaux-2019-1500', 1500, 6, 1),
      total('eu-west', 'margaux-2019-375', 375, 0, 0),
    ]);
  });

  it('without a listed size, the first size seen pins the canonical SKU and the other sizes are refused', async () => {
    const cat = new SizeCatalog();
    const p = new Pipeline();
    const out = await p.run(compileMapping(unsized(), { catalog: cat }), TABLE, g.messages.slice(0, 4).map(raw));
    // Message 0 (375 ml) comes first and pins margaux-2019 at 375 ml.
    expect(cat.sizeOf('margaux-2019')).toBe(375);
    expect(out.rejected.map((r) => r.ref)).toEqual([1, 2, 3]);
    expect(out.rejected[0]!.message).toContain('a 375 ml SKU (pinned when first seen from north-cellars; not in the catalog)');
    expect(p.totals()).toEqual([total('eu-west', 'margaux-2019', 375, 24, 1)]);
  });
});
