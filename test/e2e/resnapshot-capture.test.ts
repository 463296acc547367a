import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import mysql from 'mysql2/promise';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { stopChild } from '../../infra/local/process.js';
import { runCellar } from '../support/cli.js';
import { PipelineUnderTest, type Totals } from '../support/pipeline.js';
import { addRow } from '../support/stores.js';
import { artifactDir, freshDatabase, rid, services } from '../support/services.js';
import { postgresSupplierYaml, STOCK_TABLE, stockSupplier } from '../support/suppliers.js';
import { concurrentWriter } from '../support/writers.js';

/** What a `cellar run capture` + Kafka-runtime user sees of `cellar resnapshot --table`. */
async function resnapshotViaCapture(p: PipelineUnderTest, logDir: string, supplierId: string, table: string, during: () => Promise<void>): Promise<string> {
  const run = runCellar(['resnapshot', '--supplier', supplierId, '--table', table], { ...p.env, CELLAR_LOG_LEVEL: 'warn' }, logDir);
  await during();
  const out = await run;
  expect(out.code, out.out).toBe(0);
  expect(out.out).toContain(`taken by cellar run capture --supplier ${supplierId}`);
  expect(out.out).toContain(`it snapshots ${table} again now (the other tables keep streaming)`);
  expect(out.out).toContain('is published to the raw topics');
  return out.out;
}

/**
 * `cellar resnapshot --table` taken by `cellar run capture` (native reader → raw topics) feeding the Kafka
 * runtime's workers: Cellar missed a table's changes (out of the publication meanwhile); only that table
 * is published again, while the other keeps streaming under concurrent writes.
 */
describe('cellar resnapshot --table (cellar run capture + Kafka runtime)', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const prefix = rid('valley');
  const logDir = artifactDir('resnapshot-capture');
  let supplier: pg.Client;
  let writerClient: pg.Client;
  let cellar: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;
  let capture: ChildProcess | undefined;

  beforeAll(async () => {
    const s = await stockSupplier({ rows: 400, skus: 11, maxQty: 9 });
    supplier = s.client;
    await supplier.query(`CREATE TABLE public.cases ${STOCK_TABLE}`);
    await supplier.query(`INSERT INTO public.cases SELECT g, 'sku-' || (g % 7), 'd' || (1 + g % 2), g % 13 FROM generate_series(1, 300) g`);
    writerClient = new pg.Client(s.url);
    await writerClient.connect();
    cellar = await freshDatabase();
    p = new PipelineUnderTest(cellar.url, cellar.pool, { valley: postgresSupplierYaml(s.url, { id: 'valley', prefix, tables: ['public.stock', 'public.cases'], regions: region }) }, logDir);
    capture = spawnCellar(['run', 'capture', '--supplier', 'valley'], p.env, join(logDir, 'capture.log'));
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
  }, 60_000);

  afterAll(async () => {
    if (capture) await stopChild(capture, 'SIGTERM', 15_000);
    await p?.stop();
    await writerClient?.end();
    await supplier?.end();
    await cellar?.pool.end();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; qty: number }>('SELECT sku, depot, qty FROM public.stock UNION ALL SELECT sku, depot, qty FROM public.cases');
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  }

  it('publishes the named table again: rows deleted behind Cellar\'s back are corrected, the other table streams on', async () => {
    expect(await p.converged(await truth(), [R1, R2]), `capture (${logDir})`).toEqual([]);
    await supplier.query(`ALTER PUBLICATION cellar_${prefix} DROP TABLE public.stock`);
    // A walsender applies a publication change from the next transaction it decodes on: let one pass.
    await new Promise((r) => setTimeout(r, 500));
    await supplier.query('UPDATE public.stock SET qty = qty WHERE id = 2');
    await new Promise((r) => setTimeout(r, 1_000));
    await supplier.query('DELETE FROM public.stock WHERE id % 6 = 0');
    await supplier.query(`UPDATE public.stock SET qty = qty + 2, depot = CASE depot WHEN 'd1' THEN 'd2' ELSE 'd1' END WHERE id % 5 = 0`);
    await supplier.query(`INSERT INTO public.stock SELECT g, 'sku-new', 'd2', 3 FROM generate_series(1001, 1015) g`);
    expect((await p.converged(await truth(), [R1, R2], 3_000)).length - 1, 'Cellar missed those changes (the last line explains the workers)').toBeGreaterThan(10);
    let writes = 0;
    await resnapshotViaCapture(p, logDir, 'valley', 'public.stock', async () => {
      const writer = concurrentWriter(writerClient, 'public.cases', 151);
      await new Promise((r) => setTimeout(r, 1_500));
      writes = await writer.stop();
    });
    expect(writes).toBeGreaterThan(0);
    expect(await p.converged(await truth(), [R1, R2]), `after cellar resnapshot --table (${logDir})`).toEqual([]);
    await supplier.query('UPDATE public.stock SET qty = 8 WHERE id = 1');
    await supplier.query('UPDATE public.cases SET qty = 8 WHERE id = 1');
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
  }, 240_000);
});

