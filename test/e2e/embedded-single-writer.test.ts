import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase } from '../../infra/local/postgres.js';
import { freePort, stopChild } from '../../infra/local/process.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import type { Totals } from '../support/pipeline.js';
import { addRow, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';

/**
 * Two `cellar run embedded` processes on one configuration: the second is refused while the first holds
 * the single-writer lease; a first one frozen with SIGSTOP is taken over with --take-over, and when it
 * wakes it cannot commit anything (it exits); the totals stay equal to the supplier's rows throughout.
 */
describe('one embedded runtime per Cellar database', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const logDir = artifactDir('single-writer');
  let supplier: pg.Client;
  let cellarPool: pg.Pool;
  let redis: LocalRedis;
  let redisClient: Redis;
  let env: Record<string, string>;
  const procs: ChildProcess[] = [];
  const start = (name: string, args: string[] = [], extra: Record<string, string> = {}) => {
    const p = spawnCellar(['run', 'embedded', ...args], { ...env, ...extra }, join(logDir, `${name}.log`));
    procs.push(p);
    return p;
  };
  const exited = (p: ChildProcess) => new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (code) => r(code))));
  const log = (name: string) => readFileSync(join(logDir, `${name}.log`), 'utf8');

  beforeAll(async () => {
    const s = await stockSupplier({ rows: 300, skus: 9, maxQty: 17 });
    supplier = s.client;
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    cellarPool = createPgPool(cellarUrl, { max: 2 });
    redis = await startLocalRedis();
    redisClient = new Redis(redis.url);
    const dir = supplierDir({ acme: postgresSupplierYaml(s.url, { regions: { d1: R1, d2: R2 } }) });
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir });
  }, 60_000);

  afterAll(async () => {
    for (const p of procs) {
      p.kill('SIGCONT');
      await stopChild(p, 'SIGTERM', 15_000);
    }
    await supplier?.end();
    await cellarPool?.end();
    redisClient?.disconnect();
    await redis?.destroy();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; qty: number }>('SELECT sku, depot, qty FROM public.stock');
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  }
  async function writes(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const id = 1 + Math.floor(Math.random() * 300);
      if (Math.random() < 0.3) await supplier.query('UPDATE public.stock SET depot = $2, sku = $3 WHERE id = $1', [id, `d${1 + Math.floor(Math.random() * 2)}`, `sku-${Math.floor(Math.random() * 9)}`]);
      else await supplier.query('UPDATE public.stock SET qty = $2 WHERE id = $1', [id, Math.floor(Math.random() * 17)]);
    }
  }
  const converged = () => storesConverged(truth, cellarPool, redisClient, [R1, R2]);

  it('refuses a second runtime while the first holds the lease, naming the holder and how to take over', async () => {
    const first = start('first');
    expect(await converged(), `first runtime (${logDir}/first.log)`).toEqual([]);
    const second = start('second');
    expect(await exited(second)).toBe(1);
    const out = log('second');
    expect(out).toContain('lease_held');
    expect(out).toContain(`pid ${first.pid}`);
    expect(out).toContain('--take-over');
    await writes(200);
    expect(await converged()).toEqual([]);
    expect(first.exitCode).toBeNull();
  }, 180_000);

  it('fences a frozen runtime taken over by a new one: when it wakes it commits nothing and exits', async () => {
    const first = procs[0]!;
    const writer = writes(300);
    await new Promise((r) => setTimeout(r, 300));
    first.kill('SIGSTOP');
    await writer;
    const httpPort = await freePort();
    const third = start('third', ['--take-over'], { CELLAR_HTTP_PORT: String(httpPort) });
    expect(await eventually(async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status === 200, 90_000), `third ready (${logDir}/third.log)`).toBe(true);
    await writes(200);
    expect(await converged(), `after the takeover (${logDir}/third.log)`).toEqual([]);
    const { rows } = await cellarPool.query<{ pid: number; epoch: string }>("SELECT pid, epoch FROM cellar.runtime_leases WHERE name = 'embedded'");
    expect(rows).toEqual([{ pid: third.pid, epoch: '2' }]);
    // The frozen one wakes with a group it had prepared: it must not commit it.
    first.kill('SIGCONT');
    expect(await exited(first)).toBe(1);
    expect(log('first')).toMatch(/lease/);
    await writes(200);
    expect(await converged(), `after the old runtime woke (${logDir}/first.log)`).toEqual([]);
    expect(third.exitCode).toBeNull();
  }, 240_000);

  it('a runtime killed with SIGKILL is replaced at once: the lease goes with its connection', async () => {
    const third = procs[2]!;
    await stopChild(third, 'SIGKILL');
    const fourth = start('fourth');
    await writes(200);
    expect(await converged(), `after SIGKILL and restart (${logDir}/fourth.log)`).toEqual([]);
    expect(fourth.exitCode).toBeNull();
  }, 180_000);
});
