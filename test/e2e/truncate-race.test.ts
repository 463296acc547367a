import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import mysql from 'mysql2/promise';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import type { Totals } from '../support/pipeline.js';
import { rid, services } from '../support/services.js';
import { addRow, storesConverged } from '../support/stores.js';
import { postgresSupplierYaml, STOCK_TABLE, stockSupplier } from '../support/suppliers.js';

const mariadbUrl = services().mariadbUrl;

/**
 * Inserts and moves committed a few milliseconds before a TRUNCATE of the same table (separate
 * transactions), at a Postgres and a MariaDB supplier at once, under a steady load of other changes: the
 * truncate must remove every row the table had at its position, including rows whose changes are still
 * being committed by the embedded runtime when the truncate is read.
 */
describe.skipIf(!mariadbUrl)('a TRUNCATE right after inserts and moves (embedded runtime)', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const mdb = rid('shop_');
  let pgc: pg.Client;
  let my: mysql.Connection;
  let e: EmbeddedUnderTest;
  let nextId = 10_000;

  beforeAll(async () => {
    const s = await stockSupplier();
    pgc = s.client;
    await pgc.query(`CREATE TABLE public.other ${STOCK_TABLE}`);
    my = await mysql.createConnection(`${mariadbUrl}?multipleStatements=true`);
    await my.query(`CREATE DATABASE ${mdb}; CREATE TABLE ${mdb}.levels (id int PRIMARY KEY, sku varchar(32) NOT NULL, depot varchar(8) NOT NULL, qty int NOT NULL)`);
    const m = new URL(mariadbUrl!);
    e = await startEmbeddedUnderTest({
      acme: postgresSupplierYaml(s.url, { tables: ['public.stock', 'public.other'], regions: { d1: R1, d2: R2 } }),
      cascade: `id: cascade
name: Cascade
source:
  kind: mariadb
  connection: { host: 127.0.0.1, port: ${m.port}, user: root }
  topicPrefix: ${rid('cascade')}
  tables: [{ name: ${mdb}.levels }]
mapping: { sku: sku, warehouse: depot, quantity: qty, regions: { d1: ${R1}, d2: ${R2} } }
`,
    }, 'truncate-race');
  }, 120_000);

  afterAll(async () => {
    await e?.stop();
    await pgc?.end();
    await my?.end();
  });

  async function truth(): Promise<Totals> {
    const out: Totals = new Map();
    for (const t of ['stock', 'other']) {
      const { rows } = await pgc.query<{ sku: string; depot: string; qty: number }>(`SELECT sku, depot, qty FROM public.${t}`);
      for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
    }
    const [rows] = await my.query(`SELECT sku, depot, qty FROM ${mdb}.levels`);
    for (const r of rows as Array<{ sku: string; depot: string; qty: number }>) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  }

  const row = () => [nextId++, `sku-${Math.floor(Math.random() * 12)}`, `d${1 + Math.floor(Math.random() * 2)}`, 1 + Math.floor(Math.random() * 20)];

  /** Inserts and moves at both suppliers, then a TRUNCATE of each table `gapMs` later, while `other` keeps changing. */
  async function trial(gapMs: number): Promise<void> {
    let stop = false;
    const load = (async () => {
      while (!stop) {
        await pgc.query('INSERT INTO public.other VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty', row());
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    for (let i = 0; i < 150; i++) {
      await pgc.query('INSERT INTO public.stock VALUES ($1, $2, $3, $4)', row());
      await my.query(`INSERT INTO ${mdb}.levels VALUES (?, ?, ?, ?)`, row());
    }
    await pgc.query(`UPDATE public.stock SET depot = CASE depot WHEN 'd1' THEN 'd2' ELSE 'd1' END WHERE id % 3 = 0`);
    await my.query(`UPDATE ${mdb}.levels SET depot = CASE depot WHEN 'd1' THEN 'd2' ELSE 'd1' END, sku = CONCAT(sku, 'x') WHERE id % 4 = 0`);
    await new Promise((r) => setTimeout(r, gapMs));
    await Promise.all([pgc.query('TRUNCATE public.stock'), my.query(`TRUNCATE TABLE ${mdb}.levels`)]);
    for (let i = 0; i < 20; i++) {
      await pgc.query('INSERT INTO public.stock VALUES ($1, $2, $3, $4)', row());
      await my.query(`INSERT INTO ${mdb}.levels VALUES (?, ?, ?, ?)`, row());
    }
    stop = true;
    await load;
  }

  it('removes every row the tables had at the truncate, for gaps of 0 to 80 ms, repeated', async () => {
    for (const gap of [0, 5, 20, 40, 80, 2, 10]) {
      await trial(gap);
      expect(await storesConverged(truth, e.cellar.pool, e.redis, [R1, R2], 60_000), `after a truncate ${gap} ms after the inserts`).toEqual([]);
    }
    expect(e.failed()).toBeUndefined();
  }, 600_000);
});