const mariadbUrl = services().mariadbUrl;

/**
 * The same with a MariaDB supplier: changes made with the binary log off (as a restore does) never reach
 * Cellar; `cellar resnapshot --table` of that table corrects them while the capture keeps checkpointing
 * the other table's binlog position.
 */
describe.skipIf(!mariadbUrl)(`cellar resnapshot --table of a MariaDB supplier (capture)${mariadbUrl ? '' : ' — skipped: no MariaDB server could be provisioned'}`, () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { pdx: R1, nyc: R2 };
  const db = rid('rs_');
  const logDir = artifactDir('resnapshot-capture-mariadb');
  let conn: mysql.Connection;
  let cellar: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;
  let capture: ChildProcess | undefined;

  beforeAll(async () => {
    conn = await mysql.createConnection(`${mariadbUrl}?multipleStatements=true`);
    const table = '(article varchar(32), wh varchar(8), cases int NOT NULL, PRIMARY KEY (article, wh))';
    await conn.query(`CREATE DATABASE ${db}; CREATE TABLE ${db}.levels ${table}; CREATE TABLE ${db}.reserve ${table}`);
    const rows = (n: number) => Array.from({ length: n }, (_, i) => `('a-${i % 40}', '${['pdx', 'nyc'][i % 2]}', ${i % 7})`).join(',');
    await conn.query(`INSERT IGNORE INTO ${db}.levels VALUES ${rows(80)}; INSERT IGNORE INTO ${db}.reserve VALUES ${rows(60)}`);
    cellar = await freshDatabase();
    const u = new URL(mariadbUrl!);
    p = new PipelineUnderTest(cellar.url, cellar.pool, {
      cascade: `id: cascade
name: Cascade
source:
  kind: mariadb
  connection: { host: 127.0.0.1, port: ${u.port}, user: root }
  topicPrefix: ${rid('cascade')}
  tables: [{ name: ${db}.levels }, { name: ${db}.reserve }]
mapping: { sku: article, warehouse: wh, quantity: cases, regions: { pdx: ${R1}, nyc: ${R2} } }
`,
    }, logDir);
    capture = spawnCellar(['run', 'capture', '--supplier', 'cascade'], p.env, join(logDir, 'capture.log'));
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
  }, 60_000);

  afterAll(async () => {
    if (capture) await stopChild(capture, 'SIGTERM', 15_000);
    await p?.stop();
    await conn?.query(`DROP DATABASE IF EXISTS ${db}`).catch(() => undefined);
    await conn?.end();
    await cellar?.pool.end();
  });

  async function truth(): Promise<Totals> {
    const [rows] = await conn.query(`SELECT article, wh, cases FROM ${db}.levels UNION ALL SELECT article, wh, cases FROM ${db}.reserve`);
    const out: Totals = new Map();
    for (const r of rows as Array<{ article: string; wh: string; cases: number }>) addRow(out, region[r.wh]!, r.article, r.cases);
    return out;
  }

  it('publishes the named table again; the other table\'s changes keep flowing and the checkpoint goes on', async () => {
    expect(await p.converged(await truth(), [R1, R2]), `capture (${logDir})`).toEqual([]);
    await conn.query(`SET SESSION sql_log_bin = 0; DELETE FROM ${db}.levels WHERE article IN ('a-1', 'a-2', 'a-3'); UPDATE ${db}.levels SET cases = cases + 4 WHERE wh = 'nyc'; INSERT INTO ${db}.levels VALUES ('a-new', 'pdx', 5); SET SESSION sql_log_bin = 1`);
    expect((await p.converged(await truth(), [R1, R2], 3_000)).length - 1, 'Cellar missed those changes (the last line explains the workers)').toBeGreaterThan(3);
    await resnapshotViaCapture(p, logDir, 'cascade', `${db}.levels`, async () => {
      for (let i = 0; i < 60; i++) {
        await conn.query(`INSERT INTO ${db}.reserve VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE cases = VALUES(cases)`, [`a-${i % 45}`, ['pdx', 'nyc'][i % 2], i % 9]);
        if (i % 7 === 6) await conn.query(`DELETE FROM ${db}.reserve WHERE article = ?`, [`a-${(i * 3) % 45}`]);
      }
    });
    expect(await p.converged(await truth(), [R1, R2]), `after cellar resnapshot --table (${logDir})`).toEqual([]);
    await conn.query(`UPDATE ${db}.reserve SET cases = 1 WHERE article = 'a-0'`);
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
    const { rows } = await cellar.pool.query<{ position: Record<string, unknown> }>("SELECT position FROM cellar.checkpoints WHERE source_id = 'capture:cascade'");
    expect(rows[0]?.position).toMatchObject({ snapshotDone: true, position: { gtids: expect.stringMatching(/^\d+-\d+-\d+/) } });
    expect(rows[0]?.position.snapshotTables).toBeUndefined();
  }, 240_000);
});
