import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { Redis } from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase } from '../../infra/local/postgres.js';
import { freePort, stopChild } from '../../infra/local/process.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { createApiKey } from '../../pipelines/api/keys-store.js';
import { migrate } from '../../pipelines/state/migrate.js';
import { storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';
import { explainProcess } from '../support/embedded.js';
import { expectFeedReconciled, feedDetail, feedRegions, feedTruth, randomLines, type FeedLine } from '../support/feeds.js';

/**
 * A supplier that pushes its rows to the API of `cellar run embedded --api`: deltas (upserts, deletes, its own
 * versions, an older version after a newer one), a snapshot that drops what it lacks, and a kill -9 while
 * requests are queued and applied; the totals equal the rows the supplier pushed.
 */
describe('HTTP push in the embedded runtime', () => {
  const R1 = rid('pw');
  const R2 = rid('pe');
  const regions = feedRegions(R1, R2);
  const supplierId = rid('pushsup');
  let pool: pg.Pool;
  let redis: Redis;
  let env: Record<string, string>;
  let proc: ChildProcess | undefined;
  let apiUrl = '';
  let key = '';
  const logDir = artifactDir('push-embedded');
  let runs = 0;
  let logFile = '';
  /** The supplier's rows as it pushed them, by sku|store. */
  const truth = new Map<string, FeedLine>();
  const start = () => (proc = spawnCellar(['run', 'embedded', '--api'], env, (logFile = join(logDir, `embedded-${++runs}.log`))));
  const converged = async () => {
    const diff = await storesConverged(async () => feedTruth([...truth.values()], regions), pool, redis, [R1, R2]);
    return diff.length ? [...diff.slice(0, 10), explainProcess(proc, logFile)] : diff;
  };
  const push = async (rows: Array<Record<string, unknown>> | string, mode = 'changes') => {
    // The API may still be starting: retried until it answers (a retried request is applied once).
    const idem = rid('idem');
    let res: Response | undefined;
    const csv = typeof rows === 'string';
    await eventually(async () => {
      res = await fetch(`${apiUrl}/v1/suppliers/${supplierId}/feed?mode=${mode}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': csv ? 'text/csv' : 'application/json', 'idempotency-key': idem }, body: csv ? rows : JSON.stringify(rows) });
      return res.status === 202;
    }, 60_000, 200);
    expect(res?.status).toBe(202);
    return (await res!.json()) as { rejected: Array<{ line: number; reason: string }> };
  };

  beforeAll(async () => {
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    pool = createPgPool(cellarUrl, { max: 2 });
    await migrate(pool);
    key = (await createApiKey(pool, { name: 'supplier', role: 'supplier', supplierId, rateLimitPerS: 0 })).key;
    redis = new Redis(services().redisUrl);
    const dir = supplierDir({ [supplierId]: `id: ${supplierId}
name: ${supplierId}
source:
  kind: http
  topicPrefix: ${rid('pp')}
  tables: [{ name: push.stock, key: [sku, store] }]
  push: { checkEveryMs: 100 }
mapping: { sku: sku, warehouse: store, quantity: bottles, unit: bottles, regions: { ${Object.entries(regions).map(([k, v]) => `${k}: ${v}`).join(', ')} } }
` });
    const port = await freePort();
    apiUrl = `http://127.0.0.1:${port}`;
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_SUPPLIERS_DIR: dir, CELLAR_LOG_LEVEL: 'info', CELLAR_API_PORT: String(port) });
  });

  afterAll(async () => {
    if (proc) await stopChild(proc, 'SIGTERM', 15_000);
    await pool?.end();
    redis?.disconnect();
  });

  it('applies deltas with their own versions (an older one never overwrites a newer one) and a snapshot', async () => {
    start();
    const lines = randomLines(200, 60, 'p');
    for (const l of lines) truth.set(`${l.sku}|${l.store}`, l);
    await push(lines.map((l) => ({ ...l, _version: 10 })));
    expect(await converged()).toEqual([]);
    // A newer version, then an older one for the same row: the newer stays.
    const a = lines[0]!;
    await push([{ ...a, bottles: 77, _version: 20 }]);
    await push([{ ...a, bottles: 1, _version: 15 }]);
    // A late delete, older than what was applied: the row stays (and a later snapshot without it must still delete it).
    await push([{ sku: a.sku, store: a.store, _op: 'delete', _version: 12 }]);
    truth.set(`${a.sku}|${a.store}`, { ...a, bottles: 77 });
    // A delete.
    const b = lines[1]!;
    await push([{ sku: b.sku, store: b.store, _op: 'delete', _version: 30 }]);
    truth.delete(`${b.sku}|${b.store}`);
    expect(await converged()).toEqual([]);
  }, 120_000);

  it('a snapshot replaces the supplier\'s rows: those it lacks are deleted', async () => {
    // The supplier versions its rows, so its snapshot does too (its deletes take the snapshot's highest version).
    const keep = [...truth.values()].slice(1, 121).map((l) => ({ ...l, bottles: l.bottles + 1 }));
    truth.clear();
    for (const l of keep) truth.set(`${l.sku}|${l.store}`, l);
    await push(keep.map((l) => ({ ...l, _version: 40 })), 'snapshot');
    expect(await converged()).toEqual([]);
    // Rows the snapshot kept take later deltas with higher versions, as before it.
    const c = keep[0]!;
    await push([{ ...c, bottles: 5, _version: 41 }]);
    truth.set(`${c.sku}|${c.store}`, { ...c, bottles: 5 });
    expect(await converged()).toEqual([]);

    // A snapshot whose lines for two rows are refused (a bad value; no _version among versioned rows) keeps
    // those rows as last applied: refused is not deleted. The row it lacks is deleted.
    const [bad, unversioned, gone, ...rest] = [...truth.values()];
    const next = rest.map((l) => ({ ...l, bottles: l.bottles + 1 }));
    const answer = await push([
      ...next.map((l) => ({ ...l, _version: 42 })),
      { ...bad!, bottles: { n: 3 }, _version: 42 },
      { ...unversioned!, bottles: 1 },
    ], 'snapshot');
    expect(answer.rejected.map((r) => [r.line, r.reason])).toEqual([[next.length + 1, 'malformed_line'], [next.length + 2, 'malformed_line']]);
    truth.delete(`${gone!.sku}|${gone!.store}`);
    for (const l of next) truth.set(`${l.sku}|${l.store}`, l);
    expect(await converged()).toEqual([]);
    expect(await eventually(async () => /request \d+: .*; 2 kept as last applied/.test((await feedDetail(pool, supplierId)) ?? ''), 10_000), `status: ${await feedDetail(pool, supplierId)}`).toBe(true);

    // The same through CSV: a line cut short keeps its row.
    const [cut, ...others] = [...truth.values()];
    const csv = ['sku,store,bottles,_version', ...others.map((l) => `${l.sku},${l.store},${l.bottles + 2},43`), `${cut!.sku},${cut!.store}`].join('\n');
    expect((await push(csv, 'snapshot')).rejected.map((r) => r.reason)).toEqual(['malformed_line']);
    for (const l of others) truth.set(`${l.sku}|${l.store}`, { ...l, bottles: l.bottles + 2 });
    expect(await converged()).toEqual([]);
  }, 120_000);

  it('stays exact when killed with SIGKILL while pushed requests are applied, and applies each once', async () => {
    const trials = Number(process.env.CELLAR_FAULT_TRIALS ?? 3);
    for (let k = 0; k < trials; k++) {
      const batch = randomLines(150, 80, `k${k}`).map((l) => ({ ...l, _version: 100 + k }));
      await push(batch);
      for (const l of batch) truth.set(`${l.sku}|${l.store}`, { sku: l.sku, store: l.store, bottles: l.bottles });
      await new Promise((r) => setTimeout(r, Math.random() * 300));
      await stopChild(proc!, 'SIGKILL');
      start();
      expect(await converged(), `after kill ${k + 1}`).toEqual([]);
    }
    expect((await pool.query('SELECT count(*)::int AS n FROM cellar.feed_inbox WHERE supplier_id = $1', [supplierId])).rows[0].n).toBe(0);
  }, 300_000);

  it('reconciliation compares the totals with the rows the applied requests left, and repairs drift', async () => {
    await expectFeedReconciled(pool, env, logDir, supplierId, truth.size, converged);
  }, 120_000);
});
