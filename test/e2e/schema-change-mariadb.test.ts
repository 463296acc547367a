import { readFileSync, writeFileSync } from 'node:fs';
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
import { runCellar } from '../support/cli.js';
import type { Totals } from '../support/pipeline.js';
import { addRow, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';

const mariadbUrl = services().mariadbUrl;

/**
 * Schema changes of a captured MariaDB table under `cellar run embedded` (binlog reader): a mapped column
 * retyped (int → DECIMAL(12,2)) keeps the totals exact; a mapped column renamed dead-letters every update
 * that lacks it (missing_field, naming the column) while deletes still apply, and after the supplier file
 * is fixed and the runtime restarted, `cellar dlq replay` brings the totals back to the supplier's rows.
 */
describe.skipIf(!mariadbUrl)(`schema changes of a captured MariaDB table (embedded runtime)${mariadbUrl ? '' : ' — skipped: no MariaDB server could be provisioned'}`, () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const db = rid('shop_');
  const logDir = artifactDir('schema-change-mariadb');
  let supplier: mysql.Connection;
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
    supplier = await mysql.createConnection(`${mariadbUrl}?multipleStatements=true`);
    await supplier.query(`CREATE DATABASE ${db}; CREATE TABLE ${db}.stock (id int PRIMARY KEY, sku varchar(32) NOT NULL, depot varchar(8) NOT NULL, qty int NOT NULL)`);
    // 200 rows over 7 SKUs and depots d1/d2, quantities below 10 (as the Postgres twin's stockSupplier).
    const rows = Array.from({ length: 200 }, (_, i) => i + 1).map((g) => `(${g}, 'sku-${g % 7}', 'd${1 + (g % 2)}', ${g % 10})`);
    await supplier.query(`INSERT INTO ${db}.stock VALUES ${rows.join(',')}`);
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    cellarPool = createPgPool(cellarUrl, { max: 2 });
    redis = await startLocalRedis();
    redisClient = new Redis(redis.url);
    const u = new URL(mariadbUrl!);
    dir = supplierDir({ acme: `id: acme
name: acme
source:
  kind: mariadb
  connection: { host: 127.0.0.1, port: ${u.port}, user: root }
  topicPrefix: ${rid('acme')}
  tables: [{ name: ${db}.stock }]
mapping: { sku: sku, warehouse: depot, quantity: qty, regions: { d1: ${R1}, d2: ${R2} } }
` });
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir });
    start();
  }, 60_000);

  afterAll(async () => {
    if (proc) await stopChild(proc, 'SIGTERM', 15_000);
    await supplier?.query(`DROP DATABASE IF EXISTS ${db}`).catch(() => undefined);
    await supplier?.end();
    await cellarPool?.end();
    redisClient?.disconnect();
    await redis?.destroy();
  });

  /** The supplier's rows as totals; `stale` rows count the quantity Cellar last accepted for them instead. */
  async function truth(stale: (id: number) => number = () => 0): Promise<Totals> {
    const [rows] = await supplier.query<mysql.RowDataPacket[]>(`SELECT id, sku, depot, ${qtyColumn} AS q FROM ${db}.stock`);
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[String(r.depot)]!, String(r.sku), Number(r.q) - stale(Number(r.id)));
    return out;
  }
  const converged = () => storesConverged(() => truth(), cellarPool, redisClient, [R1, R2]);
  const update = (n: number) => supplier.query(`UPDATE ${db}.stock SET ${qtyColumn} = ${qtyColumn} + 1 WHERE id % ${n} = 0`);

  it('a mapped column retyped int → DECIMAL(12,2) keeps the totals exact', async () => {
    expect(await converged(), `initial snapshot (${logDir})`).toEqual([]);
    await supplier.query(`ALTER TABLE ${db}.stock MODIFY qty DECIMAL(12,2) NOT NULL`);
    await update(3);
    await supplier.query(`INSERT INTO ${db}.stock VALUES (900, 'sku-1', 'd1', 12.00)`);
    expect(await converged(), `after the retype (${logDir})`).toEqual([]);
  }, 120_000);

  it('a renamed mapped column is dead-lettered naming it, deletes still apply; after the fix, restart and replay the totals are exact', async () => {
    await supplier.query(`ALTER TABLE ${db}.stock RENAME COLUMN qty TO cases`);
    qtyColumn = 'cases';
    const [[count]] = await supplier.query<mysql.RowDataPacket[]>(`SELECT count(*) AS n FROM ${db}.stock WHERE id % 4 = 0`);
    const changed = Number(count!.n);
    await update(4);
    await supplier.query(`DELETE FROM ${db}.stock WHERE id % 9 = 0`);
    const letters = async () => (await cellarPool.query<{ n: number }>(`SELECT count(*)::int AS n FROM cellar.dead_letters WHERE reason = 'missing_field'`)).rows[0]!.n;
    expect(await eventually(async () => (await letters()) === changed, 60_000), `${changed} updates dead-lettered (${logDir})`).toBe(true);
    const { rows } = await cellarPool.query<{ message: string }>(`SELECT message FROM cellar.dead_letters WHERE reason = 'missing_field'`);
    for (const r of rows) expect(r.message, `dead letter message (${logDir})`).toContain('quantity field "qty" is missing');
    // The deletes carried no quantity to miss: they applied, while the updated rows still count what they
    // had before their (dead-lettered) update.
    const beforeUpdates = () => truth((id) => (id % 4 === 0 ? 1 : 0));
    expect(await storesConverged(beforeUpdates, cellarPool, redisClient, [R1, R2]), `deletes applied, updates held back (${logDir})`).toEqual([]);

    await stopChild(proc!, 'SIGTERM', 15_000);
    const yaml = readFileSync(join(dir, 'acme.yaml'), 'utf8').replace('quantity: qty', 'quantity: cases');
    writeFileSync(join(dir, 'acme.yaml'), yaml);
    start();
    const replay = await runCellar(['dlq', 'replay', '--reason', 'missing_field'], { ...env, CELLAR_LOG_LEVEL: 'warn' }, logDir);
    expect(replay.out, `dlq replay (${logDir})`).toContain(`handed ${changed} back to the embedded runtime`);
    await update(5);
    expect(await converged(), `after fix, restart and replay (${logDir})`).toEqual([]);
  }, 180_000);
});
