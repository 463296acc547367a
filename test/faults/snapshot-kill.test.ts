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
import { postgresSupplierYaml, STOCK_TABLE } from '../support/suppliers.js';

const TRIALS = Math.max(10, Number(process.env.CELLAR_FAULT_TRIALS ?? 10));

/**
 * `cellar run embedded` killed with SIGKILL at random points of a supplier's initial snapshot while the
 * supplier deletes rows: the restarted runtime snapshots again, and the redone snapshot must remove the
 * rows deleted meanwhile, not only re-emit those that exist. Each trial starts from a fresh Cellar
 * database and slot; the totals must equal the supplier's rows after every one.
 */
describe(`embedded runtime killed during its initial snapshot (${TRIALS} trials)`, () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const logDir = artifactDir('snapshot-kill');
  let supplier: pg.Client;
  let supplierUrl: string;
  let redis: LocalRedis;
  let redisClient: Redis;

  beforeAll(async () => {
    supplierUrl = await createDatabase(services().pgUrl, rid('supplier_'));
    supplier = new pg.Client(supplierUrl);
    await supplier.connect();
    redis = await startLocalRedis();
    redisClient = new Redis(redis.url);
  }, 60_000);

  afterAll(async () => {
    await supplier?.end();
    redisClient?.disconnect();
    await redis?.destroy();
  });

  async function truth(table: string): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; qty: number }>(`SELECT sku, depot, qty FROM public.${table}`);
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  }

  it('removes the rows deleted while the runtime was down, whatever point of the snapshot the kill hit', async () => {
    const outcomes: string[] = [];
    for (let trial = 1; trial <= TRIALS; trial++) {
      const table = `stock_${trial}`;
      await supplier.query(`CREATE TABLE public.${table} ${STOCK_TABLE}`);
      await supplier.query(`INSERT INTO public.${table} SELECT g, 'sku-' || (g % 23), 'd' || (1 + g % 2), 1 + g % 9 FROM generate_series(1, 30000) g`);
      const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
      const cellar = createPgPool(cellarUrl, { max: 2 });
      const dir = supplierDir({ acme: postgresSupplierYaml(supplierUrl, { tables: [`public.${table}`], regions: { d1: R1, d2: R2 } }) });
      const env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir });
      let proc: ChildProcess = spawnCellar(['run', 'embedded'], env, join(logDir, `trial-${trial}-a.log`));
      let deleting = true;
      const deleter = (async () => {
        while (deleting) {
          await supplier.query(`DELETE FROM public.${table} WHERE id IN (SELECT id FROM public.${table} ORDER BY random() LIMIT 20)`);
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      // Startup takes about 1.5–2.5 s; the snapshot of 30,000 rows about as long again.
      const killAt = 1_500 + Math.floor(Math.random() * 3_000);
      await new Promise((r) => setTimeout(r, killAt));
      await stopChild(proc, 'SIGKILL');
      const { rows } = await cellar.query<{ n: number }>('SELECT count(*)::int AS n FROM cellar.stock_contributions').catch(() => ({ rows: [{ n: -1 }] }));
      await new Promise((r) => setTimeout(r, 500)); // more deletes while it is down
      proc = spawnCellar(['run', 'embedded'], env, join(logDir, `trial-${trial}-b.log`));
      await new Promise((r) => setTimeout(r, 1_000));
      deleting = false;
      await deleter;
      const diff = await storesConverged(() => truth(table), cellar, redisClient, [R1, R2], 90_000);
      outcomes.push(`trial ${trial}: killed after ${killAt} ms with ${rows[0]!.n} contributions committed: ${diff.length ? `${diff.length} keys wrong` : 'exact'}`);
      expect(diff, `${outcomes.join('\n')}\n(logs: ${logDir}/trial-${trial}-*.log)`).toEqual([]);
      await stopChild(proc, 'SIGTERM', 15_000);
      await cellar.end();
      await supplier.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'cellar_acme%' AND NOT active`);
      await redisClient.flushall();
    }
    console.log(outcomes.join('\n'));
  }, 900_000);
});
