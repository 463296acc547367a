import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../../infra/local/postgres.js';
import { mariadbAvailable, startLocalMariaDb, type LocalMariaDb } from '../../infra/local/mariadb.js';
import type { Totals } from '../support/pipeline.js';
import { addRow, storesConverged } from '../support/stores.js';
import { eventually, rid } from '../support/services.js';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';

/**
 * A supplier database restarted under the embedded runtime: the replication stream drops, the reader is
 * started again from the slot's confirmed position, and the totals stay exact; the process never exits.
 */
describe('embedded runtime across a supplier Postgres restart', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { a: R1, b: R2 };
  let server: LocalPostgres;
  let supplierUrl: string;
  let e: EmbeddedUnderTest;

  beforeAll(async () => {
    server = await startLocalPostgres();
    supplierUrl = await createDatabase(server.url, 'supplier');
    const c = new pg.Client(supplierUrl);
    await c.connect();
    await c.query('CREATE TABLE public.stock (id int PRIMARY KEY, sku text NOT NULL, wh text NOT NULL, qty int NOT NULL)');
    await c.query(`INSERT INTO public.stock SELECT g, 'sku-' || (g % 20), CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, g % 9 FROM generate_series(1, 200) g`);
    await c.end();
    e = await startEmbeddedUnderTest({ acme: `id: acme
name: Acme
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${server.port}, database: supplier, user: postgres }
  topicPrefix: ${rid('acme')}
  tables: [{ name: public.stock }]
mapping: { sku: sku, warehouse: wh, quantity: qty, regions: { a: ${R1}, b: ${R2} } }
` }, 'supplier-restart');
  }, 120_000);

  afterAll(async () => {
    await e?.stop();
    await server?.destroy();
  });

  async function truth(): Promise<Totals> {
    const c = new pg.Client(supplierUrl);
    await c.connect();
    try {
      const { rows } = await c.query<{ sku: string; wh: string; qty: number }>('SELECT sku, wh, qty FROM public.stock');
      const out: Totals = new Map();
      for (const r of rows) addRow(out, region[r.wh]!, r.sku, r.qty);
      return out;
    } finally {
      await c.end();
    }
  }

  async function writes(from: number, n: number): Promise<void> {
    const c = new pg.Client(supplierUrl);
    await c.connect();
    for (let i = from; i < from + n; i++) {
      await c.query('UPDATE public.stock SET qty = $2, wh = $3 WHERE id = $1', [1 + (i % 200), i % 13, i % 3 === 0 ? 'a' : 'b']);
    }
    await c.end();
  }

  it('reads again after the supplier restarts and stays exact, without stopping', async () => {
    expect(await storesConverged(truth, e.cellar.pool, e.redis, [R1, R2])).toEqual([]);
    await writes(0, 100);
    const t0 = Date.now();
    await server.stop();
    // A fast shutdown waits until every walsender's client confirmed all it was sent: Cellar must not hold
    // a supplier's restart hostage (the helper gives up and kills the server after 15 s).
    expect(Date.now() - t0, 'the supplier shut down without waiting on Cellar').toBeLessThan(10_000);
    await new Promise((r) => setTimeout(r, 1_500));
    await server.start();
    const up = await eventually(async () => {
      const c = new pg.Client(supplierUrl);
      return c.connect().then(() => c.end().then(() => true), () => false);
    }, 30_000);
    expect(up, 'the supplier came back').toBe(true);
    await writes(100, 200);
    expect(await storesConverged(truth, e.cellar.pool, e.redis, [R1, R2])).toEqual([]);
    expect(await eventually(async () => (await e.metrics.value('cellar_reader_restarts_total', { supplier: 'acme' })) >= 1, 10_000)).toBe(true);
    expect(e.failed(), 'the runtime kept running').toBeUndefined();
    expect(e.rt.isReady()).toBe(true);
  }, 180_000);
});

const withMariaDb = await mariadbAvailable();

/** The same with a MariaDB supplier: the binlog stream drops, the reader resumes from the checkpointed GTIDs. */
describe.skipIf(!withMariaDb)(`embedded runtime across a supplier MariaDB restart${withMariaDb ? '' : ' — skipped: no MariaDB server binaries'}`, () => {
  const R1 = rid('west');
  const region: Record<string, string> = { a: R1, b: R1 };
  let server: LocalMariaDb;
  let e: EmbeddedUnderTest;
  const sql = async <T>(text: string, values: unknown[] = []): Promise<T> => {
    const c = await mysql.createConnection({ uri: server.url, multipleStatements: true });
    try {
      return (await c.query(text, values))[0] as T;
    } finally {
      await c.end();
    }
  };

  beforeAll(async () => {
    server = await startLocalMariaDb();
    await sql(`CREATE DATABASE shop; CREATE TABLE shop.stock (id int PRIMARY KEY, sku varchar(16) NOT NULL, wh varchar(4) NOT NULL, qty int NOT NULL)`);
    await sql(`INSERT INTO shop.stock VALUES ${Array.from({ length: 100 }, (_, i) => `(${i + 1}, 'sku-${i % 10}', '${i % 2 ? 'a' : 'b'}', ${i % 7})`).join(',')}`);
    e = await startEmbeddedUnderTest({ shop: `id: shop
name: Shop
source:
  kind: mariadb
  connection: { host: 127.0.0.1, port: ${server.port}, user: root }
  topicPrefix: ${rid('shop')}
  tables: [{ name: shop.stock }]
mapping: { sku: sku, warehouse: wh, quantity: qty, regions: { a: ${R1}, b: ${R1} } }
` }, 'supplier-restart');
  }, 120_000);

  afterAll(async () => {
    await e?.stop();
    await server?.destroy();
  });

  async function truth(): Promise<Totals> {
    const out: Totals = new Map();
    for (const r of await sql<Array<{ sku: string; wh: string; qty: number }>>('SELECT sku, wh, qty FROM shop.stock')) addRow(out, region[r.wh]!, r.sku, r.qty);
    return out;
  }

  it('reads again from the checkpoint after the supplier restarts and stays exact, without stopping', async () => {
    expect(await storesConverged(truth, e.cellar.pool, e.redis, [R1])).toEqual([]);
    for (let i = 0; i < 50; i++) await sql('UPDATE shop.stock SET qty = ? WHERE id = ?', [i % 11, 1 + (i * 7) % 100]);
    await server.stop();
    await new Promise((r) => setTimeout(r, 1_500));
    await server.start();
    for (let i = 0; i < 80; i++) await sql('UPDATE shop.stock SET qty = ?, wh = ? WHERE id = ?', [i % 5, i % 3 ? 'a' : 'b', 1 + (i * 13) % 100]);
    expect(await storesConverged(truth, e.cellar.pool, e.redis, [R1])).toEqual([]);
    expect(await e.metrics.value('cellar_reader_restarts_total', { supplier: 'shop' })).toBeGreaterThanOrEqual(1);
    expect(e.failed(), 'the runtime kept running').toBeUndefined();
  }, 180_000);
});
