import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createDatabase } from '../../infra/local/postgres.js';
import { tempDir } from '../../infra/local/process.js';
import { runCellar } from '../support/cli.js';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import type { Totals } from '../support/pipeline.js';
import { artifactDir, eventually, freshDatabase, rid, services } from '../support/services.js';
import { addRow, storesConverged } from '../support/stores.js';

/**
 * One supplier code, three bottle sizes told apart by a column, under the embedded runtime with a real
 * Postgres supplier: the size that disagrees with the catalog is dead-lettered and never summed; after
 * the SKU map is fixed (cellar.sku_map rows, re-read while running), `cellar dlq replay` hands the
 * letters back to the runtime and each counts exactly once, under its own canonical SKU.
 */
describe('bottle sizes in the embedded runtime', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const logDir = artifactDir('bottle-sizes-embedded');
  let supplier: pg.Client;
  let cellar: { url: string; pool: pg.Pool };
  let e: EmbeddedUnderTest;
  /** Canonical SKU of (code, ml) as the fixed map gives it: the truth's identity. */
  const canonical = (code: string, ml: number) => (code === 'HER-18' ? (ml === 750 ? 'hermitage-2018' : `hermitage-2018-${ml}`) : code);
  const cli = (args: string[]) => runCellar(args, { CELLAR_PG_URL: cellar.url, CELLAR_LOG_LEVEL: 'warn' }, logDir);

  beforeAll(async () => {
    const supplierUrl = await createDatabase(services().pgUrl, rid('supplier_'));
    supplier = new pg.Client(supplierUrl);
    await supplier.connect();
    await supplier.query('CREATE TABLE public.stock (id int PRIMARY KEY, code text NOT NULL, depot text NOT NULL, ml int NOT NULL, qty int NOT NULL)');
    await supplier.query(`INSERT INTO public.stock VALUES (1, 'HER-18', 'd1', 750, 30), (2, 'HER-18', 'd1', 375, 12), (3, 'HER-18', 'd2', 1500, 4), (4, 'CDP-19', 'd1', 750, 9)`);
    cellar = await freshDatabase();
    // Before the fix, the map knows the supplier code only: every size would land on hermitage-2018.
    await cellar.pool.query(`INSERT INTO cellar.sku_map (supplier_id, supplier_sku, sku) VALUES ('acme', 'HER-18', 'hermitage-2018'), ('acme', 'CDP-19', 'CDP-19')`);
    const file = join(tempDir('catalog'), 'catalog.csv');
    writeFileSync(file, 'sku,bottle_size_ml,vintage,name\nhermitage-2018,750,2018,"Hermitage, Rouge"\nhermitage-2018-375,375,2018,Hermitage half\nhermitage-2018-1500,1500,2018,Hermitage magnum\n');
    const imported = await cli(['catalog', 'import', file]);
    expect(imported.code, imported.out).toBe(0);
    expect(imported.out).toContain('3 SKUs imported (3 new');
    const u = new URL(supplierUrl);
    e = await startEmbeddedUnderTest({ acme: `id: acme
name: Acme
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: ${u.pathname.slice(1)}, user: postgres }
  topicPrefix: ${rid('acme')}
  tables: [{ name: public.stock }]
mapping: { sku: code, warehouse: depot, quantity: qty, bottleSizeMl: ml, skus: { table: cellar.sku_map }, regions: { d1: ${R1}, d2: ${R2} } }
` }, 'bottle-sizes', { cellar, env: { CELLAR_SKU_MAP_REFRESH_MS: '1000' } });
  }, 180_000);

  afterAll(async () => {
    await e?.stop();
    await supplier?.end();
  });

  async function totals(): Promise<Map<string, { bottles: number; ml: number | null }>> {
    const { rows } = await cellar.pool.query<{ region: string; sku: string; bottles: string; bottle_size_ml: number | null }>(
      'SELECT region, sku, bottles, bottle_size_ml FROM cellar.regional_stock WHERE contributors > 0');
    return new Map(rows.map((r) => [`${r.region}|${r.sku}`, { bottles: Number(r.bottles), ml: r.bottle_size_ml }]));
  }

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ code: string; depot: string; ml: number; qty: number }>('SELECT code, depot, ml, qty FROM public.stock');
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, canonical(r.code, r.ml), r.qty);
    return out;
  }

  const letters = async () =>
    (await cellar.pool.query<{ id: string; message: string; replayed_at: Date | null }>(`SELECT id, message, replayed_at FROM cellar.dead_letters WHERE reason = 'bottle_size_mismatch' ORDER BY id`)).rows;

  it('dead-letters the sizes that disagree with the catalog and never sums them', async () => {
    expect(await eventually(async () => (await letters()).length === 2 && (await totals()).size === 2, 60_000), `totals ${JSON.stringify([...(await totals())])}`).toBe(true);
    await supplier.query('UPDATE public.stock SET qty = 10 WHERE id = 2');
    expect(await eventually(async () => (await letters()).length === 3, 30_000)).toBe(true);
    // 30 bottles of 750 ml, not 30 + 12 + 4: the half bottles and the magnums count nowhere yet.
    expect(await totals()).toEqual(new Map([[`${R1}|hermitage-2018`, { bottles: 30, ml: 750 }], [`${R1}|CDP-19`, { bottles: 9, ml: 750 }]]));
    const messages = (await letters()).map((l) => l.message);
    expect(messages[0]).toMatch(/375 ml of "HER-18" → "hermitage-2018", a 750 ml SKU \(in the catalog\)/);
    expect(messages[1]).toMatch(/1500 ml .* 750 ml/);
    const counted = await e.metrics.deadLetters.get();
    expect(counted.values.find((v) => v.labels.reason === 'bottle_size_mismatch')?.value).toBe(3);
    // CDP-19 is not in the catalog: its first size is pinned, visibly.
    const listed = await cli(['catalog', 'list', '--origin', 'observed']);
    expect(listed.out).toMatch(/CDP-19\s+750\s+-\s+-\s+observed\s+acme/);
  }, 120_000);

  it('after the SKU map is fixed, replay counts each dead-lettered change exactly once, under its own size', async () => {
    await cellar.pool.query(`INSERT INTO cellar.sku_map (supplier_id, supplier_sku, bottle_size_ml, sku) VALUES ('acme', 'HER-18', 375, 'hermitage-2018-375'), ('acme', 'HER-18', 1500, 'hermitage-2018-1500')`);
    await new Promise((r) => setTimeout(r, 2_500)); // two refreshes of cellar.sku_map
    const dry = await cli(['dlq', 'replay', '--reason', 'bottle_size_mismatch', '--dry-run']);
    expect(dry.out).toContain('hand 3 back to the embedded runtime');
    const replay = await cli(['dlq', 'replay', '--reason', 'bottle_size_mismatch']);
    expect(replay.code, replay.out).toBe(0);
    expect(replay.out).toContain('handed 3 back to the embedded runtime');
    expect(await storesConverged(truth, cellar.pool, e.redis, [R1, R2])).toEqual([]);
    expect(await totals()).toEqual(new Map([
      [`${R1}|hermitage-2018`, { bottles: 30, ml: 750 }],
      [`${R1}|hermitage-2018-375`, { bottles: 10, ml: 375 }],
      [`${R2}|hermitage-2018-1500`, { bottles: 4, ml: 1500 }],
      [`${R1}|CDP-19`, { bottles: 9, ml: 750 }],
    ]));
    expect((await letters()).every((l) => l.replayed_at !== null)).toBe(true);
    expect(replay.out, 'the replay says each letter was applied').toMatch(/applied 3 \(.*\): resolved/);
    const statuses = await cellar.pool.query(`SELECT DISTINCT status, resolution FROM cellar.dead_letters WHERE reason = 'bottle_size_mismatch'`);
    expect(statuses.rows).toEqual([{ status: 'resolved', resolution: 'replayed and applied' }]);
    // Resolved letters are not replayed by a filter again; named by id they are, and change nothing: the routes know those versions.
    expect((await cli(['dlq', 'replay', '--reason', 'bottle_size_mismatch'])).out).toContain('handed 0 back');
    const versions = async () => (await cellar.pool.query('SELECT sum(version)::int AS v FROM cellar.regional_stock')).rows[0].v as number;
    const before = await versions();
    expect((await cli(['dlq', 'replay', '--id', ...(await letters()).map((l) => l.id)])).out).toContain('handed 3 back');
    expect(await eventually(async () => (await cellar.pool.query('SELECT count(*)::int AS n FROM cellar.repair_requests')).rows[0].n === 0, 30_000)).toBe(true);
    expect(await versions()).toBe(before);
    expect(await storesConverged(truth, cellar.pool, e.redis, [R1, R2])).toEqual([]);

    // A row that changes size moves between canonical SKUs, like a move between warehouses.
    await supplier.query('UPDATE public.stock SET ml = 750, qty = 6 WHERE id = 2');
    expect(await storesConverged(truth, cellar.pool, e.redis, [R1, R2])).toEqual([]);
    expect((await totals()).get(`${R1}|hermitage-2018`)).toEqual({ bottles: 36, ml: 750 });
    expect(e.failed()).toBeUndefined();
  }, 180_000);
});
