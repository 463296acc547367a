import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { Redis } from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase } from '../../infra/local/postgres.js';
import { stopChild } from '../../infra/local/process.js';
import { freePort, tempDir } from '../../infra/local/process.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { eventDisagreements, historyDisagreements, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, rid, services, supplierDir, eventually } from '../support/services.js';
import { explainProcess } from '../support/embedded.js';
import { runCellar } from '../support/cli.js';
import { csvOf, dropFile, expectFeedReconciled, garbledFile, feedDetail, feedLetters, feedRegions, feedSupplierYaml, feedTruth, randomLines, type FeedLine } from '../support/feeds.js';

/**
 * `cellar run embedded` with a file-feed supplier: successive CSV files dropped into its folder add, change
 * and drop rows; bad lines are dead-lettered with file and line while the rest applies; a truncated file is
 * held back; kill -9 while a large file is applied, restart, and the totals are exact, each file applied once.
 */
describe('file feeds in the embedded runtime', () => {
  const R1 = rid('fw');
  const R2 = rid('fe');
  const regions = feedRegions(R1, R2);
  const supplierId = rid('feed');
  let pool: pg.Pool;
  let redis: Redis;
  let env: Record<string, string>;
  let proc: ChildProcess | undefined;
  let feedDir: string;
  let httpPort = 0;
  /** A labelled metric of the runtime's `/metrics` for this supplier. */
  const metric = async (name: string, labels = '') => {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const m = new RegExp(`^${name}\\{[^}]*supplier="${supplierId}"${labels}[^}]*\\} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const logDir = artifactDir('feed-embedded');
  let runs = 0;
  let logFile = '';
  let current: FeedLine[] = [];
  const start = () => (proc = spawnCellar(['run', 'embedded'], env, (logFile = join(logDir, `embedded-${++runs}.log`))));
  const converged = async () => {
    const diff = await storesConverged(async () => feedTruth(current, regions), pool, redis, [R1, R2]);
    return diff.length ? [...diff.slice(0, 10), explainProcess(proc, logFile)] : diff;
  };

  beforeAll(async () => {
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    pool = createPgPool(cellarUrl, { max: 2 });
    redis = new Redis(services().redisUrl);
    feedDir = tempDir('feed');
    mkdirSync(feedDir, { recursive: true });
    const dir = supplierDir({ [supplierId]: feedSupplierYaml(supplierId, feedDir, rid('fp'), regions) });
    httpPort = await freePort();
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_SUPPLIERS_DIR: dir, CELLAR_LOG_LEVEL: 'info', CELLAR_HTTP_PORT: String(httpPort) });
  });

  afterAll(async () => {
    if (proc) await stopChild(proc, 'SIGTERM', 15_000);
    await pool?.end();
    redis?.disconnect();
  });

  it('applies successive files: adds, changes and drops rows; dead-letters bad lines with file and line', async () => {
    current = randomLines(60, 20);
    // Line 62: a stray quote; 63: a missing key value; 64: the key of line 2 again.
    dropFile(feedDir, 'stock-1.csv', csvOf(current, ['"fsku-x,s1,5', ',s2,7', `${current[0]!.sku},${current[0]!.store},999`]));
    start();
    expect(await converged()).toEqual([]);
    expect(await feedLetters(pool, supplierId)).toEqual([
      { reason: 'malformed_line', position: 'stock-1.csv:62' },
      { reason: 'missing_key', position: 'stock-1.csv:63' },
      { reason: 'duplicate_key', position: 'stock-1.csv:64' },
    ]);

    // Change some, drop some, add some.
    const kept = current.slice(0, 40).map((l, i) => (i % 3 === 0 ? { ...l, bottles: l.bottles + 7 } : l));
    current = [...kept, ...randomLines(15, 20, 'gsku')];
    dropFile(feedDir, 'stock-2.csv', csvOf(current));
    expect(await converged()).toEqual([]);
    expect(await eventually(async () => /last file stock-2\.csv: 55 rows/.test((await feedDetail(pool, supplierId)) ?? ''), 10_000)).toBe(true);

    // Two rows' lines garbled, a third row dropped: the garbled rows keep their last applied values.
    const before = (await feedLetters(pool, supplierId)).length;
    const garbled = garbledFile(current);
    current = garbled.next;
    dropFile(feedDir, 'stock-2b.csv', garbled.text);
    expect(await converged()).toEqual([]);
    expect((await feedLetters(pool, supplierId)).slice(before)).toEqual(garbled.lines.map((n) => ({ reason: 'malformed_line', position: `stock-2b.csv:${n}` })));
    expect(await eventually(async () => /last file stock-2b\.csv: 52 rows, .*1 deleted.*; 2 kept as last applied/.test((await feedDetail(pool, supplierId)) ?? ''), 10_000), `status: ${await feedDetail(pool, supplierId)}`).toBe(true);
    // The operator's view: the supplier is ok, and its feed's last file says what it kept.
    const st = await runCellar(['status', '--supplier', supplierId], env, logDir);
    expect(st.out).toMatch(new RegExp(`^${supplierId}: ok\n  capture: last file stock-2b\\.csv: 52 rows, .*; 2 kept as last applied \\(their lines were refused\\)$`, 'm'));
  }, 120_000);

  it('holds back a truncated file and keeps the totals, then applies the next full one', async () => {
    dropFile(feedDir, 'stock-3.csv', csvOf(current.slice(0, 5)));
    expect(await eventually(async () => /held back/.test((await feedDetail(pool, supplierId)) ?? ''), 20_000), `status: ${await feedDetail(pool, supplierId)}`).toBe(true);
    expect(await converged()).toEqual([]); // still the last applied file
    current = current.map((l) => ({ ...l, bottles: l.bottles + 1 }));
    dropFile(feedDir, 'stock-4.csv', csvOf(current));
    expect(await converged()).toEqual([]);
    // Files by outcome since this process started (stock-1, -2 and -2b were read by the same process), and the last file's rows.
    expect(await metric('cellar_feed_files_total', ',outcome="held"')).toBe(1);
    expect(await metric('cellar_feed_files_total', ',outcome="applied"')).toBe(4);
    expect(await metric('cellar_feed_rows')).toBe(current.length);
  }, 120_000);

  it('stays exact and applies each file once when killed with SIGKILL while a large file is applied', async () => {
    const trials = Number(process.env.CELLAR_FAULT_TRIALS ?? 3);
    for (let k = 0; k < trials; k++) {
      const before = (await feedLetters(pool, supplierId)).length;
      current = randomLines(20_000, 8_000, `k${k}`);
      dropFile(feedDir, `big-${k}.csv`, csvOf(current, ['"broken,s1,1']));
      await new Promise((r) => setTimeout(r, 200 + Math.random() * 1500));
      await stopChild(proc!, 'SIGKILL');
      start();
      expect(await converged(), `after kill ${k + 1}`).toEqual([]);
      // The file's bad line is dead-lettered exactly once, whether or not the kill came before its commit.
      const letters = await feedLetters(pool, supplierId);
      expect(letters.slice(before), `after kill ${k + 1}`).toEqual([{ reason: 'malformed_line', position: `big-${k}.csv:20002` }]);
    }
    // The history of every total, across the kills: each version once, deltas adding up to the total.
    expect(await historyDisagreements(pool, [R1, R2])).toEqual([]);
    // And the stock events: exactly those the history implies, each once.
    expect(await eventDisagreements(pool, [R1, R2])).toEqual([]);
  }, 600_000);

  it('reconciliation compares the totals with the rows of the last applied file, and repairs drift', async () => {
    await expectFeedReconciled(pool, env, logDir, supplierId, current.length, converged);
  }, 120_000);
});
