import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../../infra/local/postgres.js';
import { freePort, stopChild } from '../../infra/local/process.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import type { Totals } from '../support/pipeline.js';
import { addRow, eventDisagreements, historyDisagreements, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, eventually, rid, supplierDir } from '../support/services.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';

/**
 * Outages of Cellar's own stores under `cellar run embedded`, with a supplier writing all along: Cellar's
 * Postgres restarted, then crashed (immediate shutdown), then Redis frozen for 15 s. The process must stay
 * up through each, say on /readyz what it waits for, and end with totals equal to the supplier's rows.
 */
describe('embedded runtime through outages of its own Postgres and Redis', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const logDir = artifactDir('embedded-stores');
  let supplier: pg.Client;
  let cellarServer: LocalPostgres;
  let cellarPool: pg.Pool;
  let redis: LocalRedis;
  let redisClient: Redis;
  let proc: ChildProcess;
  let httpPort: number;
  let stopWriting = false;
  let writer: Promise<void>;
  let nextId = 1000;

  beforeAll(async () => {
    const s = await stockSupplier({ rows: 400, skus: 11, maxQty: 13 });
    supplier = s.client;
    cellarServer = await startLocalPostgres({ walLevel: 'replica' });
    const cellarUrl = await createDatabase(cellarServer.url, 'cellar');
    cellarPool = createPgPool(cellarUrl, { max: 2 });
    redis = await startLocalRedis();
    redisClient = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    redisClient.on('error', () => undefined);
    httpPort = await freePort();
    const dir = supplierDir({ acme: postgresSupplierYaml(s.url, { regions: { d1: R1, d2: R2 } }) });
    const env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir, CELLAR_HTTP_PORT: String(httpPort) });
    proc = spawnCellar(['run', 'embedded'], env, join(logDir, 'embedded.log'));
    writer = (async () => {
      while (!stopWriting) {
        const id = 1 + Math.floor(Math.random() * 400);
        const roll = Math.random();
        if (roll < 0.15) await supplier.query('INSERT INTO public.stock VALUES ($1, $2, $3, $4)', [nextId++, `sku-${nextId % 11}`, `d${1 + (nextId % 2)}`, nextId % 13]);
        else if (roll < 0.25) await supplier.query('DELETE FROM public.stock WHERE id = $1', [id]);
        else if (roll < 0.4) await supplier.query('UPDATE public.stock SET depot = $2, sku = $3 WHERE id = $1', [id, `d${1 + Math.floor(Math.random() * 2)}`, `sku-${Math.floor(Math.random() * 11)}`]);
        else await supplier.query('UPDATE public.stock SET qty = $2 WHERE id = $1', [id, Math.floor(Math.random() * 13)]);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
  }, 120_000);

  afterAll(async () => {
    stopWriting = true;
    await writer?.catch(() => undefined);
    if (proc) await stopChild(proc, 'SIGTERM', 15_000);
    await supplier?.end();
    await cellarPool?.end();
    redisClient?.disconnect();
    await redis?.destroy();
    await cellarServer?.destroy();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; qty: number }>('SELECT sku, depot, qty FROM public.stock');
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  }

  const readyz = async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
    return { status: res.status, body: (await res.json()) as { status: string; reason?: string } };
  };
  const alive = () => proc.exitCode === null && proc.signalCode === null;

  /** Waits until the runtime reports ready again, then (writes paused) until the totals equal the rows. */
  async function recovers(what: string): Promise<void> {
    expect(await eventually(async () => (await readyz()).status === 200, 90_000), `${what}: ready again (see ${logDir}/embedded.log)`).toBe(true);
    stopWriting = true;
    await writer;
    expect(await storesConverged(truth, cellarPool, redisClient, [R1, R2]), `${what} (see ${logDir}/embedded.log)`).toEqual([]);
    // Written in the same transactions (the history ahead, while the previous group committed): exact too.
    expect(await historyDisagreements(cellarPool, [R1, R2]), `${what}: history`).toEqual([]);
    expect(await eventDisagreements(cellarPool, [R1, R2]), `${what}: stock events`).toEqual([]);
    expect(alive(), `${what}: the process is still running`).toBe(true);
    stopWriting = false;
    writer = (async () => {
      while (!stopWriting) {
        const id = 1 + Math.floor(Math.random() * 400);
        await supplier.query('UPDATE public.stock SET qty = $2 WHERE id = $1', [id, Math.floor(Math.random() * 13)]);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
  }

  it('stays up and exact when its Postgres restarts under load, and says why it is not ready meanwhile', async () => {
    expect(await eventually(async () => (await readyz()).status === 200, 90_000), 'started').toBe(true);
    await new Promise((r) => setTimeout(r, 1_000));
    await cellarServer.stop();
    expect(await eventually(async () => {
      const r = await readyz();
      return r.status === 503 && /Postgres|connect|terminat|ECONNREFUSED/i.test(r.body.reason ?? '');
    }, 30_000), '/readyz names what it waits for').toBe(true);
    expect(alive()).toBe(true);
    await new Promise((r) => setTimeout(r, 3_000));
    await cellarServer.start();
    await recovers('after a Postgres restart');
  }, 240_000);

  it('stays up and exact when its Postgres crashes under load', async () => {
    await new Promise((r) => setTimeout(r, 1_000));
    await cellarServer.crash();
    await new Promise((r) => setTimeout(r, 2_000));
    expect(alive()).toBe(true);
    await cellarServer.start();
    await recovers('after a Postgres crash');
    // Groups commit in the transaction opened ahead, and through both outages some were written again whole.
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const commits = (path: string) => Number(new RegExp(`^cellar_group_commits_total\\{path="${path}"\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? 0);
    expect(commits('ahead'), metrics.split('\n').filter((l) => l.startsWith('cellar_group_commits_total')).join('\n')).toBeGreaterThan(0);
    expect(commits('whole')).toBeGreaterThan(0);
  }, 240_000);

  it('stays up and exact when Redis freezes for 15 s under load', async () => {
    await new Promise((r) => setTimeout(r, 1_000));
    redis.freeze();
    await new Promise((r) => setTimeout(r, 15_000));
    expect(alive()).toBe(true);
    redis.thaw();
    await recovers('after Redis was frozen for 15 s');
  }, 240_000);
});
