import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import pg from 'pg';
import { NATIVE_SOURCES } from '../connectors/native-source.js';
import { createDatabase, startLocalPostgres } from '../infra/local/postgres.js';
import { tempDir } from '../infra/local/process.js';
import { startLocalRedis } from '../infra/local/redis.js';
import { loadRuntimeConfig } from '../pipelines/core/config.js';
import { createLogger } from '../pipelines/core/logger.js';
import { CellarMetrics } from '../pipelines/core/metrics.js';
import { startEmbedded } from '../pipelines/runtime/embedded-runtime.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { setThreshold } from '../pipelines/events/thresholds.js';
import { migrate } from '../pipelines/state/migrate.js';
import { median, result, type BenchResult } from './harness.js';
import { startPeer, type TotalsCheck } from './peer.js';
import { startRawRead } from './raw-read.js';
import {
  createSupplierTable, FIXED_RATE_SECONDS, FIXED_RATE_TX_ROWS, FIXED_RATE_WINDOWS, freshnessWindow, interleave, noSustained, percentile, pollUntil, ROWS,
  SUSTAINED_CHANGES, SUSTAINED_RUNS, SUSTAINED_TX_ROWS, sustainedRun, supplierYaml, type Contestant, type Follower, type Freshness, type Sustained,
} from './workload.js';

/** The fixed rates (changes/s) at which freshness is measured. */
const RATES = [5_000, 20_000] as const;
/** Runs of the raw read's backlog measurement. */
const BACKLOG_RUNS = 3;

/**
 * End to end on the embedded runtime, in this process, against a private Postgres and Redis, side by side
 * with two baselines on the same machine, data and writer (bench/workload.ts): the peer (native logical
 * replication into a second database with a totals trigger, bench/peer.ts) and the limit (Cellar's
 * pgoutput reader alone, bench/raw-read.ts). Each contestant's supplier has its own private Postgres server
 * (identical settings), so no walsender decodes another contestant's WAL, and Cellar's database (the peer's
 * subscriber) is on a server of its own, as deployed: a walsender decodes all of its server's WAL, so a
 * supplier on Cellar's server would pay for decoding Cellar's writes (history included). All are set up first, then
 * measured one at a time, interleaved (see {@link interleave}). Reports sustained changes/s (supplier commit
 * → visible downstream), freshness p50/p99 at 5k and 20k changes/s, and the ratios Cellar/peer and
 * Cellar/raw read.
 */
