import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import mysql from 'mysql2/promise';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase } from '../../infra/local/postgres.js';
import { stopChild } from '../../infra/local/process.js';
import { PipelineUnderTest, type Totals } from '../support/pipeline.js';
import { addRow } from '../support/stores.js';
import { artifactDir, freshDatabase, rid, services } from '../support/services.js';
import { runCellar } from '../support/cli.js';

/** `cellar run capture` (native pgoutput reader → Kafka raw topics) feeding the four Kafka-runtime workers. */
describe('native capture into the Kafka runtime', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  let supplier: pg.Client;
  let cellar: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;
  let capture: ChildProcess | undefined;
  const logDir = artifactDir('capture');
  const prefix = rid('valley');

  beforeAll(async () => {
    const supplierUrl = await createDatabase(services().pgUrl, rid('supplier_'));
    supplier = new pg.Client(supplierUrl);
    await supplier.connect();
    await supplier.query('CREATE TABLE public.inventory (sku text, store text, bottles int NOT NULL, PRIMARY KEY (sku, store))');
    await supplier.query(`INSERT INTO public.inventory SELECT 'w-' || (g % 9), 's' || (g % 4), g FROM generate_series(1, 120) g ON CONFLICT DO NOTHING`);
    cellar = await freshDatabase();
    const u = new URL(supplierUrl);
    p = new PipelineUnderTest(cellar.url, cellar.pool, {
      valley: `id: valley
name: Valley
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: ${u.pathname.slice(1)}, user: postgres }
  topicPrefix: ${prefix}
  tables: [{ name: public.inventory }]
mapping:
  sku: sku
  warehouse: store
  quantity: bottles
  regions: { s0: ${R1}, s1: ${R1}, s2: ${R2}, s3: ${R2}, s4: ${R2} }
`,
    }, logDir);
    capture = spawnCellar(['run', 'capture', '--supplier', 'valley'], p.env, join(logDir, 'capture.log'));
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
  }, 60_000);

  afterAll(async () => {
    if (capture) await stopChild(capture, 'SIGTERM', 15_000);
    await p?.stop();
    await supplier?.end();
    await cellar?.pool.end();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; store: string; bottles: number }>('SELECT sku, store, bottles FROM public.inventory');
    const region: Record<string, string> = { s0: R1, s1: R1, s2: R2, s3: R2, s4: R2 };
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.store]!, r.sku, r.bottles);
    return out;
  }

  it('snapshot and changes of a real Postgres supplier reach Postgres and Redis exactly', async () => {
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
    await supplier.query(`UPDATE public.inventory SET bottles = bottles + 5 WHERE store = 's1'`);
    await supplier.query(`UPDATE public.inventory SET store = 's4' WHERE sku = 'w-1' AND store = 's0'`); // region move
    await supplier.query(`UPDATE public.inventory SET sku = 'w-renamed' WHERE sku = 'w-3' AND store = 's2'`); // SKU move
    await supplier.query(`DELETE FROM public.inventory WHERE sku = 'w-2'`);
    await supplier.query(`INSERT INTO public.inventory VALUES ('w-new', 's2', 77)`);
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
  }, 150_000);

  it('refuses a second capture of the same supplier, naming the one running', async () => {
    const second = spawnCellar(['run', 'capture', '--supplier', 'valley'], p.env, join(logDir, 'capture-second.log'));
    let out = '';
    second.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    second.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    // 'close', not 'exit': the process' last lines may still be in its pipes when it exits.
    const code = await new Promise<number | null>((r) => second.once('close', r));
    expect(code, out).toBe(1);
    expect(out).toContain('lease_held');
    expect(out).toContain(`capture:valley lease is held by`);
    expect(out).toContain(`pid ${capture!.pid}`);
    await supplier.query(`UPDATE public.inventory SET bottles = bottles + 1 WHERE store = 's3'`);
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
  }, 120_000);

  it('reconciliation finds changes lost before Kafka and repairs them through the raw topic', async () => {
    await stopChild(capture!, 'SIGTERM', 15_000);
    await supplier.query(`UPDATE public.inventory SET bottles = 500 WHERE sku = 'w-4' AND store = 's1'`);
    await supplier.query(`DELETE FROM public.inventory WHERE sku = 'w-5' AND store = 's3'`);
    await supplier.query('SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())', [`cellar_${prefix.toLowerCase()}`]);
    capture = spawnCellar(['run', 'capture', '--supplier', 'valley'], p.env, join(logDir, 'capture-2.log'));
    const reconcile = (args: string[]) => runCellar(['reconcile', '--supplier', 'valley', '--settle', '1000', ...args], p.env, logDir);
    const found = await reconcile([]);
    expect(found.code, found.out).toBe(1);
    expect(found.out).toContain('valley/public.inventory/sku=w-4,store=s1');
    expect(found.out).toContain('valley/public.inventory/sku=w-5,store=s3');
    expect(found.out).toMatch(/2 drifted/);
    const repaired = await reconcile(['--repair']);
    expect(repaired.code, repaired.out).toBe(0);
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
    const clean = await reconcile([]);
    expect(clean.code, clean.out).toBe(0);
  }, 180_000);

  it('reconciliation finds and repairs what per-supplier walks cannot see, through the observations topic', async () => {
    await p.kill('aggregator', 'SIGTERM');
    // Row (w-4, s1) also counted under (w-6, s2)'s key, in the partition that owns that key.
    const at = (await cellar.pool.query<{ region: string; partition: number }>("SELECT region, partition FROM cellar.stock_contributions WHERE contributor_id = 'valley/public.inventory/sku=w-6,store=s2'")).rows[0]!;
    await cellar.pool.query(`INSERT INTO cellar.stock_contributions (region, sku, contributor_id, supplier_id, warehouse_id, bottles, source_version, source_ts, deleted, key_version, partition, bottle_size_ml)
      SELECT $1, 'w-6', contributor_id, supplier_id, warehouse_id, 9, source_version, source_ts, false, key_version, $2, bottle_size_ml FROM cellar.stock_contributions
       WHERE contributor_id = 'valley/public.inventory/sku=w-4,store=s1' AND NOT deleted`, [at.region, at.partition]);
    // w-2 was deleted everywhere: its totals are wrong now, over deleted rows only. And a total nobody feeds.
    await cellar.pool.query("UPDATE cellar.regional_stock SET bottles = -1 WHERE sku = 'w-2'");
    await cellar.pool.query("INSERT INTO cellar.regional_stock (region, sku, bottles, contributors, version, source_ts, updated_at) VALUES ($1, 'ghost', 3, 1, 9, now(), now())", [R1]);
    p.start('aggregator', 'aggregator-2');
    const reconcile = (args: string[]) => runCellar(['reconcile', '--settle', '1000', ...args], p.env, logDir);
    const found = await reconcile([]);
    expect(found.code, found.out).toBe(1);
    expect(found.out).toContain('counted under 2 keys');
    expect(found.out).toMatch(/regional_total\s+\S+\/w-2/);
    expect(found.out).toMatch(new RegExp(`orphan\\s+${R1}/ghost`));
    const repaired = await reconcile(['--repair']);
    expect(repaired.code, repaired.out).toBe(0);
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
    const clean = await reconcile([]);
    expect(clean.code, clean.out).toBe(0);
  }, 180_000);
});

