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
import type { Totals } from '../support/pipeline.js';
import { addRow, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, rid, services, supplierDir } from '../support/services.js';

/**
 * `cellar run embedded` against a real supplier Postgres: the native reader's snapshot and stream,
 * normalize, aggregate, Postgres and Redis in one process; killed with SIGKILL mid-stream and restarted.
 */
describe('embedded runtime end to end (Postgres supplier)', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const regions: Record<string, string> = { d1: R1, d2: R1, d3: R2 };
  let supplier: pg.Client;
  let cellarPool: pg.Pool;
  let redis: LocalRedis;
  let redisClient: Redis;
  let env: Record<string, string>;
  let proc: ChildProcess | undefined;
  const logDir = artifactDir('embedded');
  let runs = 0;
  const start = () => (proc = spawnCellar(['run', 'embedded'], env, join(logDir, `embedded-${++runs}.log`)));

  beforeAll(async () => {
    const supplierUrl = await createDatabase(services().pgUrl, rid('supplier_'));
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    supplier = new pg.Client(supplierUrl);
    await supplier.connect();
    await supplier.query('CREATE TABLE public.stock (id int PRIMARY KEY, item_code text NOT NULL, depot text NOT NULL, cases int NOT NULL)');
    await supplier.query(`INSERT INTO public.stock SELECT g, 'sku-' || (g % 7), 'd' || (1 + g % 3), g % 20 FROM generate_series(1, 300) g`);
    cellarPool = createPgPool(cellarUrl, { max: 2 });
    redis = await startLocalRedis();
    redisClient = new Redis(redis.url);
    const u = new URL(supplierUrl);
    const dir = supplierDir({ acme: `id: acme
name: Acme
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: ${u.pathname.slice(1)}, user: postgres }
  topicPrefix: ${rid('acme')}
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: cases
  unit: case6
  regions: { d1: ${R1}, d2: ${R1}, d3: ${R2} }
` });
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir, CELLAR_LOG_LEVEL: 'info' });
  });

  afterAll(async () => {
    if (proc) await stopChild(proc, 'SIGTERM', 15_000);
    await supplier?.end();
    await cellarPool?.end();
    redisClient?.disconnect();
    await redis?.destroy();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ item_code: string; depot: string; cases: number }>('SELECT item_code, depot, cases FROM public.stock');
    const out: Totals = new Map();
    for (const r of rows) addRow(out, regions[r.depot]!, r.item_code, r.cases * 6);
    return out;
  }

  const converged = () => storesConverged(truth, cellarPool, redisClient, [R1, R2]);

  let nextId = 1000;
  async function randomWrites(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const roll = Math.random();
      const id = 1 + Math.floor(Math.random() * 300);
      if (roll < 0.2) await supplier.query(`INSERT INTO public.stock VALUES ($1, $2, $3, $4)`, [nextId++, `sku-${Math.floor(Math.random() * 7)}`, `d${1 + Math.floor(Math.random() * 3)}`, Math.floor(Math.random() * 20)]);
      else if (roll < 0.3) await supplier.query('DELETE FROM public.stock WHERE id = $1', [id]);
      else if (roll < 0.45) await supplier.query(`UPDATE public.stock SET depot = $2, item_code = $3 WHERE id = $1`, [id, `d${1 + Math.floor(Math.random() * 3)}`, `sku-${Math.floor(Math.random() * 7)}`]);
      else await supplier.query('UPDATE public.stock SET cases = $2 WHERE id = $1', [id, Math.floor(Math.random() * 20)]);
    }
  }

  it('snapshots existing rows, streams every change, and equals the supplier\'s rows', async () => {
    start();
    await randomWrites(100); // while the runtime starts and snapshots
    expect(await converged()).toEqual([]);
  }, 120_000);

  it('stays exact when killed with SIGKILL mid-stream and restarted, and after a truncate', async () => {
    // Each kill lands at a random point: reading, normalizing the next group, or inside a commit.
    const kills = Number(process.env.CELLAR_FAULT_TRIALS ?? 3);
    for (let k = 0; k < kills; k++) {
      const writer = randomWrites(400);
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
      await stopChild(proc!, 'SIGKILL');
      start();
      await writer;
      await randomWrites(50);
      expect(await converged(), `after kill ${k + 1}`).toEqual([]);
    }
    await supplier.query('TRUNCATE public.stock');
    await supplier.query(`INSERT INTO public.stock VALUES (1, 'sku-1', 'd1', 2)`);
    expect(await converged()).toEqual([]);
  }, 300_000);
});