export async function embeddedBenchmarks(): Promise<BenchResult[]> {
  // Servers: each supplier's own, and Cellar's database (the peer's subscriber) on another, as deployed.
  const servers = await Promise.all([0, 1, 2, 3, 4, 5, 6].map(() => startLocalPostgres()));
  const redis = await startLocalRedis();
  const stops: Array<() => Promise<void>> = [];
  try {
    const cellar = await startCellar(servers[0]!.url, servers[4]!.url, redis.url);
    stops.push(cellar.stop);
    const peer = await startPeer(servers[1]!.url, servers[5]!.url);
    stops.push(peer.stop);
    const raw = await startRawRead(servers[2]!.url);
    stops.push(raw.stop);
    // The cost of the stock history: the same runtime writing none (CELLAR_HISTORY_RETENTION_DAYS=0), its own Redis database.
    const bare = await startCellar(servers[3]!.url, servers[6]!.url, redis.url.replace(/\/0$/, '/1'), { history: false });
    stops.push(bare.stop);
    const all = [cellar, peer, raw, bare];

    await interleave(all, 1, (c) => sustainedRun(c, noSustained())); // warm-up
    const sustained = new Map(all.map((c) => [c.name, noSustained()]));
    await interleave(all, SUSTAINED_RUNS, (c) => sustainedRun(c, sustained.get(c.name)!));
    const backlog: number[] = [];
    for (let i = 0; i < BACKLOG_RUNS; i++) backlog.push(await raw.backlogRun());

    for (const c of all) await c.beforeFreshness?.();
    const fresh = new Map<string, Freshness[]>([[cellar.name, []], [peer.name, []]]);
    for (const rate of RATES) await interleave([cellar, peer], FIXED_RATE_WINDOWS, async (c) => void fresh.get(c.name)!.push(await freshnessWindow(c, rate)));

    const check = await peer.check();
    if (check.mismatches) throw new Error(`the peer's totals differ from the supplier's GROUP BY: ${JSON.stringify(check.examples)}`);
    const figs: Figures = {
      cellar: { sustained: sustained.get(cellar.name)!, freshness: fresh.get(cellar.name)! },
      peer: { sustained: sustained.get(peer.name)!, freshness: fresh.get(peer.name)!, initialSyncS: peer.initialSyncS, check },
      raw: { sustained: sustained.get(raw.name)!, backlog, snapshotS: raw.snapshotS },
    };
    return [...cellarResults(figs.cellar), ...peerResults(figs.peer), ...rawResults(figs.raw), ...ratioResults(figs), historyCostResult(sustained.get(cellar.name)!, sustained.get(bare.name)!)];
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await redis.destroy();
    await Promise.all(servers.map((s) => s.destroy()));
  }
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** Rounds of the history-cost suite: more than the embedded suite's, since its two contestants' runs are short. */
const HISTORY_COST_RUNS = 11;

/**
 * The cost of the stock history and events: per round, the ratio of the two contestants' throughputs (run
 * back to back, so a slower minute of the shared machine slows both), and the median of those ratios.
 */
function historyCostResult(withHistory: Sustained, without: Sustained): BenchResult {
  const ratios = withHistory.changesPerS.map((w, i) => round2(w / without.changesPerS[i]!));
  return result('history and events cost: sustained throughput with the stock history and events / without', '×', ratios, {
    target: 0.85,
    details: {
      withHistory: median(withHistory.changesPerS), without: median(without.changesPerS), ratioOfMedians: round2(median(withHistory.changesPerS) / median(without.changesPerS)),
      meaning: 'median of the per-round ratios (both contestants run back to back each round); 1 = history and events cost nothing; the target allows 15 %',
    },
  });
}

/**
 * `node dist/bench/run.js history-cost`: only the embedded runtime with and without the stock history and
 * events (CELLAR_HISTORY_RETENTION_DAYS=0), each on its own private Postgres, interleaved: the figure of
 * the embedded suite, measured alone in a few minutes.
 */
export async function historyCostBenchmarks(): Promise<BenchResult[]> {
  const servers = await Promise.all([0, 1, 2, 3].map(() => startLocalPostgres()));
  const redis = await startLocalRedis();
  const stops: Array<() => Promise<void>> = [];
  try {
    const cellar = await startCellar(servers[0]!.url, servers[1]!.url, redis.url);
    stops.push(cellar.stop);
    const bare = await startCellar(servers[2]!.url, servers[3]!.url, redis.url.replace(/\/0$/, '/1'), { history: false });
    stops.push(bare.stop);
    const sustained = new Map([cellar, bare].map((c) => [c.name, noSustained()]));
    await interleave([cellar, bare], 1, (c) => sustainedRun(c, noSustained())); // warm-up
    await interleave([cellar, bare], HISTORY_COST_RUNS, (c) => sustainedRun(c, sustained.get(c.name)!));
    return [
      result('embedded sustained, with history and events', 'changes/s', sustained.get(cellar.name)!.changesPerS, { details: sustainedDetails(sustained.get(cellar.name)!) }),
      result('embedded sustained, without history and events', 'changes/s', sustained.get(bare.name)!.changesPerS, { details: sustainedDetails(sustained.get(bare.name)!) }),
      historyCostResult(sustained.get(cellar.name)!, sustained.get(bare.name)!),
    ];
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await redis.destroy();
    await Promise.all(servers.map((s) => s.destroy()));
  }
}

/** What each contestant measured. */
interface Figures {
  cellar: { sustained: Sustained; freshness: Freshness[] };
  peer: { sustained: Sustained; freshness: Freshness[]; initialSyncS: number; check: TotalsCheck };
  raw: { sustained: Sustained; backlog: number[]; snapshotS: number };
}

/**
 * Cellar's embedded runtime on `bench_supplier`. Caught up: `cellar_events_in_total{stage="embedded"}`
 * (changes committed to Cellar's Postgres, then written to Redis) has grown by the changes written.
 * Freshness, measured as the peer's is: 1 change in 10 (`id % 10 = 0`), from the supplier row's
 * `updated_at` to the end of the group commit that made it visible (Cellar's Postgres committed, Redis
 * written), seen through {@link freshnessTap}. The runtime's own `cellar_freshness_seconds` (one sample per
 * (region, SKU) total per group, from the newest contributing commit timestamp) goes in each window's details.
 */
async function startCellar(adminUrl: string, cellarAdminUrl: string, redisUrl: string, o: { history?: boolean } = {}): Promise<Contestant & { stop(): Promise<void> }> {
  const supplier = new pg.Client(await createDatabase(adminUrl, 'bench_supplier'));
  let stopRuntime: (() => Promise<void>) | undefined;
  const metrics = new CellarMetrics(false);
  // Each contestant's own supplier id: the tap wraps the shared reader table and must see only its runtime's reads.
  const supplierId = o.history === false ? 'benchbare' : 'bench';
  const tap = freshnessTap(metrics, supplierId);
  const stop = async () => {
    // Its walsender would otherwise keep a connection to a server about to stop.
    await stopRuntime?.().catch(() => undefined);
    tap.remove();
    await supplier.end().catch(() => undefined);
  };
  try {
    const cellarUrl = await createDatabase(cellarAdminUrl, 'bench_cellar');
    await supplier.connect();
    await createSupplierTable(supplier);
    const dir = tempDir('bench-suppliers');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${supplierId}.yaml`), supplierYaml(supplierId, new URL(adminUrl).port, 'bench_supplier'));
    const cfg = loadRuntimeConfig({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redisUrl, CELLAR_SUPPLIERS_DIR: dir, CELLAR_HISTORY_RETENTION_DAYS: o.history === false ? '0' : '30' });
    if (o.history !== false) {
      // A low-stock rule for every SKU, so that events are derived as in production (thresholds looked up).
      const setup = createPgPool(cellarUrl, { max: 1 });
      await migrate(setup);
      await setThreshold(setup, { region: '*', skuPattern: '*', threshold: 20 });
      await setup.end();
    }
    const runtimeSamples: number[] = [];
    const observe = metrics.freshness.observe.bind(metrics.freshness);
    metrics.freshness.observe = ((labels: never, v: number) => {
      runtimeSamples.push(v * 1000);
      return observe(labels, v);
    }) as typeof metrics.freshness.observe;
    // Where a window's freshness goes: each group commit's phases (see cellar_group_commit_phase_seconds).
    const phases = new Map<string, number[]>();
    const observePhase = metrics.groupPhase.observe.bind(metrics.groupPhase);
    metrics.groupPhase.observe = ((labels: { phase: string }, v: number) => {
      let xs = phases.get(labels.phase);
      if (!xs) phases.set(labels.phase, (xs = []));
      xs.push(v * 1000);
      return observePhase(labels, v);
    }) as typeof metrics.groupPhase.observe;
    const groupSizes: number[] = [];
    const observeSize = metrics.groupChanges.observe.bind(metrics.groupChanges);
    metrics.groupChanges.observe = ((v: number) => {
      groupSizes.push(v);
      return observeSize(v);
    }) as typeof metrics.groupChanges.observe;
    const rt = await startEmbedded(cfg, createLogger('bench-embedded', 'warn'), metrics);
    stopRuntime = () => rt.stop();
    const processed = () => metrics.value('cellar_events_in_total', { stage: 'embedded' });
    await pollUntil('the snapshot', async () => (await processed()) >= ROWS);
    let start = 0;
    const follower: Follower = {
      mark: async () => void (start = await processed()),
      caughtUp: (w) => pollUntil(`Cellar to process ${w.changes} changes`, async () => (await processed()) - start >= w.changes),
      resetSamples: async () => {
        runtimeSamples.length = 0;
        tap.samples.length = 0;
        phases.clear();
        groupSizes.length = 0;
      },
      samples: async () => [...tap.samples],
      windowDetails: () => ({
        runtimeMetric: { p50: percentile(runtimeSamples, 50), p99: percentile(runtimeSamples, 99), samples: runtimeSamples.length },
        groups: groupSizes.length,
        groupChanges: { p50: percentile(groupSizes, 50), p99: percentile(groupSizes, 99) },
        groupPhaseMs: Object.fromEntries([...phases].map(([k, xs]) => [k, { p50: round2(percentile(xs, 50)), p99: round2(percentile(xs, 99)), mean: round2(xs.reduce((a, b) => a + b, 0) / xs.length) }])),
      }),
    };
    return { name: o.history === false ? 'embedded-no-history' : 'embedded', writer: supplier, follower, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Per-change freshness of the embedded runtime, observed from outside it: the Postgres reader is wrapped
 * (through {@link NATIVE_SOURCES}, for `supplierId` only, restored by `remove`) to note, in read order, the `updated_at` of each
 * sampled change (`id % 10 = 0`), and `recordStage('embedded', { in })`, which the runtime calls once a
 * group is in Postgres and Redis, releases the changes it covers: one sample each, `Date.now()` −
 * `updated_at`, ms. Groups commit in read order, so a running count of changes maps one to the other.
 */
function freshnessTap(metrics: CellarMetrics, supplierId: string): { samples: number[]; remove(): void } {
  const samples: number[] = [];
  const pending: Array<{ index: number; atMs: number }> = [];
  let read = 0;
  let done = 0;
  const kind = NATIVE_SOURCES.postgres;
  const stream = kind.stream;
  kind.stream = (supplier, log, opts) => {
    const src = stream(supplier, log, opts);
    if (supplier.id !== supplierId) return src; // the raw read's reader, in the same process
    return {
      kind: src.kind,
      get done() {
        return src.done;
      },
      start: (handler, from) =>
        src.start((b) => {
          for (const c of b.changes) {
            const after = c.spec.after;
            if (after && typeof after.id === 'number' && after.id % 10 === 0 && typeof after.updated_at === 'string') pending.push({ index: read, atMs: Date.parse(after.updated_at) });
            read++;
          }
          return handler(b);
        }, from),
      ack: (c) => src.ack(c),
      stop: () => src.stop(),
    };
  };
  const recordStage = metrics.recordStage.bind(metrics);
  metrics.recordStage = (stage, r) => {
    recordStage(stage, r);
    if (stage !== 'embedded' || !r.in) return;
    done += r.in;
    const now = Date.now();
    let i = 0;
    while (i < pending.length && pending[i]!.index < done) samples.push(now - pending[i++]!.atMs);
    pending.splice(0, i);
  };
  return { samples, remove: () => void (kind.stream = stream) };
}

const sustainedDetails = (s: Sustained) => ({ transactionRows: SUSTAINED_TX_ROWS, changesPerRun: SUSTAINED_CHANGES, rows: ROWS, writerChangesPerS: s.writerChangesPerS, cpuMicrosPerChange: s.cpuMicrosPerChange, cores: os.cpus().length });
const windowsAt = <F extends Freshness>(figs: F[], rate: number): F[] => figs.filter((f) => f.rate === rate);
const k = (rate: number) => `${rate / 1000}k`;

/** How each contestant's freshness is sampled (both from the supplier row's `updated_at`, set by its UPDATE just before the commit). */
const CELLAR_FRESH = "1 change in 10 (id % 10 = 0): Date.now() as the group commit holding it ends (Cellar's Postgres committed, Redis written) − the row's updated_at";
const PEER_FRESH = "1 change in 10 (id % 10 = 0): clock_timestamp() in a deferred trigger as the subscriber's apply transaction commits − the row's updated_at";
const RUNTIME_FRESH = 'runtimeMetric: cellar_freshness_seconds over the same windows, one sample per (region, SKU) total per group commit, from the newest contributing supplier commit timestamp';

/** p50 and p99 results at each rate: one run per window, the median window reported; the windows' figures in the p50's details. */
function freshnessResults(who: string, figs: Freshness[], how: string, targets: Record<number, { p50?: number; p99?: number }> = {}): BenchResult[] {
  return RATES.flatMap((rate) => {
    const ws = windowsAt(figs, rate);
    const details = { how, transactionRows: FIXED_RATE_TX_ROWS, windowSeconds: FIXED_RATE_SECONDS, windows: ws.map(({ rate: _, ...w }) => w) };
    return (['p50', 'p99'] as const).map((q) =>
      result(`${who}: freshness ${q} at ${k(rate)} changes/s`, 'ms', ws.map((w) => w[q]), { target: targets[rate]?.[q], higherIsBetter: false, ...(q === 'p50' ? { details } : {}) }),
    );
  });
}

function cellarResults(c: Figures['cellar']): BenchResult[] {
  return [
    result('embedded: sustained changes/s, commit → Postgres + Redis', 'changes/s', c.sustained.changesPerS, { target: 50_000, details: sustainedDetails(c.sustained) }),
    ...freshnessResults('embedded', c.freshness, `${CELLAR_FRESH}; ${RUNTIME_FRESH}`, { 5_000: { p50: 50, p99: 250 }, 20_000: { p99: 50 } }),
  ];
}

function peerResults(p: Figures['peer']): BenchResult[] {
  const how = 'native logical replication (publication + subscription into a second database on the same server) and a PL/pgSQL trigger keeping totals(region, sku); caught up when the last transaction’s first row shows on the subscriber (in-order apply)';
  return [
    result('peer: sustained changes/s, commit → subscriber totals', 'changes/s', p.sustained.changesPerS, { details: { how, ...sustainedDetails(p.sustained), initialSyncS: p.initialSyncS, totalsCheck: p.check } }),
    ...freshnessResults('peer', p.freshness, PEER_FRESH),
  ];
}

function rawResults(r: Figures['raw']): BenchResult[] {
  const how = "Cellar's pgoutput reader (createNativeSource) alone: counts each batch's changes and acks its checkpoint, no processing";
  return [
    result('raw read: sustained changes/s, commit → read and acked', 'changes/s', r.sustained.changesPerS, { details: { how, note: 'bounded by the writer where changesPerS ≈ writerChangesPerS', ...sustainedDetails(r.sustained), snapshotS: r.snapshotS } }),
    result('raw read: backlog changes/s, reader alone', 'changes/s', r.backlog, { details: { how: `${how}; ${SUSTAINED_CHANGES} changes written while it was stopped, then read by a new reader from the slot (start, connection included, until all counted)` } }),
  ];
}

/** Ratios of medians measured in this run: above 1 means Cellar is faster (throughput) or slower (freshness, lower is better). */
function ratioResults({ cellar: c, peer: p, raw: r }: Figures): BenchResult[] {
  const med = (s: Sustained) => median(s.changesPerS);
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
  const out = [
    result('ratio: sustained throughput, Cellar / peer', '×', [ratio(med(c.sustained), med(p.sustained))], { details: { cellar: med(c.sustained), peer: med(p.sustained), meaning: 'medians of this run; above 1: Cellar sustains more changes/s than the peer' } }),
    result('ratio: sustained throughput, Cellar / raw read', '×', [ratio(med(c.sustained), med(r.sustained))], { details: { cellar: med(c.sustained), raw: med(r.sustained), meaning: 'share of the bare pgoutput read rate Cellar keeps end to end (1 = reading is the only cost)' } }),
  ];
  for (const rate of RATES) {
    for (const q of ['p50', 'p99'] as const) {
      const a = median(windowsAt(c.freshness, rate).map((w) => w[q]));
      const b = median(windowsAt(p.freshness, rate).map((w) => w[q]));
      out.push(result(`ratio: freshness ${q} at ${k(rate)} changes/s, Cellar / peer`, '×', [ratio(a, b)], { higherIsBetter: false, details: { cellarMs: a, peerMs: b, meaning: 'medians of the windows of this run; below 1: Cellar is fresher than the peer' } }));
    }
  }
  return out;
}
