import { DemoFeedSupplier } from '../demo/feed-supplier.js';
import { createRedis } from '../core/redis.js';
import { loadProcessEnv, logLevelOr } from '../core/process-env.js';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { Redis } from 'ioredis';
import { mariadbAvailable, startLocalMariaDb, type LocalMariaDb } from '../../infra/local/mariadb.js';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../../infra/local/postgres.js';
import { onInterrupt, tempDir } from '../../infra/local/process.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { createPgPool } from '../core/pg.js';
import { migrate } from '../state/migrate.js';
import { readRegionalStock } from '../../sinks/postgres/read.js';
import { importCatalog } from '../catalog/store.js';
import { loadRuntimeConfig } from '../core/config.js';
import { fileLogger } from '../demo/log.js';
import { CellarMetrics } from '../core/metrics.js';
import { startEmbedded, type EmbeddedRuntime } from '../runtime/embedded-runtime.js';
import { demoCatalog, demoRegions, demoSuppliers, MAGNUM_ML, prng, seedRows, skuEntries, STANDARD_ML, writeSupplierFile, type DemoSupplier, type ModelRow } from '../demo/catalog.js';
import { openSupplierDb } from '../demo/supplier-db.js';
import { startGenerator, type ChangeGenerator } from '../demo/generator.js';
import { runKafkaDemo } from '../demo/kafka-demo.js';
import { checkRegions, expectedTotals, freshnessBuckets, quantile, secs, type Buckets, type RegionCheck } from '../demo/verify.js';
import { formatTable } from './format.js';
import { startApi, type RunningApi } from '../api/index.js';
import { createApiKey } from '../api/keys-store.js';

/** A progress line rewritten in place (on a terminal) that the next line must first end. */
let openLine = false;
/** The terminal gets the demo's own lines only; every log line goes to the log file it names. */
const say = (s: string) => {
  process.stdout.write(`${openLine ? '\n' : ''}${s}\n`);
  openLine = false;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const num = (n: number) => Math.round(n).toLocaleString('en-US');

/** Options of `cellar demo`. */
export interface DemoOptions {
  /** Run the Kafka-runtime demo (four worker processes, scripted Debezium events) instead. */
  kafka: boolean;
  /** Leave the pipeline running after the summary until Ctrl-C. */
  keepRunning: boolean;
  /** Row changes per second the generator makes (embedded demo). */
  rate: number;
  /** Seconds the generator runs (embedded demo). */
  durationS: number;
  /** Serve the read API and dashboard while the embedded demo runs, and print the URL. */
  api?: boolean;
}

/** `cellar demo`: the embedded-runtime demo, or with `--kafka` the Kafka-runtime one. Returns the exit code. */
export async function runDemo(opts: DemoOptions): Promise<number> {
  // `npm run cellar demo --keep-running`: npm takes the flag as its own setting and runs the demo without it.
  if (!opts.keepRunning && process.env.npm_config_keep_running) {
    say('Note: npm kept --keep-running for itself, so the demo ends after its summary; pass it on with `npm run cellar -- demo --keep-running` (or make demo ARGS=--keep-running).\n');
  }
  return opts.kafka ? runKafkaDemo({ keepRunning: opts.keepRunning }) : runEmbeddedDemo(opts);
}

/** Creates the supplier's table and inserts `rows` in multi-row statements. */
async function seed(url: string, s: DemoSupplier, rows: ModelRow[]): Promise<void> {
  const c = await openSupplierDb(s.engine, url);
  try {
    await c.query(s.ddl);
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500).map((r) => s.columns(r));
      const cols = Object.keys(chunk[0]!);
      const values = chunk.flatMap((r) => Object.values(r));
      const tuples = chunk.map((_, j) => `(${cols.map((_, k) => `$${j * cols.length + k + 1}`).join(', ')})`);
      await c.query(`INSERT INTO ${s.table} (${cols.join(', ')}) VALUES ${tuples.join(', ')}`, values);
    }
  } finally {
    await c.end();
  }
}

/** True when a region's totals match in Postgres and Redis and every row has its catalog size. */
const good = (c: RegionCheck) => c.postgres && c.redis && c.sizes;

/** Polls until every region matches `expected` in Postgres and Redis, sizes included, or `timeoutMs` passes. */
async function converge(pool: pg.Pool, redis: Redis, expected: Awaited<ReturnType<typeof expectedTotals>>, catalog: Map<string, number>, timeoutMs: number, broken: () => Error | undefined): Promise<RegionCheck[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const checks = await checkRegions(pool, redis, demoRegions(), expected, catalog);
    if (checks.every(good) || Date.now() > deadline || broken()) return checks;
    await sleep(200);
  }
}

