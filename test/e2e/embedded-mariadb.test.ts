import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import type pg from 'pg';
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
import { runCellar } from '../support/cli.js';

const mariadbUrl = services().mariadbUrl;

/** `cellar run embedded` with a MariaDB supplier: binlog snapshot and stream, SIGKILL, resume from the checkpoint. */
describe.skipIf(!mariadbUrl)(`embedded runtime end to end (MariaDB supplier)${mariadbUrl ? '' : ' — skipped: no MariaDB server could be provisioned'}`, () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { pdx: R1, sea: R1, nyc: R2 };
  const db = rid('shop_');
  let conn: mysql.Connection;
  let pool: pg.Pool;
  let redis: LocalRedis;
  let redisClient: Redis;
  let env: Record<string, string>;
  let proc: ChildProcess | undefined;
  const logDir = artifactDir('embedded-mariadb');
  let runs = 0;
  const start = () => (proc = spawnCellar(['run', 'embedded'], env, join(logDir, `embedded-${++runs}.log`)));

  beforeAll(async () => {
    conn = await mysql.createConnection(`${mariadbUrl}?multipleStatements=true`);
    await conn.query(`CREATE DATABASE ${db}; CREATE TABLE ${db}.levels (article varchar(32), wh varchar(8), liters decimal(10,3) NOT NULL, PRIMARY KEY (article, wh))`);
    for (let i = 0; i < 60; i++) await conn.query(`INSERT INTO ${db}.levels VALUES (?, ?, ?)`, [`a-${i % 12}`, ['pdx', 'sea', 'nyc'][i % 3], (i % 10) * 0.75]).catch(() => undefined);
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    pool = createPgPool(cellarUrl, { max: 2 });
    redis = await startLocalRedis();
    redisClient = new Redis(redis.url);
    const u = new URL(mariadbUrl!);
    const dir = supplierDir({ cascade: `id: cascade
name: Cascade
source:
  kind: mariadb
  connection: { host: 127.0.0.1, port: ${u.port}, user: root }
  topicPrefix: ${rid('cascade')}
  tables: [{ name: ${db}.levels }]
mapping:
  sku: article
  warehouse: wh
  quantity: liters
  unit: liters
  regions: { pdx: ${R1}, sea: ${R1}, nyc: ${R2} }
` });
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir, CELLAR_LOG_LEVEL: 'info' });
  }, 60_000);

  afterAll(async () => {
    if (proc) await stopChild(proc, 'SIGTERM', 15_000);
    await conn?.end();
    await pool?.end();
    redisClient?.disconnect();
    await redis?.destroy();
  });

  async function truth(): Promise<Totals> {
    const [rows] = await conn.query(`SELECT article, wh, liters FROM ${db}.levels`);
    const out: Totals = new Map();
    for (const r of rows as Array<{ article: string; wh: string; liters: string }>) addRow(out, region[r.wh]!, r.article, Math.round(Number(r.liters) * 1000) / 750);
    return out;
  }

  const converged = () => storesConverged(truth, pool, redisClient, [R1, R2]);

  async function randomWrites(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const a = `a-${Math.floor(Math.random() * 14)}`;
      const wh = ['pdx', 'sea', 'nyc'][Math.floor(Math.random() * 3)]!;
      const liters = Math.floor(Math.random() * 12) * 0.75;
      const roll = Math.random();
      if (roll < 0.15) await conn.query(`DELETE FROM ${db}.levels WHERE article = ? AND wh = ?`, [a, wh]);
      else if (roll < 0.25) await conn.query(`UPDATE ${db}.levels SET wh = ? WHERE article = ? AND wh = ?`, [['pdx', 'sea', 'nyc'][Math.floor(Math.random() * 3)], a, wh]).catch(() => undefined);
      else await conn.query(`INSERT INTO ${db}.levels VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE liters = VALUES(liters)`, [a, wh, liters]);
    }
  }

  it('snapshots, streams and stays exact across a SIGKILL', async () => {
    start();
    await randomWrites(50);
    expect(await converged()).toEqual([]);
    const writer = randomWrites(200);
    await new Promise((r) => setTimeout(r, 200 + Math.random() * 500));
    await stopChild(proc!, 'SIGKILL');
    start();
    await writer;
    await randomWrites(30);
    expect(await converged()).toEqual([]);
  }, 180_000);

  it('reconciliation reads the MariaDB rows, finds a contribution changed behind Cellar\'s back and repairs it', async () => {
    const reconcile = (args: string[]) => runCellar(['reconcile', '--supplier', 'cascade', '--settle', '500', ...args], env, logDir);
    const clean = await reconcile([]);
    expect(clean.code, clean.out).toBe(0);
    const [rows] = await conn.query(`SELECT count(*) AS n FROM ${db}.levels`);
    expect(clean.out).toContain(`${(rows as Array<{ n: number }>)[0]!.n} source rows compared`);
    const { rows: [victim] } = await pool.query<{ contributor_id: string }>("SELECT contributor_id FROM cellar.stock_contributions WHERE supplier_id = 'cascade' AND NOT deleted ORDER BY contributor_id LIMIT 1");
    await pool.query('UPDATE cellar.stock_contributions SET bottles = bottles + 4 WHERE contributor_id = $1 AND NOT deleted', [victim!.contributor_id]);
    const found = await reconcile(['--repair']);
    expect(found.code, found.out).toBe(0);
    expect(found.out).toContain(victim!.contributor_id);
    expect(found.out).toContain('drift found and repaired');
    expect(await converged()).toEqual([]);
    expect((await reconcile([])).code).toBe(0);
  }, 120_000);
});
