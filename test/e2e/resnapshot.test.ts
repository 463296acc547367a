import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { runCellar } from '../support/cli.js';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import type { Totals } from '../support/pipeline.js';
import { artifactDir, rid, supplierDir } from '../support/services.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';
import { addRow, storesConverged } from '../support/stores.js';

/**
 * `cellar resnapshot --supplier X` as an operator uses it after Cellar missed a supplier's changes (here:
 * its table was taken out of the publication while rows were deleted, changed and added): the running
 * embedded runtime reads the tables again, and the totals equal the supplier's rows, deletions included.
 * `--table` and `cellar run capture`: resnapshot-tables.test.ts and resnapshot-capture.test.ts.
 */
describe('cellar resnapshot (embedded runtime)', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const prefix = rid('acme');
  const logDir = artifactDir('resnapshot');
  let supplier: pg.Client;
  let e: EmbeddedUnderTest;
  let suppliersDir: string;

  beforeAll(async () => {
    const s = await stockSupplier({ rows: 500, skus: 13, maxQty: 11 });
    supplier = s.client;
    const files = { acme: postgresSupplierYaml(s.url, { prefix, regions: { d1: R1, d2: R2 } }) };
    suppliersDir = supplierDir(files);
    e = await startEmbeddedUnderTest(files, 'resnapshot');
  }, 120_000);

  afterAll(async () => {
    await e?.stop();
    await supplier?.end();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; qty: number }>('SELECT sku, depot, qty FROM public.stock');
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  }
  const converged = (ms?: number) => storesConverged(truth, e.cellar.pool, e.redis, [R1, R2], ms);

  it('reads the supplier again and ends exact, rows deleted meanwhile included', async () => {
    expect(await converged()).toEqual([]);
    await supplier.query(`ALTER PUBLICATION cellar_${prefix.replace(/[^a-z0-9_]/g, '_')} DROP TABLE public.stock`);
    // A walsender applies a publication change from the next transaction it decodes on: let one pass.
    await new Promise((r) => setTimeout(r, 500));
    await supplier.query('UPDATE public.stock SET qty = qty WHERE id = 2');
    await new Promise((r) => setTimeout(r, 1_000));
    await supplier.query('DELETE FROM public.stock WHERE id % 7 = 0');
    await supplier.query(`UPDATE public.stock SET qty = qty + 3, depot = CASE depot WHEN 'd1' THEN 'd2' ELSE 'd1' END WHERE id % 5 = 0`);
    await supplier.query(`INSERT INTO public.stock SELECT g, 'sku-new', 'd1', 4 FROM generate_series(1001, 1020) g`);
    const missed = await converged(3_000);
    expect(missed.length, 'Cellar missed those changes').toBeGreaterThan(10);

    const cli = await runCellar(['resnapshot', '--supplier', 'acme'], { CELLAR_PG_URL: e.cellar.url, CELLAR_SUPPLIERS_DIR: suppliersDir, CELLAR_LOG_LEVEL: 'warn' }, logDir);
    expect(cli.code, cli.out).toBe(0);
    expect(cli.out).toContain('taken by the embedded runtime');
    expect(cli.out).toContain('it snapshots every table of acme again now');
    expect(cli.out).toContain('the snapshot of every table of acme is committed: the totals include it');
    expect(await converged(), 'after cellar resnapshot').toEqual([]);
    // The stream goes on after the new snapshot.
    await supplier.query('UPDATE public.stock SET qty = 9 WHERE id = 1');
    expect(await converged()).toEqual([]);
    const bad = await runCellar(['resnapshot', '--supplier', 'nope'], { CELLAR_PG_URL: e.cellar.url, CELLAR_SUPPLIERS_DIR: suppliersDir }, logDir);
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('no supplier "nope"');
    // A supplier captured by Debezium has no native reader to take the request.
    const debezium = supplierDir({ harbor: `id: harbor
name: Harbor
source:
  kind: mongodb
  connection: { host: mongo.example, database: feed, user: cdc }
  topicPrefix: harbor
  tables: [{ name: feed.stock }]
mapping: { sku: code, warehouse: wh, quantity: qty, regions: { w1: ${R1} } }
` });
    const refused = await runCellar(['resnapshot', '--supplier', 'harbor'], { CELLAR_PG_URL: e.cellar.url, CELLAR_SUPPLIERS_DIR: debezium }, logDir);
    expect(refused.code, refused.out).toBe(2);
    expect(refused.out).toContain('harbor is a mongodb source, which no native reader (cellar run embedded, cellar run capture) reads; with Debezium, use an incremental snapshot (cellar reconcile --via signal)');
    expect(e.failed()).toBeUndefined();
  }, 180_000);
});
