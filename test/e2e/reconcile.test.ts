import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { createDatabase } from '../../infra/local/postgres.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { loadRegistry } from '../../connectors/registry/loader.js';
import { loadRuntimeConfig, type RuntimeConfig } from '../../pipelines/core/config.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { startEmbedded, type EmbeddedRuntime } from '../../pipelines/runtime/embedded-runtime.js';
import { Reconciler, startScheduler } from '../../pipelines/reconcile/runner.js';
import { expectation } from '../../pipelines/reconcile/reconcile.js';
import { openSupplierSnapshot } from '../../pipelines/reconcile/source-snapshot.js';
import { decodeDebeziumJson } from '../../pipelines/normalize/debezium.js';
import { compileMapping } from '../../pipelines/normalize/mapping.js';
import { contributorIdOf } from '../../pipelines/normalize/normalize.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import type { Totals } from '../support/pipeline.js';
import { addRow, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';
import { runCellar } from '../support/cli.js';

const log = createLogger('reconcile-test', 'warn');

/**
 * Reconciliation against the embedded runtime and a real supplier Postgres: each kind of drift injected
 * (a change dropped past the checkpoint, a change made while capture was paused, a Postgres total and Redis
 * fields changed behind Cellar's back) is found exactly, repaired through the pipeline, and gone on the
 * next run; repeated runs under a steady change load report no drift.
 */
describe('reconciliation (Postgres supplier, embedded runtime)', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { w1: R1, w2: R1, w3: R2 };
  const prefix = rid('recon');
  const slot = `cellar_${prefix.toLowerCase()}`;
  let supplier: pg.Client;
  let supplierUrl: string;
  let pool: pg.Pool;
  let redisServer: LocalRedis;
  let redis: Redis;
  let cfg: RuntimeConfig;
  let env: Record<string, string>;
  let rt: EmbeddedRuntime | undefined;
  let reconciler: Reconciler;
  const metrics = new CellarMetrics(false);
  const logDir = artifactDir('reconcile');

  const cid = (id: number) => `acme/public.stock/id=${id}`;
  const startRuntime = async () => {
    rt = await startEmbedded(cfg, log, metrics);
    // Redis is rebuilt from Postgres in the background after a start: wait until it is current (as /readyz does),
    // so what the test writes into Redis next is not swapped away by that rebuild.
    const current = await eventually(async () => rt!.redisBehind() === undefined, 60_000);
    expect(current, `Redis still behind after start: ${rt.redisBehind()}`).toBe(true);
  };

  beforeAll(async () => {
    supplierUrl = await createDatabase(services().pgUrl, rid('supplier_'));
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    supplier = new pg.Client(supplierUrl);
    await supplier.connect();
    await supplier.query('CREATE TABLE public.stock (id int PRIMARY KEY, sku text NOT NULL, wh text NOT NULL, qty int NOT NULL)');
    await supplier.query(`INSERT INTO public.stock SELECT g, 'sku-' || g, 'w' || (1 + g % 3), g % 50 FROM generate_series(1, 400) g`);
    pool = createPgPool(cellarUrl, { max: 3 });
    redisServer = await startLocalRedis();
    redis = new Redis(redisServer.url);
    const u = new URL(supplierUrl);
    const dir = supplierDir({ acme: `id: acme
name: Acme
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: ${u.pathname.slice(1)}, user: postgres }
  topicPrefix: ${prefix}
  tables: [{ name: public.stock }]
mapping:
  sku: sku
  warehouse: wh
  quantity: qty
  unit: bottles
  regions: { w1: ${R1}, w2: ${R1}, w3: ${R2} }
reconcile: { schedule: '* * * * * *', repair: false, settleMs: 300 }
` });
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redisServer.url, CELLAR_SUPPLIERS_DIR: dir, CELLAR_LOG_LEVEL: 'warn' });
    cfg = loadRuntimeConfig({ ...process.env, ...env });
    await startRuntime();
    reconciler = new Reconciler(cfg, log, metrics);
    await reconciler.prepare();
    expect(await converged()).toEqual([]);
  }, 120_000);

  afterAll(async () => {
    await rt?.stop();
    await reconciler?.close();
    await supplier?.end();
    await pool?.end();
    redis?.disconnect();
    await redisServer?.destroy();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; wh: string; qty: number }>('SELECT sku, wh, qty FROM public.stock');
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.wh]!, r.sku, r.qty);
    return out;
  }
  const converged = () => storesConverged(truth, pool, redis, [R1, R2], 60_000);

  /** `cellar reconcile` as a process: exit code and output. */
  const cli = (args: string[]) => runCellar(['reconcile', '--supplier', 'acme', '--settle', '300', ...args], env, logDir);

  it('sees each source row as the normalizer sees its snapshot message', async () => {
    const [s] = loadRegistry(cfg.suppliersDir);
    const snap = await openSupplierSnapshot(s!, log);
    const mapping = compileMapping(s!);
    let n = 0;
    await snap.scan((rows) => {
      for (const r of rows) {
        const m = snap.message(r, 'r');
        const change = decodeDebeziumJson(m.key === null ? null : Buffer.from(m.key), Buffer.from(m.value))!;
        const p = mapping.place(change.after!);
        expect(expectation(s!, mapping, snap, r)).toEqual({ cid: contributorIdOf('acme', change), placed: { region: p.region, sku: p.sku, bottles: p.bottles, bottleSizeMl: p.bottleSizeMl } });
        n++;
      }
    }, 128);
    expect(n).toBe(400);
  }, 60_000);

  it('finds nothing on a pipeline that is in step with its source', async () => {
    const [r] = await reconciler.run({ supplierId: 'acme', settleMs: 300 });
    expect(r).toMatchObject({ supplierId: 'acme', rowsCompared: 400, drift: [], outcome: 'clean', unsettled: 0 });
    const { rows } = await pool.query('SELECT outcome, rows_compared, drifted_keys FROM cellar.reconciliation_runs WHERE id = $1', [r!.runId]);
    expect(rows[0]).toEqual({ outcome: 'clean', rows_compared: '400', drifted_keys: 0 });
    expect(await metrics.value('cellar_reconciliation_drift_keys', { supplier: 'acme' })).toBe(0);
  }, 60_000);

  it('finds exactly the injected drift, repairs it through the pipeline, and finds nothing next time', async () => {
    // Changes dropped past the checkpoint: the runtime is stopped, the slot advanced beyond them.
    await rt!.stop();
    await supplier.query(`UPDATE public.stock SET qty = 999 WHERE id = 1`); // a lost update
    await supplier.query(`DELETE FROM public.stock WHERE id = 2`); // a lost delete
    await supplier.query(`INSERT INTO public.stock VALUES (1000, 'sku-new', 'w2', 42)`); // a lost insert
    await supplier.query(`SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())`, [slot]);
    await startRuntime();
    // A change made while capture was paused (the table left the publication for a moment).
    await supplier.query(`ALTER PUBLICATION ${slot} DROP TABLE public.stock`);
    await supplier.query(`UPDATE public.stock SET wh = 'w3' WHERE id = 4`); // w2 (R1) → w3 (R2): a lost move
    await supplier.query(`ALTER PUBLICATION ${slot} ADD TABLE public.stock`);
    // Cellar's own stores changed behind its back.
    const key = async (id: number) => (await supplier.query<{ sku: string; wh: string }>('SELECT sku, wh FROM public.stock WHERE id = $1', [id])).rows[0]!;
    const k5 = await key(5);
    const k6 = await key(6);
    const k7 = await key(7);
    await pool.query('UPDATE cellar.regional_stock SET bottles = bottles + 7 WHERE region = $1 AND sku = $2', [region[k5.wh], k5.sku]);
    await redis.hdel(`cellar:stock:${region[k6.wh]}`, k6.sku);
    await redis.hset(`cellar:stock:${region[k7.wh]}`, k7.sku, '12345');
    // A change that does flow meanwhile is not drift.
    await supplier.query(`UPDATE public.stock SET qty = qty + 1 WHERE id = 8`);

    const found = await cli([]);
    expect(found.code, found.out).toBe(1);
    expect(found.out).toContain('DRIFT');
    const [run] = (await pool.query<{ id: string }>("SELECT id FROM cellar.reconciliation_runs WHERE outcome = 'drift' ORDER BY id DESC LIMIT 1")).rows;
    const { rows: drift } = await pool.query<{ kind: string; region: string; sku: string; contributor_id: string | null; expected: unknown; actual: unknown; repaired: boolean }>(
      'SELECT kind, region, sku, contributor_id, expected, actual, repaired FROM cellar.reconciliation_drift WHERE run_id = $1', [run!.id]);
    const summary = drift.map((d) => (d.kind === 'contribution' ? `contribution ${d.contributor_id}` : `${d.kind} ${d.region}/${d.sku}`)).sort();
    expect(summary).toEqual([
      `contribution ${cid(1)}`, `contribution ${cid(1000)}`, `contribution ${cid(2)}`, `contribution ${cid(4)}`,
      `redis ${region[k6.wh]}/${k6.sku}`, `redis ${region[k7.wh]}/${k7.sku}`, `regional_total ${region[k5.wh]}/${k5.sku}`,
    ].sort());
    const byId = new Map(drift.map((d) => [d.contributor_id ?? `${d.kind} ${d.sku}`, d]));
    expect(byId.get(cid(1))).toMatchObject({ expected: { bottles: 999 }, actual: { bottles: 1 } });
    expect(byId.get(cid(2))).toMatchObject({ expected: null, actual: { bottles: 2 } });
    expect(byId.get(cid(1000))).toMatchObject({ expected: { region: R1, sku: 'sku-new', bottles: 42 }, actual: null });
    expect(byId.get(cid(4))).toMatchObject({ expected: { region: R2 }, actual: { region: R1 } });
    expect(drift.every((d) => !d.repaired)).toBe(true);

    const repaired = await cli(['--repair']);
    expect(repaired.code, repaired.out).toBe(0);
    expect(repaired.out).toContain('drift found and repaired');
    expect(await converged()).toEqual([]);
    const again = await cli([]);
    expect(again.code, again.out).toBe(0);
    expect(again.out).toMatch(/0 drifted.*— clean/);
    // Later changes to repaired rows still apply: the corrections' versions sort below them.
    await supplier.query(`UPDATE public.stock SET qty = 5 WHERE id IN (1, 4, 1000)`);
    expect(await converged()).toEqual([]);
  }, 180_000);

  it('finds what per-supplier walks cannot see (a row counted twice, an orphan total and Redis field, a wrong total over deleted rows), repairs it and verifies', async () => {
    // A key whose every contributor is deleted.
    await supplier.query('DELETE FROM public.stock WHERE id = 30');
    expect(await converged()).toEqual([]);
    await rt!.stop();
    const key = async (id: number) => (await supplier.query<{ sku: string; wh: string }>('SELECT sku, wh FROM public.stock WHERE id = $1', [id])).rows[0]!;
    const k21 = await key(21);
    // Row 20 also counted under row 21's key (its total and Redis field agree with the contributions).
    await pool.query(`INSERT INTO cellar.stock_contributions (region, sku, contributor_id, supplier_id, warehouse_id, bottles, source_version, source_ts, deleted, key_version, partition, bottle_size_ml)
      SELECT $1, $2, contributor_id, supplier_id, warehouse_id, 5, source_version, source_ts, false, key_version, partition, bottle_size_ml FROM cellar.stock_contributions WHERE contributor_id = $3 AND NOT deleted`, [region[k21.wh], k21.sku, cid(20)]);
    await pool.query('UPDATE cellar.regional_stock SET bottles = bottles + 5 WHERE region = $1 AND sku = $2', [region[k21.wh], k21.sku]);
    await redis.hincrby(`cellar:stock:${region[k21.wh]}`, k21.sku, 5);
    // Totals at keys nobody contributes to, and a wrong total over deleted rows only.
    await pool.query(`INSERT INTO cellar.regional_stock (region, sku, bottles, contributors, version, source_ts, updated_at) VALUES ($1, 'ghost', 77, 1, 900, now(), now())`, [R1]);
    await pool.query(`UPDATE cellar.regional_stock SET bottles = -1 WHERE sku = 'sku-30'`);
    await startRuntime();
    await redis.hset(`cellar:stock:${R2}`, 'ghost-2', '5');
    await redis.hset(`cellar:stock:${R1}`, 'ghost', '77');

    const all = (args: string[]) => runCellar(['reconcile', '--settle', '300', ...args], env, logDir);
    const found = await all([]);
    expect(found.code, found.out).toBe(1);
    const runs = await pool.query<{ id: string; supplier_id: string }>("SELECT id, supplier_id FROM cellar.reconciliation_runs WHERE outcome = 'drift' ORDER BY id DESC LIMIT 2");
    const { rows: drift } = await pool.query<{ kind: string; region: string; sku: string; contributor_id: string | null; likely_cause: string }>(
      'SELECT kind, region, sku, contributor_id, likely_cause FROM cellar.reconciliation_drift WHERE run_id = ANY($1)', [runs.rows.map((r) => r.id)]);
    const summary = drift.map((d) => (d.kind === 'contribution' ? `contribution ${d.contributor_id}` : `${d.kind} ${d.region}/${d.sku}`)).sort();
    expect(summary, found.out).toEqual([`contribution ${cid(20)}`, `orphan ${R1}/ghost`, `orphan ${R2}/ghost-2`, `regional_total ${R1}/sku-30`].sort());
    expect(drift.find((d) => d.kind === 'contribution')!.likely_cause).toContain('counted under 2 keys');
    expect(found.out).toContain('keys without any contributor');

    const repaired = await all(['--repair']);
    expect(repaired.code, repaired.out).toBe(0);
    expect(repaired.out).toContain('drift found and repaired');
    expect(await converged()).toEqual([]);
    expect((await pool.query("SELECT 1 FROM cellar.regional_stock WHERE sku IN ('ghost', 'ghost-2')")).rowCount).toBe(0);
    expect(await redis.hget(`cellar:stock:${R1}`, 'ghost')).toBeNull();
    const again = await all([]);
    expect(again.code, again.out).toBe(0);
    // A real row may take the orphan's key afterwards: its total is not refused by the orphan's old version.
    await supplier.query(`INSERT INTO public.stock VALUES (2000, 'ghost', 'w1', 3)`);
    await supplier.query('UPDATE public.stock SET qty = qty + 2 WHERE id IN (20, 21)');
    expect(await converged()).toEqual([]);
  }, 180_000);

  it('with --via signal, asks Debezium for an incremental snapshot of exactly the drifted rows through the signal table', async () => {
    await supplier.query('CREATE TABLE public.debezium_signal (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(8192))');
    const victims = [10, 11];
    await pool.query('UPDATE cellar.stock_contributions SET bottles = bottles + 1 WHERE contributor_id = ANY($1) AND NOT deleted', [victims.map(cid)]);
    const r = await cli(['--repair', '--via', 'signal', '--verify-timeout', '1000']);
    // Nothing here reads the signal, so no correction is seen applied: the run says so and stays drift.
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain('2 drifted, 0 repaired (2 corrections sent but not seen applied');
    const { rows } = await supplier.query<{ type: string; data: string }>('SELECT type, data FROM public.debezium_signal');
    expect(rows).toHaveLength(1);
    expect(rows[0]!.type).toBe('execute-snapshot');
    expect(JSON.parse(rows[0]!.data)).toEqual({
      'data-collections': ['public.stock'],
      type: 'incremental',
      'additional-conditions': [{ 'data-collection': 'public.stock', filter: `("id" = '10') OR ("id" = '11')` }],
    });
    // No Debezium reads this signal here: correct the rows through the embedded runtime's queue instead.
    expect((await cli(['--repair'])).code).toBe(0);
    expect(await eventually(async () => (await cli([])).code === 0, 30_000, 500)).toBe(true);
    expect(await converged()).toEqual([]);
  }, 120_000);

  it('reports no drift when run again and again under a steady change load', async () => {
    let stop = false;
    let writes = 0;
    const writer = (async () => {
      const w = new pg.Client(supplierUrl);
      await w.connect();
      for (let i = 0; !stop; i++) {
        const id = 1 + ((i * 37) % 400);
        if (i % 9 === 0) await w.query('DELETE FROM public.stock WHERE id = $1', [id]);
        else await w.query('INSERT INTO public.stock VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty, wh = excluded.wh', [id, `sku-${id}`, `w${1 + (i % 3)}`, i % 60]);
        writes++;
        await new Promise((r) => setTimeout(r, 1));
      }
      await w.end();
    })();
    const rechecked: string[] = [];
    try {
      for (let n = 0; n < 3; n++) {
        const [r] = await reconciler.run({ supplierId: 'acme', settleMs: 500, onProgress: (p) => void (p.phase.startsWith('re-checking') && rechecked.push(p.phase)) });
        expect(r!.drift, JSON.stringify(r!.drift.slice(0, 3))).toEqual([]);
        expect(r!.outcome).toBe('clean');
      }
    } finally {
      stop = true;
      await writer;
    }
    expect(writes).toBeGreaterThan(100);
    // Changes in flight did differ at first sight; the re-checks told them from drift.
    expect(rechecked.length, 'no difference was ever in flight: the load did not test anything').toBeGreaterThan(0);
    expect(await converged()).toEqual([]);
  }, 120_000);

  it('runs on the schedule the supplier file gives (cellar run scheduler)', async () => {
    const before = Number((await pool.query("SELECT count(*) FROM cellar.reconciliation_runs WHERE trigger = 'scheduler'")).rows[0].count);
    const scheduler = startScheduler(reconciler, loadRegistry(cfg.suppliersDir), log);
    expect(scheduler.jobs).toBe(1);
    const ran = await eventually(async () => Number((await pool.query("SELECT count(*) FROM cellar.reconciliation_runs WHERE trigger = 'scheduler' AND outcome = 'clean'")).rows[0].count) > before, 20_000);
    await scheduler.stop();
    expect(ran).toBe(true);
  }, 60_000);
});