/**
 * A code of a supplier of several bottle sizes that has stock in every size in one region, with the
 * canonical SKU and total of each size as `cellar.regional_stock` holds them: what "sizes kept apart"
 * looks like. Undefined when no code has.
 */
async function twoSizeExample(pool: pg.Pool, suppliers: DemoSupplier[]): Promise<string | undefined> {
  const totals = new Map((await readRegionalStock(pool)).map((r) => [`${r.region}|${r.sku}`, r]));
  for (const s of suppliers.filter((x) => x.sizes.length > 1)) {
    const byCode = new Map<string, Array<{ ml: number; sku: string }>>();
    for (const e of skuEntries(s)) byCode.set(e.code, [...(byCode.get(e.code) ?? []), e]);
    for (const region of [...new Set(Object.values(s.regions))].sort()) {
      for (const [code, sizes] of byCode) {
        const rows = sizes.map((e) => ({ ...e, row: totals.get(`${region}|${e.sku}`) }));
        if (rows.every((r) => r.row && r.row.bottles > 0 && r.row.bottleSizeMl === r.ml)) {
          return `${s.id} ${code} in ${region}: ${rows.map((r) => `${r.ml} ml → ${r.sku} ${num(r.row!.bottles)} bottles`).join(', ')}`;
        }
      }
    }
  }
  return undefined;
}

/**
 * The default `cellar demo`: three Postgres suppliers in a private Postgres and, when MariaDB's binaries
 * are installed, a fourth in a private MariaDB (binlog), each with its own schema, units and SKU codes,
 * captured natively by the embedded runtime in this process, and a supplier with no database that drops a
 * CSV export of its whole stock into a folder every few seconds (once cut short, which is held back); one supplier lists 750 ml bottles and
 * magnums under one code, mapped by size to two canonical SKUs, and the canonical catalog (each SKU with
 * its one bottle size) is imported into `cellar.catalog` first; a generator makes sales,
 * receipts, transfers, returns, corrections, deletes and re-inserts at `rate` changes/s for `durationS`
 * seconds with a live progress line; then every regional total in Postgres and Redis is compared, per
 * (region, SKU) with sizes kept apart, with the sums computed directly from the suppliers' rows, and each
 * total's bottle size with the catalog's. The SKUs it shows per region are counted as the dashboard counts
 * them (see RegionCheck). Log lines go to a file in the demo's temp folder, kept when the demo fails or with
 * CELLAR_KEEP_LOGS=1. With `keepRunning`, the pipeline, read API and dashboard stay up after the summary
 * until Ctrl-C. Everything started is stopped, also on Ctrl-C.
 */
