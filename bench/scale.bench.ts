import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createDatabase, startLocalPostgres } from '../infra/local/postgres.js';
import { tempDir } from '../infra/local/process.js';
import { startLocalRedis } from '../infra/local/redis.js';
import { loadRuntimeConfig } from '../pipelines/core/config.js';
import { createLogger } from '../pipelines/core/logger.js';
import { CellarMetrics } from '../pipelines/core/metrics.js';
import { startEmbedded } from '../pipelines/runtime/embedded-runtime.js';
import { result, type BenchResult } from './harness.js';
import { pollUntil, supplierYaml } from './workload.js';

/** Contributor counts measured by `make bench` (the `scale` suite); `make bench-scale` adds 10M. */
const SIZES = (process.env.CELLAR_BENCH_SCALE_SIZES ?? '100000,1000000').split(',').map(Number);
/** Depots: each SKU is stocked in every one; two of them per region (workload's REGIONS). */
const DEPOTS = 6;
/**
 * Contributors per (region, SKU) total (`CELLAR_BENCH_SCALE_CONTRIBUTORS_PER_KEY`, even, default 2: one row per
 * depot). More puts several rows of one SKU in each depot, as a distributor whose totals gather many
 * suppliers' rows has: a change to a key not held then costs whatever loading that key costs.
 */
const PER_KEY = Number(process.env.CELLAR_BENCH_SCALE_CONTRIBUTORS_PER_KEY ?? 2);
/** Supplier rows per SKU. */
const ROWS_PER_SKU = DEPOTS * Math.max(1, Math.round(PER_KEY / 2));
/** Changes per sustained run, spread over the whole table (most touch keys not in memory at 10M). */
const CHANGES = 60_000;
/**
 * `shared_buffers` of Cellar's database server (`CELLAR_BENCH_SCALE_SHARED_BUFFERS`, default 256MB like every
 * private server): at 10M contributors its tables and indexes are several GB, so this separates how Postgres
 * is sized from how Cellar scales.
 */
const CELLAR_SHARED_BUFFERS = process.env.CELLAR_BENCH_SCALE_SHARED_BUFFERS ?? '256MB';

const rssMiB = () => Math.round(process.memoryUsage().rss / 2 ** 20);

/**
 * Cost as work grows: the embedded runtime over a supplier of N rows (N contributors), for each N in
 * SIZES, on private Postgres servers (the supplier's, and Cellar's own) and Redis, with memory bounded by CELLAR_STATE_CACHE_CONTRIBUTORS (its
 * default). Per N: the initial snapshot's rate, sustained changes/s on rows spread over the whole table,
 * resident memory after each, and restart time (stop, start, until a change made while stopped is
 * counted). Throughput at the largest N is reported as a ratio to the smallest (target ≥ 0.7).
 */
