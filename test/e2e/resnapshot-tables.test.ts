import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase } from '../../infra/local/postgres.js';
import { stopChild } from '../../infra/local/process.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { runCellar } from '../support/cli.js';
import type { Totals } from '../support/pipeline.js';
import { addRow, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';
import { postgresSupplierYaml, STOCK_TABLE, stockSupplier } from '../support/suppliers.js';
import { concurrentWriter } from '../support/writers.js';

/**
 * `cellar resnapshot --supplier X --table T` against `cellar run embedded` processes, with a supplier of
 * two tables: Cellar missed changes of `public.stock` (taken out of the publication meanwhile); only that
 * table is read again, while `public.cases` keeps streaming under concurrent writes and is not touched.
 */
describe('cellar resnapshot --table (embedded runtime)', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const prefix = rid('acme');
  const publication = `cellar_${prefix.replace(/[^a-z0-9_]/g, '_')}`;
  const logDir = artifactDir('resnapshot-tables');
  let supplier: pg.Client;
  let supplierUrl: string;
  let writerClient: pg.Client;
  let cellarPool: pg.Pool;
  let redis: LocalRedis;
  let redisClient: Redis;
  let env: Record<string, string>;
  let suppliersDir: string;
  let supplierFile: string;
  const procs: ChildProcess[] = [];
  const start = (name: string) => {
    const p = spawnCellar(['run', 'embedded'], env, join(logDir, `${name}.log`));
    procs.push(p);
    return p;
  };
  const cli = (args: string[]) => runCellar(['resnapshot', '--supplier', 'acme', ...args], { ...env, CELLAR_LOG_LEVEL: 'warn' }, logDir);

  beforeAll(async () => {
    const s = await stockSupplier({ rows: 500, skus: 13, maxQty: 11 });
    supplier = s.client;
    supplierUrl = s.url;
    await supplier.query(`CREATE TABLE public.cases ${STOCK_TABLE}`);
    await supplier.query(`INSERT INTO public.cases SELECT g, 'sku-' || (g % 7), 'd' || (1 + g % 2), g % 13 FROM generate_series(1, 300) g`);
    writerClient = new pg.Client(s.url);
    await writerClient.connect();
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    cellarPool = createPgPool(cellarUrl, { max: 2 });
    redis = await startLocalRedis();
    redisClient = new Redis(redis.url);
    suppliersDir = supplierDir({ acme: postgresSupplierYaml(s.url, { prefix, tables: ['public.stock', 'public.cases'], regions: { d1: R1, d2: R2 } }) });
    supplierFile = join(suppliersDir, 'acme.yaml');
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: suppliersDir });
    start('first');
  }, 60_000);

  afterAll(async () => {
    for (const p of procs) await stopChild(p, 'SIGTERM', 15_000);
    await writerClient?.end();
    await supplier?.end();
    await cellarPool?.end();
    redisClient?.disconnect();
    await redis?.destroy();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; qty: number }>('SELECT sku, depot, qty FROM public.stock UNION ALL SELECT sku, depot, qty FROM public.cases');
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  }
  const converged = (ms?: number) => storesConverged(truth, cellarPool, redisClient, [R1, R2], ms);
  /** Source version of each `public.cases` row Cellar holds, by row id. */
  async function casesVersions(): Promise<Map<number, string>> {
    const { rows } = await cellarPool.query<{ contributor_id: string; source_version: string }>("SELECT contributor_id, source_version FROM cellar.contributor_routes WHERE supplier_id = 'acme' AND source_table = 'public.cases'");
    return new Map(rows.map((r) => [Number(/id=(\d+)$/.exec(r.contributor_id)![1]), r.source_version]));
  }
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Changes of `public.stock` Cellar does not see (the table is out of the publication meanwhile); new rows get ids from `firstNew`. */
  async function missStockChanges(firstNew: number): Promise<void> {
    await supplier.query(`ALTER PUBLICATION ${publication} DROP TABLE public.stock`);
    // A walsender applies a publication change from the next transaction it decodes on: let one pass.
    await sleep(500);
    await supplier.query('UPDATE public.stock SET qty = qty WHERE id = 2');
    await sleep(1_000);
    await supplier.query('DELETE FROM public.stock WHERE id % 7 = 0');
    await supplier.query(`UPDATE public.stock SET qty = qty + 3, depot = CASE depot WHEN 'd1' THEN 'd2' ELSE 'd1' END WHERE id % 5 = 0`);
    await supplier.query(`INSERT INTO public.stock SELECT g, 'sku-new', 'd1', 4 FROM generate_series($1::int, $1::int + 19) g`, [firstNew]);
  }

  it('re-reads only the named table: rows deleted behind Cellar\'s back are corrected, the other table streams on untouched', async () => {
    expect(await converged(), `first runtime (${logDir}/first.log)`).toEqual([]);
    await missStockChanges(1001);
    expect((await converged(3_000)).length, 'Cellar missed those changes').toBeGreaterThan(10);
    const before = await casesVersions();
    const writer = concurrentWriter(writerClient, 'public.cases', 151);
    const run = await cli(['--table', 'public.stock']);
    const writes = await writer.stop();
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain('taken by the embedded runtime');
    expect(run.out).toContain('it snapshots public.stock again now (the other tables keep streaming)');
    expect(run.out).toContain('finished at');
    expect(writes, 'writes to public.cases during the resnapshot').toBeGreaterThan(0);
    expect(await converged(), `after cellar resnapshot --table (${logDir}/first.log)`).toEqual([]);
    // Rows of public.cases nobody changed keep the versions they streamed with: not truncated, not re-read.
    const after = await casesVersions();
    const untouched = [...before].filter(([id]) => id <= 150);
    expect(untouched.length).toBe(150);
    expect(untouched.filter(([id, v]) => after.get(id) !== v)).toEqual([]);
    // The stream goes on for both tables.
    await supplier.query('UPDATE public.stock SET qty = 9 WHERE id = 1');
    await supplier.query('UPDATE public.cases SET qty = 9 WHERE id = 1');
    expect(await converged()).toEqual([]);
  }, 180_000);

  it('refuses a table the supplier does not capture, naming the supplier file and its tables, and queues nothing', async () => {
    const requests = async () => (await cellarPool.query('SELECT id FROM cellar.resnapshot_requests')).rows.length;
    const queued = await requests();
    const bad = await cli(['--table', 'public.stock,public.nope', '--table', 'public.cases']);
    expect(bad.code, bad.out).toBe(2);
    expect(bad.out).toContain(`--table: ${supplierFile} (supplier acme) has no table "public.nope" in source.tables; its tables: public.stock, public.cases`);
    expect(await requests()).toBe(queued);
  }, 60_000);

  it('a runtime killed during a table\'s resnapshot snapshots that table again on restart, losing no change of the other', async () => {
    await missStockChanges(2001);
    // Holds the snapshot of public.stock back, so the runtime is killed in the middle of it.
    const locker = new pg.Client(supplierUrl);
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE public.stock IN ACCESS EXCLUSIVE MODE');
    const queued = await cli(['--table', 'public.stock', '--no-wait']);
    expect(queued.code, queued.out).toBe(0);
    const id = Number(/request (\d+)/.exec(queued.out)![1]);
    const request = async () => (await cellarPool.query<{ taken_at: Date | null; finished_at: Date | null }>('SELECT taken_at, finished_at FROM cellar.resnapshot_requests WHERE id = $1', [id])).rows[0]!;
    expect(await eventually(async () => (await request()).taken_at !== null, 30_000), 'the runtime took the request').toBe(true);
    const writer = concurrentWriter(writerClient, 'public.cases', 151);
    await sleep(1_000); // the writer runs beside the blocked snapshot
    expect((await request()).finished_at).toBeNull();
    await stopChild(procs[0]!, 'SIGKILL', 5_000);
    await sleep(500);
    await writer.stop();
    await locker.query('COMMIT');
    await locker.end();
    const checkpoint = await cellarPool.query<{ position: { snapshotTables?: string[] } }>("SELECT position FROM cellar.checkpoints WHERE source_id = 'acme'");
    expect(checkpoint.rows[0]?.position.snapshotTables, 'the checkpoint says which tables are owed').toEqual(['public.stock']);
    start('second');
    expect(await converged(), `after the restart (${logDir}/second.log)`).toEqual([]);
    expect(await eventually(async () => (await request()).finished_at !== null, 30_000), 'request finished after the restart').toBe(true);
    const done = await cellarPool.query<{ position: Record<string, unknown> }>("SELECT position FROM cellar.checkpoints WHERE source_id = 'acme'");
    expect(done.rows[0]?.position).toMatchObject({ snapshotDone: true });
    expect(done.rows[0]?.position.snapshotTables).toBeUndefined();
  }, 180_000);
});