async function runEmbeddedDemo(opts: DemoOptions): Promise<number> {
  const t0 = Date.now();
  const env = loadProcessEnv();
  const work = tempDir('demo');
  const logFile = join(work, 'cellar.log');
  const log = fileLogger(logFile, 'demo', logLevelOr('info'));
  let keepFiles = env.keepLogs === '1';
  let pgServer: LocalPostgres | undefined;
  let mariaServer: LocalMariaDb | undefined;
  let redisServer: LocalRedis | undefined;
  let rt: EmbeddedRuntime | undefined;
  let gen: ChangeGenerator | undefined;
  let pool: pg.Pool | undefined;
  let redis: Redis | undefined;
  let api: RunningApi | undefined;
  let apiKey = '';
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await gen?.stop().catch(() => undefined);
      await api?.stop().catch(() => undefined);
      await rt?.stop().catch(() => undefined);
      redis?.disconnect();
      await pool?.end().catch(() => undefined);
      await redisServer?.destroy().catch(() => undefined);
      await pgServer?.destroy().catch(() => undefined);
      await mariaServer?.destroy().catch(() => undefined);
      if (keepFiles) say(`Logs kept in ${logFile} (supplier files next to it); remove ${work} when done.`);
      else rmSync(work, { recursive: true, force: true });
    })());
  const unhook = onInterrupt(cleanup);
  let broken: Error | undefined;
  try {
    const withMariaDb = env.demoMariadb !== '0' && (await mariadbAvailable());
    const suppliers = demoSuppliers(withMariaDb);
    say(`Cellar demo: ${suppliers.length + 1} suppliers (one without a database: a CSV file feed), ${demoRegions().length} regions, the embedded runtime (no Kafka) in this process.`);
    say(`Logs (JSON, level ${log.level}): ${logFile}\n`);
    say('1. Provisioning private services…');
    [pgServer, redisServer, mariaServer] = await Promise.all([startLocalPostgres(), startLocalRedis(), withMariaDb ? startLocalMariaDb() : undefined]);
    say(`   Postgres :${pgServer.port} (wal_level=logical; Cellar's database and three suppliers' databases), Redis :${redisServer.port}`);
    say(mariaServer
      ? `   MariaDB :${mariaServer.port} (ROW binlog; the fourth supplier's database)`
      : '   MariaDB: binaries not found (Debian package mariadb-server), so the MariaDB supplier is left out; the three Postgres suppliers run.');
    const cellarUrl = await createDatabase(pgServer.url, 'cellar');

    say('2. Seeding the suppliers (rows that exist before Cellar starts arrive through the snapshot):');
    const suppliersDir = join(work, 'suppliers');
    mkdirSync(suppliersDir);
    const rnd = prng(7);
    const sources: Array<{ supplier: DemoSupplier; url: string; rows: ModelRow[] }> = [];
    for (const s of suppliers) {
      const url = s.engine === 'postgres' ? await createDatabase(pgServer.url, s.database) : mariaServer!.url;
      const rows = seedRows(s, rnd);
      await seed(url, s, rows);
      writeSupplierFile(s, suppliersDir, s.engine === 'postgres' ? pgServer.port : mariaServer!.port);
      sources.push({ supplier: s, url, rows });
      const sized = s.sizes.length > 1
        ? ` (${s.sizes.map((ml) => `${num(rows.filter((r) => r.ml === ml).length)} of ${ml} ml`).join(', ')}), SKU map ${s.skuMap} keyed by bottle size: one code's ${s.sizes.join(' ml and ')} ml bottles are ${s.sizes.length} canonical SKUs`
        : `, SKU map ${s.skuMap}`;
      say(`   - ${s.id}: ${s.name}; ${s.engine} ${s.table}, ${num(rows.length)} rows${sized}, ${Object.keys(s.regions).length} warehouses (${Object.keys(s.regions).join(', ')})`);
    }
    const feed = new DemoFeedSupplier(work, rnd);
    feed.writeSupplierFile(suppliersDir);
    feed.drop();
    say(`   - ${feed.id}: ${feed.name}; ${num(feed.size)} rows in ${feed.folder}/stock-0001.csv, ${Object.keys(feed.regions).length} warehouses (${Object.keys(feed.regions).join(', ')}); a new export every 3 s while changes run`);
    say(`   Registry files in ${suppliersDir}`);

    say('3. Importing the canonical catalog into cellar.catalog (each canonical SKU with its one bottle size)…');
    const catalog = demoCatalog(suppliers);
    const catalogSizes = new Map(catalog.map((e) => [e.sku, e.bottleSizeMl]));
    pool = createPgPool(cellarUrl, { max: 2, applicationName: 'cellar-demo' });
    await migrate(pool);
    const imported = await importCatalog(pool, catalog);
    if (!imported.written) throw new Error(`importing the demo catalog: ${imported.conflicts.length} conflicts with live stock`);
    const bySize = [...new Set(catalog.map((e) => e.bottleSizeMl))].sort((a, b) => a - b).map((ml) => `${num(catalog.filter((e) => e.bottleSizeMl === ml).length)} of ${ml} ml`);
    say(`   ${num(imported.inserted + imported.updated + imported.unchanged)} canonical SKUs imported: ${bySize.join(', ')}`);

    say('4. Starting the embedded runtime (snapshot, then streaming)…');
    const cfg = loadRuntimeConfig({ ...process.env, CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redisServer.url, CELLAR_SUPPLIERS_DIR: suppliersDir });
    const metrics = new CellarMetrics(false);
    const tSnap = Date.now();
    rt = await startEmbedded(cfg, log, metrics);
    void rt.failed.then((e) => (broken ??= e));
    say(`   captured: ${rt.captured.join(', ')}${rt.skipped.length ? `; skipped: ${rt.skipped.map((k) => `${k.supplier} (${k.reason})`).join(', ')}` : ''}`);
    redis = createRedis(redisServer.url, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    if (opts.api) {
      api = await startApi(cfg, log, metrics, { port: process.env.CELLAR_API_PORT ? cfg.apiPort : 0 });
      const { key } = await createApiKey(pool, { name: 'demo', role: 'admin', rateLimitPerS: 0 });
      apiKey = key;
      say(`   Read API ${api.url} (OpenAPI: ${api.url}/openapi.json), admin key for this demo: ${key}`);
      say(`   Dashboard: ${api.url}/dashboard#key=${key}`);
      if (!opts.keepRunning) say('   (it closes when the demo ends; to keep it open until Ctrl-C: make demo ARGS=--keep-running, or cellar demo --keep-running)');
    }
    const expectedNow = async () => {
      const t = await expectedTotals(sources);
      feed.addTo(t);
      return t;
    };
    const seeded = await converge(pool, redis, await expectedNow(), catalogSizes, 60_000, () => broken);
    const seededOk = seeded.every(good);
    say(`   snapshot: ${num(await metrics.value('cellar_events_in_total', { stage: 'embedded' }))} rows → ${num(seeded.reduce((a, c) => a + c.skus, 0))} regional SKU totals in ${secs((Date.now() - tSnap) / 1000)}; ${seededOk ? 'they equal the SQL sums, sizes kept apart' : 'MISMATCH with the SQL sums'}`);

    say(`5. Generating changes at ${num(opts.rate)}/s for ${opts.durationS} s (sales, receipts, transfers, returns, corrections, deletes, re-inserts):`);
    const base = { events: await metrics.value('cellar_events_in_total', { stage: 'embedded' }), fresh: await freshnessBuckets(metrics) };
    const tGen = Date.now();
    gen = await startGenerator(sources, opts.rate);
    void gen.failed.then((e) => (broken ??= e));
    let last = { t: Date.now(), changes: 0, events: base.events, fresh: base.fresh as Buckets };
    const progress = async (skipIdle = false) => {
      const now = { t: Date.now(), changes: gen!.committed(), events: await metrics.value('cellar_events_in_total', { stage: 'embedded' }), fresh: await freshnessBuckets(metrics) };
      if (skipIdle && now.events === last.events) return void (last = now);
      const dt = Math.max(0.001, (now.t - last.t) / 1000);
      const line = `   ${String(Math.round((now.t - tGen) / 1000)).padStart(3)} s  generated ${num((now.changes - last.changes) / dt).padStart(6)}/s  processed ${num((now.events - last.events) / dt).padStart(6)} events/s  freshness p50 ${secs(quantile(0.5, now.fresh, last.fresh)).padStart(6)} p99 ${secs(quantile(0.99, now.fresh, last.fresh)).padStart(6)}  dead letters ${num(await metrics.value('cellar_dead_letters_total'))}`;
      process.stdout.write(process.stdout.isTTY ? `\r${line}\x1b[K` : `${line}\n`);
      openLine = Boolean(process.stdout.isTTY);
      last = now;
    };
    // The file-feed supplier exports every 3 s; once, midway, an export cut short, which must be held back.
    let exportedAt = Date.now();
    let truncatedAt = '';
    while (Date.now() - tGen < opts.durationS * 1000 && !broken) {
      await sleep(Math.min(1000, tGen + opts.durationS * 1000 - Date.now()));
      await progress();
      if (Date.now() - exportedAt >= 3000) {
        exportedAt = Date.now();
        if (!truncatedAt && Date.now() - tGen >= (opts.durationS * 1000) / 2) truncatedAt = feed.dropTruncated();
        else {
          feed.change();
          feed.drop();
        }
      }
    }
    await gen.stop();
    feed.change();
    const lastExport = feed.drop();
    const genSeconds = (Date.now() - tGen) / 1000;
    const changes = gen.committed();

    say('6. Waiting until every regional total equals the sum over the suppliers\' rows…');
    const tStop = Date.now();
    const expected = await expectedNow();
    const checks = await converge(pool, redis, expected, catalogSizes, 60_000, () => broken);
    const sizesOk = checks.every((c) => c.sizes);
    const ok = !broken && seededOk && checks.every(good);
    const caughtUp = (Date.now() - tStop) / 1000;
    const fresh = await freshnessBuckets(metrics);
    const dead = await metrics.value('cellar_dead_letters_total');
    say('\nRegional stock (cellar.regional_stock and Redis cellar:stock:<region> vs. SQL over the suppliers\' rows).');
    say('SKUs, magnums and bottles are counted as the dashboard counts them (GET /v1/regions): the region\'s rows in');
    say('cellar.regional_stock, one per SKU ever stocked there, those now at 0 bottles included.\n');
    say(formatTable(['region', 'warehouses', 'SKUs', 'magnums', 'bottles', 'sizes', 'postgres', 'redis'], checks.map((c) => [
      c.region, [...suppliers, feed].reduce((a, s) => a + Object.values(s.regions).filter((r) => r === c.region).length, 0), c.skus, c.magnums, c.bottles,
      c.sizes ? 'yes' : `NO (${c.sizeDiff} rows)`, c.postgres ? 'yes' : `NO (${c.pgDiff} SKUs differ)`, c.redis ? 'yes' : `NO (${c.redisDiff} SKUs differ)`,
    ])));
    say('');
    say(`changes     ${num(changes)} in ${genSeconds.toFixed(1)} s = ${num(changes / genSeconds)}/s (${Object.entries(gen.byKind()).map(([k, n]) => `${k} ${num(n)}`).join(', ')})`);
    say(`events      ${num((await metrics.value('cellar_events_in_total', { stage: 'embedded' })) - base.events)} processed; caught up ${secs(caughtUp)} after the generator stopped`);
    say(`freshness   p50 ${secs(quantile(0.5, fresh, base.fresh))}, p99 ${secs(quantile(0.99, fresh, base.fresh))} (source commit → totals written, from the histogram buckets)`);
    if (mariaServer) say('            (MariaDB stamps commits in whole seconds, so its changes read up to 1 s staler than they are: the p99)');
    say(`dead letters ${num(dead)}`);
    // The supplier's status is written every few seconds: wait (briefly) until it names the last export.
    let feedStatus: string | null | undefined;
    for (let i = 0; i < 40 && !feedStatus?.includes(lastExport); i++) {
      feedStatus = (await pool.query<{ detail: string | null }>('SELECT detail FROM cellar.source_status WHERE supplier_id = $1', [feed.id])).rows[0]?.detail;
      if (!feedStatus?.includes(lastExport)) await sleep(250);
    }
    say(`file feed   ${feed.id}: ${feed.dropped.complete} exports applied, each once, only their changed rows${truncatedAt ? `; ${truncatedAt}, cut short after 12 rows, was held back (its rows not deleted)` : ''}`);
    if (feedStatus) say(`            its status: ${feedStatus}`);
    const keys = checks.reduce((a, c) => a + c.keys, 0);
    const rowsChecked = checks.reduce((a, c) => a + c.rows, 0);
    const sizeChanges = gen.bySize();
    say(`sizes       ${sizesOk ? 'checked' : 'MISMATCH'} per (region, SKU) with ${[STANDARD_ML, MAGNUM_ML].join(' and ')} ml kept apart: ${num(keys)} totals against SQL sums grouped by the canonical SKU of each (code, bottle size)`);
    const sizeWords = sizesOk
      ? `every one of ${num(rowsChecked)} cellar.regional_stock rows has its SKU's bottle_size_ml from cellar.catalog`
      : `${num(checks.reduce((a, c) => a + c.sizeDiff, 0))} of ${num(rowsChecked)} cellar.regional_stock rows (or expected totals) have another bottle_size_ml than their SKU's in cellar.catalog`;
    say(`            ${sizeWords} (${num(catalog.length)} SKUs: ${bySize.join(', ')})`);
    const example = await twoSizeExample(pool, suppliers);
    say(`            ${example ? `e.g. ${example}` : 'no code has stock in both sizes in one region'}; changes to ${[...sizeChanges].sort((a, b) => a[0] - b[0]).map(([ml, n]) => `${ml} ml rows ${num(n)}`).join(', ')}`);
    if (broken) say(`FAILED: ${broken.message}`);
    say(`\n${ok ? 'All regional totals equal the sums over the suppliers\' rows, per (region, SKU) with bottle sizes kept apart.' : `MISMATCH: the totals${sizesOk ? '' : ' or their bottle sizes'} did not converge within 60 s.`} Done in ${((Date.now() - t0) / 1000).toFixed(1)} s.`);
    if (!ok) keepFiles = true;
    if (opts.keepRunning) {
      say(`\nPipeline left running${ok ? '' : ' (to look into the mismatch)'}. Supplier databases: ${sources.map((s) => s.url).join(' ')}`);
      say(`Cellar: ${cellarUrl}  Redis: ${redisServer.url}. Change supplier rows with psql and watch; Ctrl-C stops and cleans up.`);
      if (api) say(`Dashboard (up until Ctrl-C): ${api.url}/dashboard#key=${apiKey}`);
      // Until Ctrl-C (which runs the cleanup registered above, then exits): nothing here may end it.
      for (;;) {
        await sleep(1000);
        if (cleaning) break; // Ctrl-C: no more progress lines while things stop
        // Without a terminal, a line only when something happened.
        await progress(!process.stdout.isTTY).catch((err: unknown) => log.warn({ err }, 'progress line failed'));
      }
    }
    return ok ? 0 : 1;
  } catch (err) {
    keepFiles = true;
    throw err;
  } finally {
    say('Cleaning up…');
    await cleanup();
    unhook();
  }
}
