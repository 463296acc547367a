import { readFileSync, writeFileSync } from 'node:fs';
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
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';

/**
 * Schema changes of a captured table under `cellar run embedded`: a mapped column retyped (int → numeric)
 * keeps the totals exact; a mapped column renamed dead-letters every change that lacks it (missing_field,
 * naming the column), and after the supplier file is fixed and the runtime restarted, `cellar dlq replay`
 * brings the totals back to the supplier's rows.
 */
describe('schema changes of a captured table (embedded runtime)', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const logDir = artifactDir('schema-change');
  let supplier: pg.Client;
  let cellarPool: pg.Pool;
  let redis: LocalRedis;
  let redisClient: Redis;
  let env: Record<string, string>;
  let dir: string;
  let proc: ChildProcess | undefined;
  let runs = 0;
  let qtyColumn = 'qty';
  const start = () => (proc = spawnCellar(['run', 'embedded'], env, join(logDir, `embedded-${++runs}.log`)));

  beforeAll(async () => {
    const s = await stockSupplier({ rows: 200, skus: 7, maxQty: 10 });
    supplier = s.client;
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    cellarPool = createPgPool(cellarUrl, { max: 2 });
    redis = await startLocalRedis();
    redisClient = new Redis(redis.url);
    dir = supplierDir({ acme: postgresSupplierYaml(s.url, { regions: { d1: R1, d2: R2 } }) });
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir });
    start();
  }, 60_000);

  afterAll(async () => {
    if (proc) await stopChild(proc, 'SIGTERM', 15_000);
    await supplier?.end();
    await cellarPool?.end();
    redisClient?.disconnect();
    await redis?.destroy();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; q: string }>(`SELECT sku, depot, ${qtyColumn}::text AS q FROM public.stock`);
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, Number(r.q));
    return out;
  }
  const converged = () => storesConverged(truth, cellarPool, redisClient, [R1, R2]);
  const update = (n: number) => supplier.query(`UPDATE public.stock SET ${qtyColumn} = ${qtyColumn} + 1 WHERE id % ${n} = 0`);

  it('a mapped column retyped int → numeric keeps the totals exact', async () => {
    expect(await converged()).toEqual([]);
    await supplier.query('ALTER TABLE public.stock ALTER COLUMN qty TYPE numeric(12,2)');
    await update(3);
    await supplier.query(`INSERT INTO public.stock VALUES (900, 'sku-1', 'd1', 12.00)`);
    expect(await converged(), `after the retype (${logDir})`).toEqual([]);
  }, 120_000);

  it('a renamed mapped column is dead-lettered naming it; after the fix, restart and replay the totals are exact', async () => {
    await supplier.query('ALTER TABLE public.stock RENAME COLUMN qty TO cases');
    qtyColumn = 'cases';
    const changed = (await supplier.query<{ n: number }>('SELECT count(*)::int AS n FROM public.stock WHERE id % 4 = 0')).rows[0]!.n;
    await update(4);
    await supplier.query(`DELETE FROM public.stock WHERE id % 9 = 0`);
    const letters = async () => (await cellarPool.query<{ n: number }>(`SELECT count(*)::int AS n FROM cellar.dead_letters WHERE reason = 'missing_field'`)).rows[0]!.n;
    expect(await eventually(async () => (await letters()) === changed, 60_000), `${changed} updates dead-lettered (${logDir})`).toBe(true);
    const { rows } = await cellarPool.query<{ message: string }>(`SELECT message FROM cellar.dead_letters WHERE reason = 'missing_field' LIMIT 1`);
    expect(rows[0]!.message).toContain('quantity field "qty" is missing');
    expect(rows[0]!.message, 'the letter says what to do').toContain('Fix mapping.quantity in the supplier file, restart, then `cellar dlq replay --reason missing_field`');
    // The deletes carried no quantity to miss: they applied.
    expect((await storesConverged(truth, cellarPool, redisClient, [R1, R2], 3_000)).length).toBeGreaterThan(0);

    await stopChild(proc!, 'SIGTERM', 15_000);
    const yaml = readFileSync(join(dir, 'acme.yaml'), 'utf8').replace('quantity: qty', 'quantity: cases');
    writeFileSync(join(dir, 'acme.yaml'), yaml);
    start();
    const replay = await runCellar(['dlq', 'replay', '--reason', 'missing_field'], { ...env, CELLAR_LOG_LEVEL: 'warn' }, logDir);
    expect(replay.out).toContain(`handed ${changed} back to the embedded runtime`);
    await update(5);
    expect(await converged(), `after fix, restart and replay (${logDir})`).toEqual([]);
  }, 180_000);
});
