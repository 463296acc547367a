import { Redis } from 'ioredis';
import type pg from 'pg';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../infra/local/postgres.js';
import { startLocalRedis, type LocalRedis } from '../infra/local/redis.js';
import type { RegionalStock } from '../schemas/records.js';
import { migrate } from '../pipelines/state/migrate.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { createPostgresStockSink } from '../sinks/postgres/sink.js';
import { redisKeys } from '../sinks/redis/config.js';
import { createRedisSnapshotSink } from '../sinks/redis/sink.js';
import type { StockSink } from '../sinks/types.js';
import { median, repeat, result, type BenchResult } from './harness.js';

const REGIONS = ['eu-west', 'us-east', 'ap-south'];
const KEYS = 200_000;
const BATCH = 5_000;
const T0 = 1_732_000_000_000;

/** Every (region, sku) key once, in a fixed shuffled order (a drain emits keys in no particular order). */
function keys(): Array<{ region: string; sku: string }> {
  const out = Array.from({ length: KEYS }, (_, i) => ({ region: REGIONS[i % REGIONS.length]!, sku: `wine-${Math.floor(i / REGIONS.length)}` }));
  let s = 12345;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The keys as batches of {@link BATCH} records at `version` (built before timing). */
function batches(all: Array<{ region: string; sku: string }>, version: number): RegionalStock[][] {
  const out: RegionalStock[][] = [];
  for (let i = 0; i < all.length; i += BATCH) {
    out.push(all.slice(i, i + BATCH).map((k, j) => ({ ...k, bottleSizeMl: 750, bottles: (i + j + version) % 500, contributors: 1 + ((i + j) % 7), version, sourceTsMs: T0 + version, updatedTsMs: T0 + version + 1 })));
  }
  return out;
}

interface Pass {
  rowsPerSec: number;
  latenciesMs: number[];
}

/** Writes the batches one after another (one writer, as a sink task does); every record must apply. */
async function pass(sink: StockSink, data: RegionalStock[][]): Promise<Pass> {
  const latenciesMs: number[] = [];
  let rows = 0;
  const t0 = process.hrtime.bigint();
  for (const b of data) {
    const s = process.hrtime.bigint();
    const r = await sink.writeBatch(b);
    latenciesMs.push(Number(process.hrtime.bigint() - s) / 1e6);
    if (r.reset) throw new Error('the sink reported a reset (store lost its data) during the benchmark');
    if (r.applied !== b.length) throw new Error(`batch ${data.indexOf(b)} at version ${b[0]?.version} applied ${r.applied} of ${b.length} records (${r.skipped} skipped)`);
    rows += b.length;
  }
  return { rowsPerSec: rows / (Number(process.hrtime.bigint() - t0) / 1e9), latenciesMs };
}

interface SinkFigures {
  runs: number[];
  inserts: number[];
  updates: number[];
  /** Batch latencies of the measured runs, one array per run. */
  latenciesMs: number[][];
}

/**
 * Each run starts from an empty store (`reset`, untimed), writes every key once (inserts), then again
 * at a higher version (updates); a run's figure is all rows written over the time of both passes.
 */
async function measure(sink: StockSink, reset: () => Promise<unknown>, all: Array<{ region: string; sku: string }>): Promise<SinkFigures> {
  const f: SinkFigures = { runs: [], inserts: [], updates: [], latenciesMs: [] };
  const first = batches(all, 1);
  const second = batches(all, 2);
  let measured = false;
  f.runs = await repeat(async () => {
    await reset();
    const a = await pass(sink, first);
    const b = await pass(sink, second);
    if (measured) {
      f.inserts.push(a.rowsPerSec);
      f.updates.push(b.rowsPerSec);
      f.latenciesMs.push([...a.latenciesMs, ...b.latenciesMs]);
    }
    measured = true; // the first call is the warm-up
    return (2 * all.length) / (all.length / a.rowsPerSec + all.length / b.rowsPerSec); // rows / total time
  }, 5, 1);
  return f;
}

const round = (n: number) => Math.round(n);

/**
 * Sink suite: Postgres upsert and Redis snapshot update throughput, against private servers started
 * here (and always stopped), 200k keys written as inserts then as updates, in batches of 5000.
 */
export async function sinkBenchmarks(): Promise<BenchResult[]> {
  let pgServer: LocalPostgres | undefined;
  let redisServer: LocalRedis | undefined;
  let pool: pg.Pool | undefined;
  let admin: Redis | undefined;
  const sinks: Array<{ close(): Promise<void> }> = [];
  try {
    pgServer = await startLocalPostgres();
    redisServer = await startLocalRedis();
    const url = await createDatabase(pgServer.url, 'bench_sinks');
    pool = createPgPool(url);
    await migrate(pool);
    const all = keys();
    const details = { rowsPerRun: 2 * all.length, keys: all.length, batch: BATCH, passes: 'insert all keys, then update all keys' };

    const postgres = createPostgresStockSink({ url });
    sinks.push(postgres);
    await postgres.connect();
    const p = pool;
    const pgFig = await measure(postgres, () => p.query('TRUNCATE cellar.regional_stock'), all);

    const redis = createRedisSnapshotSink({ url: redisServer.url });
    sinks.push(redis);
    await redis.connect();
    // A new Redis has no snapshot epoch: the first write answers `reset` (replay) and writes nothing.
    await redis.writeBatch([{ ...all[0]!, bottleSizeMl: 750, bottles: 0, contributors: 0, version: 0, sourceTsMs: T0, updatedTsMs: T0 }]);
    admin = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    const a = admin;
    // Between runs only the data keys go; the epoch marker stays, so no further resets.
    const dataKeys = REGIONS.flatMap((region) => Object.values(redisKeys('cellar', region)));
    const redisFig = await measure(redis, () => a.del(...dataKeys), all);

    const split = (f: SinkFigures) => ({ insertsPerSec: round(median(f.inserts)), updatesPerSec: round(median(f.updates)), p50BatchMs: median(f.latenciesMs.flat()) });
    const pgLatencies = pgFig.latenciesMs.flat();
    return [
      result('sink: postgres upsert', 'rows/s', pgFig.runs, { target: 50_000, details: { ...details, ...split(pgFig) } }),
      result('sink: redis update', 'updates/s', redisFig.runs, { target: 150_000, details: { ...details, ...split(redisFig) } }),
      result('sink: postgres upsert p50 batch latency', 'ms', pgFig.latenciesMs.map(median), {
        higherIsBetter: false,
        details: { batch: BATCH, batches: pgLatencies.length, p90Ms: quantile(pgLatencies, 0.9), maxMs: Math.max(...pgLatencies) },
      }),
    ];
  } finally {
    for (const s of sinks) await s.close().catch(() => undefined);
    admin?.disconnect();
    await pool?.end().catch(() => undefined);
    await redisServer?.destroy().catch(() => undefined);
    await pgServer?.destroy().catch(() => undefined);
  }
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}
