import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../../infra/local/postgres.js';
import { freePort } from '../../infra/local/process.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { migrate } from '../../pipelines/state/migrate.js';
import { PipelineUnderTest } from '../support/pipeline.js';
import { artifactDir, rid } from '../support/services.js';
import { TwoSupplierWorkload } from '../support/workload.js';

/**
 * Faults against real services: workers SIGKILLed at random points, Redis down for 10 s under load,
 * Postgres restarted under load, a second aggregator joining and the first leaving mid-stream. After each,
 * Postgres and Redis must equal the suppliers' rows exactly. CELLAR_FAULT_TRIALS sets the kill trials per
 * worker (3 in `make test`, 20 in `make test-faults`).
 */
const TRIALS = Number(process.env.CELLAR_FAULT_TRIALS ?? 3);
const ROLES = ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  fault: string;
  trial: number;
  ok: boolean;
  changes: number;
  convergeMs: number;
  diff?: string[];
}

describe('fault suite', () => {
  const w = new TwoSupplierWorkload();
  const outcomes: Outcome[] = [];
  const ports = new Map<string, number>();
  const logDir = artifactDir('faults');
  let pgServer: LocalPostgres;
  let redis: LocalRedis;
  let pool: pg.Pool;
  let p: PipelineUnderTest;

  const start = (role: string, name = role) => p.start(role, name, { CELLAR_HTTP_PORT: String(ports.get(name)) });
  const ready = async (name: string) => {
    try {
      return (await fetch(`http://127.0.0.1:${ports.get(name)}/readyz`)).status;
    } catch {
      return 0;
    }
  };

  /** Publishes `n` random changes in chunks, calling `during(i)` after chunk i (for faults mid-stream). */
  async function load(n: number, during?: (chunk: number, chunks: number) => Promise<void>) {
    const msgs = w.randomChanges(n);
    const chunks = Math.ceil(msgs.length / 40);
    for (let i = 0; i < chunks; i++) {
      await p.publish(msgs.slice(i * 40, (i + 1) * 40), w.rawTopics);
      await during?.(i, chunks);
    }
    return msgs.length;
  }

  async function check(fault: string, trial: number, changes: number): Promise<void> {
    const t0 = Date.now();
    const diff = await p.converged(w.truth(), w.regions, 180_000);
    outcomes.push({ fault, trial, ok: diff.length === 0, changes, convergeMs: Date.now() - t0, ...(diff.length ? { diff: [...diff.slice(0, 10), ...diff.slice(-1)] } : {}) });
  }
  /** The outcomes of one test that were not exact (each test answers for its own faults only). */
  const wrong = (faults: (f: string) => boolean) => outcomes.filter((o) => !o.ok && faults(o.fault));

  beforeAll(async () => {
    [pgServer, redis] = await Promise.all([startLocalPostgres(), startLocalRedis()]);
    const url = await createDatabase(pgServer.url, rid('faults_'));
    pool = createPgPool(url, { max: 2 });
    await migrate(pool);
    for (const name of [...ROLES, 'aggregator-2']) ports.set(name, await freePort());
    p = new PipelineUnderTest(url, pool, w.suppliers(), logDir, { CELLAR_REDIS_URL: redis.url, CELLAR_LOG_LEVEL: 'info' });
    for (const role of ROLES) start(role);
    await check('warm-up', 0, await load(200));
  }, 240_000);

  afterAll(async () => {
    await p?.stop();
    await pool?.end().catch(() => undefined);
    await redis?.destroy();
    await pgServer?.destroy();
    const rows = outcomes.map((o) => `${o.fault.padEnd(28)} ${String(o.trial).padStart(3)}  ${o.ok ? 'exact' : 'WRONG'}  ${String(o.changes).padStart(5)} changes  converged in ${o.convergeMs} ms`);
    const summary = `fault trials: ${outcomes.length}, exact: ${outcomes.filter((o) => o.ok).length}, wrong: ${outcomes.filter((o) => !o.ok).length}\n${rows.join('\n')}`;
    console.log(summary);
    writeFileSync(join(logDir, 'summary.json'), JSON.stringify({ trialsPerWorker: TRIALS, outcomes }, null, 2));
  });

  it(`SIGKILL of each worker at random points, ${TRIALS} trials per worker`, async () => {
    for (let trial = 1; trial <= TRIALS; trial++) {
      for (const role of ROLES) {
        const n = await load(200 + Math.floor(Math.random() * 200), async (i, chunks) => {
          if (i === Math.floor(chunks / 2)) {
            await sleep(Math.random() * 400);
            await p.kill(role, 'SIGKILL');
            await sleep(Math.random() * 1000);
            start(role);
          }
        });
        await check(`kill -9 ${role}`, trial, n);
      }
    }
    expect(wrong((f) => f.startsWith('kill -9') || f === 'warm-up')).toEqual([]);
  }, TRIALS * 4 * 120_000);

  it('Redis down for 10 s under load: sink-redis reports unready, then catches up with nothing lost', async () => {
    let sawUnready = false;
    const n = await load(300, async (i) => {
      if (i !== 2) return;
      await redis.stop();
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        await p.publish(w.randomChanges(20), w.rawTopics);
        if ((await ready('sink-redis')) === 503) sawUnready = true;
        await sleep(250);
      }
      await redis.start();
    });
    await check('redis down 10 s', 1, n);
    expect(sawUnready).toBe(true);
    expect(await ready('sink-redis')).toBe(200);
    expect(wrong((f) => f === 'redis down 10 s')).toEqual([]);
  }, 300_000);

  it('Redis restarted empty while no change flows: sink-redis finds it empty and replays, with no new change', async () => {
    await check('before redis emptied', 1, 0);
    await redis.stop();
    await redis.start(); // keeps nothing on disk: it comes back empty
    const t0 = Date.now();
    const diff = await p.converged(w.truth(), w.regions, 60_000);
    outcomes.push({ fault: 'redis emptied, idle', trial: 1, ok: diff.length === 0, changes: 0, convergeMs: Date.now() - t0, ...(diff.length ? { diff: diff.slice(0, 10) } : {}) });
    expect(diff, `Redis was not filled again without a change (sink-redis log: ${logDir})`).toEqual([]);
    expect(p.logOf('sink-redis')).toMatch(/the store lost its data while no change flowed; replaying from the earliest offsets/);
  }, 120_000);

  it('Postgres restarted under load', async () => {
    const n = await load(300, async (i) => {
      if (i !== 2) return;
      await pgServer.stop();
      await p.publish(w.randomChanges(100), w.rawTopics);
      await sleep(3_000);
      await pgServer.start();
    });
    await check('postgres restart', 1, n);
    expect(wrong((f) => f === 'postgres restart')).toEqual([]);
  }, 300_000);

  it('a second aggregator joins and the first leaves mid-stream (two rebalances)', async () => {
    const n = await load(400, async (i, chunks) => {
      if (i === 2) start('aggregator', 'aggregator-2');
      if (i === Math.floor(chunks * 0.7)) await p.kill('aggregator', 'SIGTERM');
    });
    await check('aggregator rebalance', 1, n);
    start('aggregator');
    await p.kill('aggregator-2', 'SIGTERM');
    expect(wrong((f) => f === 'aggregator rebalance')).toEqual([]);
  }, 300_000);
});
