import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { Redis } from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase } from '../../infra/local/postgres.js';
import { freePort, stopChild } from '../../infra/local/process.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { readRegionalStock } from '../../sinks/postgres/read.js';
import type { Totals } from '../support/pipeline.js';
import { explainProcess, metricValue } from '../support/embedded.js';
import { addRow, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';

/** How long Redis stays stopped in the outage under load. */
const OUTAGE_MS = 15_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Cellar's Redis stopped under `cellar run embedded` while a supplier writes all along. Postgres is the
 * truth and Redis a cache of it: `cellar.regional_stock` must keep following the supplier's rows while
 * Redis is down, the runtime must say Redis is stale (`cellar_redis_stale`, `/readyz` "Redis behind: …",
 * one warning in its log) without exiting, and once Redis is back both stores must equal the rows exactly.
 * The same holds when Redis is already down when the runtime starts.
 */
describe('embedded runtime while its Redis is down', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const logDir = artifactDir('embedded-redis-outage');
  let supplier: pg.Client;
  let cellarPool: pg.Pool;
  let redis: LocalRedis;
  let redisClient: Redis;
  let env: Record<string, string>;
  let httpPort: number;
  let proc: ChildProcess | undefined;
  let logFile = '';
  let runs = 0;
  /** Exits the test did not ask for. */
  const exits: string[] = [];
  let writing = false;
  let writer: Promise<void> = Promise.resolve();
  let nextId = 1000;

  const start = () => {
    logFile = join(logDir, `embedded-${++runs}.log`);
    const p = spawnCellar(['run', 'embedded'], env, logFile);
    p.on('exit', (code, signal) => {
      if (p !== proc) return;
      exits.push(`${logFile}: ${code ?? signal}`);
    });
    proc = p;
  };
  const stopRuntime = async () => {
    const p = proc;
    proc = undefined;
    if (p) await stopChild(p, 'SIGTERM', 15_000);
  };

  beforeAll(async () => {
    const s = await stockSupplier({ rows: 400, skus: 11, maxQty: 13 });
    supplier = s.client;
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    cellarPool = createPgPool(cellarUrl, { max: 2 });
    redis = await startLocalRedis();
    redisClient = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    redisClient.on('error', () => undefined);
    httpPort = await freePort();
    const dir = supplierDir({ acme: postgresSupplierYaml(s.url, { regions: region }) });
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir, CELLAR_HTTP_PORT: String(httpPort), CELLAR_LOG_LEVEL: 'info' });
    start();
  }, 120_000);

  afterAll(async () => {
    await pauseWriting().catch(() => undefined);
    await stopRuntime();
    await supplier?.end();
    await cellarPool?.end();
    redisClient?.disconnect();
    await redis?.destroy();
  });

  /** Sales, receipts, moves between depots and SKUs, inserts and deletes, every ~2 ms until paused. */
  function startWriting(): void {
    writing = true;
    writer = (async () => {
      while (writing) {
        const id = 1 + Math.floor(Math.random() * 400);
        const roll = Math.random();
        if (roll < 0.15) await supplier.query('INSERT INTO public.stock VALUES ($1, $2, $3, $4)', [nextId++, `sku-${nextId % 11}`, `d${1 + (nextId % 2)}`, nextId % 13]);
        else if (roll < 0.25) await supplier.query('DELETE FROM public.stock WHERE id = $1', [id]);
        else if (roll < 0.4) await supplier.query('UPDATE public.stock SET depot = $2, sku = $3 WHERE id = $1', [id, `d${1 + Math.floor(Math.random() * 2)}`, `sku-${Math.floor(Math.random() * 11)}`]);
        else await supplier.query('UPDATE public.stock SET qty = $2 WHERE id = $1', [id, Math.floor(Math.random() * 13)]);
        await sleep(2);
      }
    })();
  }
  async function pauseWriting(): Promise<void> {
    writing = false;
    await writer;
  }

  /** The supplier's rows summed per `region|sku`. */
  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; qty: number }>('SELECT sku, depot, qty FROM public.stock');
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  }

  /** Differences between two sets of totals (missing keys count as 0 bottles, 0 rows). */
  function diff(expected: Totals, actual: Totals): string[] {
    const out: string[] = [];
    for (const k of [...new Set([...expected.keys(), ...actual.keys()])].sort()) {
      const e = expected.get(k) ?? { bottles: 0, contributors: 0 };
      const a = actual.get(k) ?? { bottles: 0, contributors: 0 };
      if (e.bottles !== a.bottles || e.contributors !== a.contributors) out.push(`${k}: expected ${e.bottles} (${e.contributors} rows), postgres ${a.bottles} (${a.contributors} rows)`);
    }
    return out;
  }

  /** Waits until `cellar.regional_stock` alone equals `expected`; returns what still differs. */
  async function postgresConverged(expected: Totals, timeoutMs: number): Promise<string[]> {
    let left = ['not checked'];
    const deadline = Date.now() + timeoutMs;
    do {
      const rows = (await readRegionalStock(cellarPool)).filter((r) => r.region === R1 || r.region === R2);
      left = diff(expected, new Map(rows.map((r) => [`${r.region}|${r.sku}`, { bottles: r.bottles, contributors: r.contributors }])));
      if (left.length === 0) return left;
      await sleep(250);
    } while (Date.now() < deadline);
    return left;
  }

  const readyz = async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
    return { status: res.status, body: (await res.json()) as { status: string; reason?: string } };
  };
  const healthz = async () => (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).status;
  const alive = () => !!proc && proc.exitCode === null && proc.signalCode === null && exits.length === 0;
  const explain = () => `${exits.length ? `unexpected exits: ${exits.join(', ')}\n` : ''}${explainProcess(proc, logFile)}`;
  /** The runtime's JSON log lines with `msg` matching. */
  const logged = (msg: RegExp) =>
    (existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n') : [])
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as { msg?: string; level?: number; redis?: string }];
        } catch {
          return [];
        }
      })
      .filter((l) => msg.test(l.msg ?? ''));

  it('keeps Postgres current while Redis is stopped for 15 s under load, says Redis is stale, and brings Redis back exactly', async () => {
    expect(await eventually(async () => (await readyz()).status === 200, 90_000), `started and ready\n${explain()}`).toBe(true);
    expect(await storesConverged(truth, cellarPool, redisClient, [R1, R2], 60_000), `before the outage\n${explain()}`).toEqual([]);
    startWriting();
    await sleep(1_000);
    const outageStart = Date.now();
    await redis.stop();
    await sleep(6_000);
    await pauseWriting();
    const during = await truth();
    const stillDown = outageStart + OUTAGE_MS - 1_000 - Date.now();
    const pgLeft = await postgresConverged(during, stillDown);
    expect(Date.now() < outageStart + OUTAGE_MS, 'checked while Redis was still stopped').toBe(true);
    expect(pgLeft, `cellar.regional_stock did not converge to the supplier's rows within ${stillDown} ms while Redis was stopped\n${explain()}`).toEqual([]);

    const r = await readyz();
    expect(r, `/readyz while Redis is stopped\n${explain()}`).toMatchObject({ status: 503, body: { reason: expect.stringMatching(/^Redis behind: /) } });
    expect(await metricValue(httpPort, 'cellar_redis_stale'), `cellar_redis_stale while Redis is stopped\n${explain()}`).toBe(1);
    expect(await healthz(), 'live while Redis is stopped').toBe(200);
    expect(alive(), `the process is still running\n${explain()}`).toBe(true);

    startWriting();
    await sleep(Math.max(0, outageStart + OUTAGE_MS - Date.now()));
    expect(alive(), `the process ran through the outage\n${explain()}`).toBe(true);
    await redis.start();
    expect(await eventually(async () => (await readyz()).status === 200, 60_000), `ready again once Redis is back\n${explain()}`).toBe(true);
    await pauseWriting();
    expect(await storesConverged(truth, cellarPool, redisClient, [R1, R2], 60_000), `Postgres and Redis after Redis came back\n${explain()}`).toEqual([]);
    expect(await metricValue(httpPort, 'cellar_redis_stale'), `cellar_redis_stale after Redis came back\n${explain()}`).toBe(0);
    expect(alive(), `the process is still running\n${explain()}`).toBe(true);
    const warnings = logged(/^Redis unavailable/);
    expect(warnings.map((w) => ({ level: w.level, redis: w.redis })), `one warning naming Redis for the outage\n${explain()}`).toEqual([{ level: 40, redis: redis.url }]);
  }, 240_000);

  it('starts and keeps Postgres current when Redis is down at start, then brings Redis back exactly', async () => {
    await stopRuntime();
    await redis.stop();
    startWriting();
    start();
    expect(
      await eventually(async () => /^Redis behind: /.test((await readyz()).body.reason ?? ''), 60_000),
      `started with Redis down; /readyz says Redis is behind\n${explain()}`,
    ).toBe(true);
    await sleep(3_000);
    await pauseWriting();
    expect(await postgresConverged(await truth(), 20_000), `cellar.regional_stock while Redis is down since the start\n${explain()}`).toEqual([]);
    expect(await metricValue(httpPort, 'cellar_redis_stale'), `cellar_redis_stale while Redis is down\n${explain()}`).toBe(1);
    expect(alive(), `the process is still running\n${explain()}`).toBe(true);

    startWriting();
    await sleep(1_000);
    await redis.start();
    expect(await eventually(async () => (await readyz()).status === 200, 60_000), `ready once Redis is up\n${explain()}`).toBe(true);
    await pauseWriting();
    expect(await storesConverged(truth, cellarPool, redisClient, [R1, R2], 60_000), `Postgres and Redis after Redis came up\n${explain()}`).toEqual([]);
    expect(await metricValue(httpPort, 'cellar_redis_stale'), `cellar_redis_stale after Redis came up\n${explain()}`).toBe(0);
    expect(alive(), `the process is still running\n${explain()}`).toBe(true);
  }, 240_000);
});