export async function scaleBenchmarks(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const sustained = new Map<number, number>();
  for (const n of SIZES) {
    // The supplier and Cellar's database on servers of their own, as deployed: a walsender decodes all of
    // its server's WAL, so on one server the supplier's would also decode every write of Cellar's.
    const [server, cellarServer, redis] = await Promise.all([startLocalPostgres(), startLocalPostgres({ sharedBuffers: CELLAR_SHARED_BUFFERS }), startLocalRedis()]);
    const supplier = new pg.Client(await createDatabase(server.url, 'scale_supplier'));
    let stop: (() => Promise<void>) | undefined;
    try {
      const cellarUrl = await createDatabase(cellarServer.url, 'scale_cellar');
      await supplier.connect();
      await supplier.query('CREATE TABLE public.stock (id int PRIMARY KEY, item_code text NOT NULL, depot text NOT NULL, qty int NOT NULL, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())');
      await supplier.query(`INSERT INTO public.stock (id, item_code, depot, qty) SELECT g, 'wine-' || (g / ${ROWS_PER_SKU}), 'd' || (g % ${DEPOTS}), 100 FROM generate_series(0, ${n - 1}) g`);
      const dir = tempDir('bench-scale');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'scale.yaml'), supplierYaml('scale', new URL(server.url).port, 'scale_supplier'));
      const cfg = loadRuntimeConfig({ ...process.env, CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir });
      // Seconds each group-commit phase took, summed (see cellar_group_commit_phase_seconds): where a size's time goes.
      const phaseSeconds = new Map<string, number>();
      const start = async () => {
        const metrics = new CellarMetrics(false);
        const observePhase = metrics.groupPhase.observe.bind(metrics.groupPhase);
        metrics.groupPhase.observe = ((labels: { phase: string }, v: number) => {
          phaseSeconds.set(labels.phase, (phaseSeconds.get(labels.phase) ?? 0) + v);
          return observePhase(labels, v);
        }) as typeof metrics.groupPhase.observe;
        const rt = await startEmbedded(cfg, createLogger('bench-scale', 'warn'), metrics);
        stop = () => rt.stop();
        return {
          rt, processed: () => metrics.value('cellar_events_in_total', { stage: 'embedded' }),
          keysLoaded: async () => ({ readAhead: await metrics.value('cellar_state_keys_loaded_total', { from: 'read_ahead' }), group: await metrics.value('cellar_state_keys_loaded_total', { from: 'group' }) }),
        };
      };
      let t0 = Date.now();
      let { processed, keysLoaded } = await start();
      await pollUntil(`snapshot of ${n} rows`, async () => (await processed()) >= n, 3_600_000);
      const snapshotPerS = n / ((Date.now() - t0) / 1000);
      const rssAfterSnapshot = rssMiB();

      const runs: number[] = [];
      phaseSeconds.clear();
      const keysBefore = await keysLoaded();
      const cpu0 = process.cpuUsage();
      for (let run = 0; run < 3; run++) {
        const before = await processed();
        t0 = Date.now();
        // 120 transactions of 500 rows at ids spread over the table: each touches keys far apart.
        for (let i = 0; i < CHANGES / 500; i++) {
          const from = Math.floor(((i * 7919 + run * 104_729) % Math.max(1, n / 500)) * 500);
          if (PER_KEY === 2) {
            await supplier.query('UPDATE public.stock SET qty = qty + 1, updated_at = clock_timestamp() WHERE id >= $1 AND id < $2', [from, from + 500]);
          } else {
            // 500 consecutive rows of a wide table are a few keys: 500 rows scattered over it instead (x → x·p
            // mod n, p a prime not dividing n, maps distinct x to distinct ids).
            const ids = Array.from({ length: 500 }, (_, k) => ((run * CHANGES + i * 500 + k) * 2_654_435_761) % n);
            await supplier.query('UPDATE public.stock SET qty = qty + 1, updated_at = clock_timestamp() WHERE id = ANY($1::int[])', [ids]);
          }
        }
        await pollUntil('sustained run', async () => (await processed()) >= before + CHANGES);
        runs.push(CHANGES / ((Date.now() - t0) / 1000));
      }
      const rssAfterRuns = rssMiB();
      // CPU of this process (the runtime, and the bench's writer) per change of the sustained runs, µs.
      const cpu = process.cpuUsage(cpu0);
      const processCpuUsPerChange = Math.round((cpu.user + cpu.system) / (3 * CHANGES));
      // Aggregate keys the sustained runs' groups needed and did not hold: taken read ahead, or read by the group.
      const keysAfter = await keysLoaded();
      const keysLoadedInRuns = { readAhead: keysAfter.readAhead - keysBefore.readAhead, group: keysAfter.group - keysBefore.group };
      // Per change of the sustained runs, µs: prepare (normalize, aggregate, reading what is not in memory),
      // queued (behind the previous commit), postgres (the commit), redis, wait (before a group is taken).
      const phaseUsPerChange = Object.fromEntries([...phaseSeconds].map(([k, sec]) => [k, Math.round((sec * 1e6) / (3 * CHANGES))]));
      sustained.set(n, runs.sort((a, b) => a - b)[1]!);

      await stop!();
      stop = undefined;
      await supplier.query('UPDATE public.stock SET qty = qty + 1 WHERE id = 0');
      t0 = Date.now();
      ({ processed } = await start());
      await pollUntil('a change made while stopped', async () => (await processed()) >= 1);
      const restartMs = Date.now() - t0;

      const label = `scale ${n.toLocaleString('en-US')} contributors${PER_KEY === 2 ? '' : ` (${(ROWS_PER_SKU / DEPOTS) * 2} a key)`}`;
      out.push(result(`${label}: sustained changes/s`, 'changes/s', runs, { details: { snapshotRowsPerS: Math.round(snapshotPerS), stateCacheContributors: cfg.stateCacheContributors, cellarSharedBuffers: CELLAR_SHARED_BUFFERS, phaseUsPerChange, processCpuUsPerChange, keysLoadedInRuns } }));
      out.push(result(`${label}: resident memory`, 'MiB', [rssAfterRuns], { target: 1024, higherIsBetter: false, details: { afterSnapshotMiB: rssAfterSnapshot, note: 'this process: the runtime and the bench writer' } }));
      out.push(result(`${label}: restart until a change is counted`, 'ms', [restartMs], { higherIsBetter: false }));
    } finally {
      await stop?.().catch(() => undefined);
      await supplier.end().catch(() => undefined);
      await redis.destroy();
      await server.destroy();
      await cellarServer.destroy();
    }
  }
  const small = sustained.get(Math.min(...SIZES));
  const large = sustained.get(Math.max(...SIZES));
  if (small && large && SIZES.length > 1) {
    out.push(result(`scale: throughput at ${Math.max(...SIZES).toLocaleString('en-US')} ÷ at ${Math.min(...SIZES).toLocaleString('en-US')} contributors`, '×', [large / small], { target: 0.7 }));
  }
  return out;
}
