import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { createDatabase } from '../../infra/local/postgres.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { reconcileSupplier } from '../../pipelines/reconcile/reconcile.js';
import { rebuildRedisFromPostgres } from '../../sinks/redis/rebuild.js';
import { freshDatabase, rid, services, supplierDir } from '../support/services.js';

const log = createLogger('reconcile-stream-test', 'warn');

/**
 * The streaming comparison (source rows staged chunk by chunk, joined with the contributions in Cellar's
 * Postgres) against differences placed where chunks meet: rows Cellar lacks and contributions of rows the
 * source lacks on both sides of a boundary, rows counted wrongly, twice or at another bottle size, keys
 * whose text cannot be read back from a contributor id, rows the mapping rejects (held or not), and a wrong
 * total and Redis field. Every chunk size finds exactly the same drift.
 */
describe('reconciliation streams a supplier in chunks', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  let supplier: pg.Client;
  let cellar: { url: string; pool: pg.Pool };
  let redisServer: LocalRedis;
  let redis: Redis;
  let acme: Supplier;
  const stock = (id: number) => `acme/public.stock/id=${id}`;
  const bin = (wh: string, code: string) => `acme/public.bins/wh=${wh},code=${code}`;
  const regionOf = (wh: string) => (wh === 'w1' ? R1 : R2);

  beforeAll(async () => {
    const url = await createDatabase(services().pgUrl, rid('supplier_'));
    supplier = new pg.Client(url);
    await supplier.connect();
    // Rows 1–30 in order (the cursor reads them so: chunks of 4 end at 4, 8, 12, …), then rows the mapping rejects.
    await supplier.query('CREATE TABLE public.stock (id int PRIMARY KEY, sku text NOT NULL, wh text NOT NULL, qty int NOT NULL)');
    await supplier.query(`INSERT INTO public.stock SELECT g, 'sku-' || g, 'w' || (1 + g % 2), g FROM generate_series(1, 30) g`);
    await supplier.query(`INSERT INTO public.stock VALUES (31, 'sku-31', 'w9', 1), (33, 'sku-33', 'w9', 1)`);
    // A text key whose values hold commas, one of them ",code=": no contributor id gives it back.
    await supplier.query('CREATE TABLE public.bins (wh text, code text, sku text NOT NULL, qty int NOT NULL, PRIMARY KEY (wh, code))');
    await supplier.query(`INSERT INTO public.bins VALUES ('w1', 'a,b', 'bin-ab', 3), ('w1', 'p,code=q', 'bin-pq', 4), ('w2', 'x', 'bin-x', 5)`);
    const u = new URL(url);
    const dir = supplierDir({ acme: `id: acme
name: Acme
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: ${u.pathname.slice(1)}, user: postgres }
  tables: [{ name: public.stock }, { name: public.bins }]
mapping: { sku: sku, warehouse: wh, quantity: qty, unit: bottles, regions: { w1: ${R1}, w2: ${R2} } }
` });
    acme = loadRegistry(dir)[0]!;

    cellar = await freshDatabase();
    const { rows: source } = await supplier.query<{ id: number; sku: string; wh: string; qty: number }>('SELECT id, sku, wh, qty FROM public.stock WHERE wh <> $1', ['w9']);
    const held: Array<[string, string, string, string, number, number | null]> = source
      .filter((r) => ![4, 5, 8, 9].includes(r.id)) // rows Cellar lacks, at both sides of two chunk boundaries
      .map((r) => [stock(r.id), regionOf(r.wh), r.sku, r.wh, [12, 13].includes(r.id) ? r.qty + 1 : r.qty, r.id === 20 ? 1500 : 750]);
    held.push(
      [stock(0), R1, 'sku-0', 'w1', 2, 750], [stock(32), R1, 'sku-32', 'w1', 2, 750], // contributions of rows the source lacks
      ['acme/public.gone/id=1', R2, 'sku-gone', 'w2', 1, 750], // of a table no longer captured
      [stock(16), R2, 'sku-16', 'w2', 5, 750], // row 16 (w1, so R1) counted a second time under another key
      [stock(31), R1, 'sku-31', 'w1', 1, 750], // a rejected row Cellar still counts: held, not drift
      [bin('w1', 'a,b'), R1, 'bin-ab', 'w1', 3, null], // counted before sizes were kept: any size matches
      [bin('w2', 'x'), R2, 'bin-x', 'w2', 9, 750],
    );
    await cellar.pool.query(
      `INSERT INTO cellar.stock_contributions (contributor_id, region, sku, warehouse_id, bottles, bottle_size_ml, supplier_id, source_version, source_ts, deleted, key_version, partition)
       SELECT c, r, s, w, b, z, 'acme', lpad(ordinality::text, 20, '0'), now(), false, 1, -1
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::int[]) WITH ORDINALITY AS u(c, r, s, w, b, z)`,
      [0, 1, 2, 3, 4, 5].map((i) => held.map((h) => h[i])),
    );
    await cellar.pool.query(`INSERT INTO cellar.regional_stock (region, sku, bottles, contributors, version, source_ts, updated_at)
      SELECT region, sku, sum(bottles), count(*), 1, now(), now() FROM cellar.stock_contributions GROUP BY region, sku`);
    redisServer = await startLocalRedis();
    redis = new Redis(redisServer.url);
    await rebuildRedisFromPostgres({ pool: cellar.pool, redis });
    // Cellar's own layers disagreeing where every contribution is right.
    await cellar.pool.query('UPDATE cellar.regional_stock SET bottles = bottles + 7 WHERE region = $1 AND sku = $2', [R2, 'sku-25']);
    await redis.hset(`cellar:stock:${R1}`, 'sku-26', '999');
  }, 120_000);

  afterAll(async () => {
    await supplier?.end();
    await cellar?.pool.end();
    redis?.disconnect();
    await redisServer?.destroy();
  });

  for (const chunkRows of [4, 5, 1000]) {
    it(`finds every difference, wherever the chunks of ${chunkRows} rows end`, async () => {
      const r = await reconcileSupplier({ pool: cellar.pool, redis, log }, acme, { chunkRows, settleMs: 20, rounds: 2 });
      expect(r).toMatchObject({ rowsCompared: 35, rejectedRows: 2, heldRows: 1, unsettled: 0, outcome: 'drift' });
      const found = r.drift.map((d) => (d.kind === 'contribution' ? d.contributorId : `${d.kind} ${d.region}/${d.sku}`)).sort();
      expect(found).toEqual([
        ...[0, 4, 5, 8, 9, 12, 13, 16, 20, 32].map(stock), 'acme/public.gone/id=1', bin('w1', 'p,code=q'), bin('w2', 'x'),
        `redis ${R1}/sku-26`, `regional_total ${R2}/sku-25`,
      ].sort());
      const by = new Map(r.drift.map((d) => [d.contributorId, d]));
      expect(by.get(stock(4))).toMatchObject({ expected: { region: R1, sku: 'sku-4', bottles: 4 }, actual: null });
      expect(by.get(stock(32))).toMatchObject({ expected: null, actual: { bottles: 2 } });
      expect(by.get(stock(13))).toMatchObject({ expected: { bottles: 13 }, actual: { bottles: 14 } });
      expect(by.get(stock(16))!.likelyCause).toContain('counted under 2 keys');
      expect(by.get(stock(20))!.likelyCause).toContain('1500 ml');
      // Read back through the staged key, not the id (which splits at ",code="): the row was found again.
      expect(by.get(bin('w1', 'p,code=q'))).toMatchObject({ expected: { region: R1, sku: 'bin-pq', bottles: 4 }, actual: null });
      expect(by.get(bin('w2', 'x'))).toMatchObject({ expected: { bottles: 5 }, actual: { bottles: 9 } });
      // The staging table lives in a session of its own, closed or emptied at the end.
      const { rows } = await cellar.pool.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'reconcile_expected'");
      expect(rows[0].n).toBe(0);
    }, 60_000);
  }
});