const mariadbUrl = services().mariadbUrl;

/**
 * `cellar run capture` of a MariaDB supplier (binlog reader → Kafka raw topics) feeding the Kafka runtime;
 * SIGKILL of the capture mid-stream, then a restart from the checkpointed binlog position (GTIDs).
 */
describe.skipIf(!mariadbUrl)(`native capture of a MariaDB supplier into the Kafka runtime${mariadbUrl ? '' : ' — skipped: no MariaDB server could be provisioned'}`, () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { pdx: R1, sea: R1, nyc: R2 };
  const db = rid('cap_');
  let conn: mysql.Connection;
  let cellar: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;
  let capture: ChildProcess | undefined;
  const logDir = artifactDir('capture-mariadb');
  let runs = 0;
  const startCapture = () => (capture = spawnCellar(['run', 'capture', '--supplier', 'cascade'], p.env, join(logDir, `capture-${++runs}.log`)));

  beforeAll(async () => {
    conn = await mysql.createConnection(`${mariadbUrl}?multipleStatements=true`);
    await conn.query(`CREATE DATABASE ${db}; CREATE TABLE ${db}.levels (article varchar(32), wh varchar(8), cases int NOT NULL, PRIMARY KEY (article, wh))`);
    await conn.query(`INSERT IGNORE INTO ${db}.levels VALUES ${Array.from({ length: 90 }, (_, i) => `('a-${i % 30}', '${['pdx', 'sea', 'nyc'][i % 3]}', ${i % 7})`).join(',')}`);
    cellar = await freshDatabase();
    const u = new URL(mariadbUrl!);
    p = new PipelineUnderTest(cellar.url, cellar.pool, {
      cascade: `id: cascade
name: Cascade
source:
  kind: mariadb
  connection: { host: 127.0.0.1, port: ${u.port}, user: root }
  topicPrefix: ${rid('cascade')}
  tables: [{ name: ${db}.levels }]
mapping:
  sku: article
  warehouse: wh
  quantity: cases
  unit: case6
  regions: { pdx: ${R1}, sea: ${R1}, nyc: ${R2} }
`,
    }, logDir);
    startCapture();
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
  }, 60_000);

  afterAll(async () => {
    if (capture) await stopChild(capture, 'SIGTERM', 15_000);
    await p?.stop();
    await conn?.end();
    await cellar?.pool.end();
  });

  async function truth(): Promise<Totals> {
    const [rows] = await conn.query(`SELECT article, wh, cases FROM ${db}.levels`);
    const out: Totals = new Map();
    for (const r of rows as Array<{ article: string; wh: string; cases: number }>) addRow(out, region[r.wh]!, r.article, r.cases * 6);
    return out;
  }

  it('snapshot, changes, a SIGKILL mid-stream and a restart: Postgres and Redis equal the supplier rows', async () => {
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
    await conn.query(`UPDATE ${db}.levels SET cases = cases + 2 WHERE wh = 'sea'`);
    await conn.query(`UPDATE ${db}.levels SET wh = 'nyc' WHERE article = 'a-1' AND wh = 'pdx'`); // region move
    await conn.query(`DELETE FROM ${db}.levels WHERE article = 'a-2'`);
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const a = `a-${i % 40}`;
        const wh = ['pdx', 'sea', 'nyc'][i % 3]!;
        if (i % 5 === 4) await conn.query(`DELETE FROM ${db}.levels WHERE article = ? AND wh = ?`, [a, wh]);
        else await conn.query(`INSERT INTO ${db}.levels VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE cases = VALUES(cases)`, [a, wh, i % 11]);
        // At most ~1,000 changes/s: unthrottled, the raw topic outgrew the test broker's ~5 MB per partition
        // while the normalizer rejoined its group, and the broker dropped changes not yet consumed.
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    await new Promise((r) => setTimeout(r, 1_500));
    await stopChild(capture!, 'SIGKILL', 5_000);
    await new Promise((r) => setTimeout(r, 500));
    startCapture();
    await new Promise((r) => setTimeout(r, 1_500));
    stop = true;
    await writer;
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
    const { rows } = await cellar.pool.query<{ position: { position: { gtids?: string }; snapshotDone: boolean } }>("SELECT position FROM cellar.checkpoints WHERE source_id = 'capture:cascade'");
    expect(rows[0]?.position).toMatchObject({ snapshotDone: true, position: { gtids: expect.stringMatching(/^\d+-\d+-\d+/) } });
  }, 180_000);
});
