import os from 'node:os';
import type pg from 'pg';

/**
 * The one supplier workload of the `embedded` suite, shared by every contestant (Cellar's embedded runtime,
 * the logical-replication peer, the raw pgoutput read): the same table, the same rows and the same UPDATE
 * statements, so their figures differ only in what follows the supplier's commit.
 */

/** Distinct SKUs in the supplier table. */
export const SKUS = 2_000;
/** Distinct depots (Cellar's warehouses); each maps to one region in {@link REGIONS}. */
export const WAREHOUSES = 6;
/** Rows of the supplier table: every SKU in every depot. */
export const ROWS = SKUS * WAREHOUSES;
/** depot → region: Cellar's supplier mapping and the peer's `depot_region` table hold the same pairs. */
export const REGIONS: Readonly<Record<string, string>> = { d0: 'eu', d1: 'eu', d2: 'us', d3: 'us', d4: 'ap', d5: 'ap' };
/** Rows per transaction of the sustained (throughput) runs. */
export const SUSTAINED_TX_ROWS = 500;
/** Changes per sustained run, and how many runs of each contestant are measured (after one unmeasured warm-up run each). */
export const SUSTAINED_CHANGES = 60_000;
export const SUSTAINED_RUNS = 5;
/**
 * Rows per transaction of the fixed-rate (freshness) runs, how long each window holds its rate (s), and
 * how many windows each rate gets: every window has its own p50/p99, and the median window is reported,
 * so one burst of other work on the machine moves one window, not the figure.
 */
export const FIXED_RATE_TX_ROWS = 50;
export const FIXED_RATE_SECONDS = 10;
export const FIXED_RATE_WINDOWS = 3;

/**
 * The supplier table. `updated_at` is set by every update (`clock_timestamp()`, the row's own change
 * time, just before its commit): both Cellar's and the peer's freshness are measured from it.
 */
export const STOCK_DDL =
  'CREATE TABLE public.stock (id int PRIMARY KEY, item_code text NOT NULL, depot text NOT NULL, qty int NOT NULL, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())';

/** The only statement the writer runs: one transaction (autocommit) adding a bottle to each row of an id range. */
const UPDATE = 'UPDATE public.stock SET qty = qty + 1, updated_at = clock_timestamp() WHERE id >= $1 AND id < $2';

/** Creates the supplier table and its {@link ROWS} rows (100 bottles each). */
export async function createSupplierTable(c: pg.Client): Promise<void> {
  await c.query(STOCK_DDL);
  await c.query(`INSERT INTO public.stock (id, item_code, depot, qty) SELECT g, 'wine-' || (g % ${SKUS}), 'd' || (g % ${WAREHOUSES}), 100 FROM generate_series(0, ${ROWS - 1}) g`);
}

/** Cellar's supplier file for a supplier database on the local server (the raw read parses the same). */
export function supplierYaml(id: string, port: string | number, database: string): string {
  return `id: ${id}
name: Bench ${id}
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${port}, database: ${database}, user: postgres }
  topicPrefix: ${id}
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: qty
  regions: { ${Object.entries(REGIONS).map(([d, r]) => `${d}: ${r}`).join(', ')} }
`;
}

/** What a write did: changes committed, the writer's own time (ms) and the first row of its last transaction. */
export interface Written {
  changes: number;
  writerMs: number;
  /** Transactions apply in commit order: once this row shows its new value downstream, everything did. */
  lastId: number;
  /** Round trip of each UPDATE (fixed-rate writes only), ms: bounds the time between a row's `updated_at` and its commit. */
  statementMs?: number[];
}

/** `changes` row updates in transactions of `txRows` consecutive rows, as fast as the supplier commits them. */
export async function writeSustained(c: pg.Client, changes = SUSTAINED_CHANGES, txRows = SUSTAINED_TX_ROWS): Promise<Written> {
  const t0 = performance.now();
  let from = 0;
  for (let i = 0; i < changes / txRows; i++) {
    from = (i * txRows) % ROWS;
    await c.query(UPDATE, [from, from + txRows]);
  }
  return { changes, writerMs: performance.now() - t0, lastId: from };
}

/** Row updates at a fixed `rate` (changes/s) for `seconds`: transactions of `txRows` rows, issued every few ms as they fall due. */
export async function writeAtRate(c: pg.Client, rate: number, seconds = FIXED_RATE_SECONDS, txRows = FIXED_RATE_TX_ROWS): Promise<Written> {
  const t0 = performance.now();
  const statementMs: number[] = [];
  let sent = 0;
  let from = 0;
  while (performance.now() - t0 < seconds * 1000) {
    const due = Math.floor(((performance.now() - t0) / 1000) * rate);
    while (sent < due) {
      from = (sent * 7) % (ROWS - txRows);
      const s0 = performance.now();
      await c.query(UPDATE, [from, from + txRows]);
      statementMs.push(performance.now() - s0);
      sent += txRows;
    }
    await sleep(5);
  }
  return { changes: sent, writerMs: performance.now() - t0, lastId: from, statementMs };
}

/**
 * What follows the supplier's commits, seen from the benchmark: `mark` before a measured write,
 * `caughtUp` resolves once everything written since is handled (polling every 20 ms, for every contestant
 * alike), and, where freshness is measured, its samples (ms) since `resetSamples`, and anything else the
 * contestant reports per freshness window (`windowDetails`).
 */
export interface Follower {
  mark(): Promise<void>;
  caughtUp(w: Written): Promise<void>;
  resetSamples?(): Promise<void>;
  samples?(): Promise<number[]>;
  windowDetails?(): Record<string, unknown>;
}

/** One contestant, set up and idle between its runs: its own supplier database (on its own server) and writer connection. */
export interface Contestant {
  name: string;
  writer: pg.Client;
  follower: Follower;
  /** Called once between the sustained runs and the freshness windows (the peer adds its freshness probe). */
  beforeFreshness?(): Promise<void>;
}

/** Sustained runs: changes/s from the first write until caught up, the writer's own rate, CPU per change. */
export interface Sustained {
  changesPerS: number[];
  writerChangesPerS: number[];
  /** µs of CPU per change: the whole machine (every process, every core) and this Node process. */
  cpuMicrosPerChange: Array<{ machine: number; process: number }>;
}

/** One sustained run of {@link SUSTAINED_CHANGES} changes, added to `into`. */
export async function sustainedRun(c: Contestant, into: Sustained): Promise<void> {
  await c.follower.mark();
  const cpu0 = { machine: machineCpuMs(), own: ownCpuMs() };
  const t0 = performance.now();
  const w = await writeSustained(c.writer);
  await c.follower.caughtUp(w);
  const ms = performance.now() - t0;
  into.changesPerS.push(Math.round(w.changes / (ms / 1000)));
  into.writerChangesPerS.push(Math.round(w.changes / (w.writerMs / 1000)));
  into.cpuMicrosPerChange.push({ machine: Math.round(((machineCpuMs() - cpu0.machine) * 1000) / w.changes), process: Math.round(((ownCpuMs() - cpu0.own) * 1000) / w.changes) });
}

export const noSustained = (): Sustained => ({ changesPerS: [], writerChangesPerS: [], cpuMicrosPerChange: [] });

/**
 * Runs `fn` for each contestant, `rounds` times, one contestant at a time, in an order rotated every round
 * (ABC, BCA, CAB…): slow changes in what else the machine is doing fall on every contestant alike, and
 * none always runs right after another.
 */
export async function interleave(contestants: Contestant[], rounds: number, fn: (c: Contestant) => Promise<void>): Promise<void> {
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < contestants.length; i++) await fn(contestants[(i + r) % contestants.length]!);
  }
}

/** Freshness at one fixed rate in one window: percentiles of the follower's samples, ms. */
export interface Freshness {
  rate: number;
  p50: number;
  p99: number;
  max: number;
  samples: number;
  changes: number;
  /** Changes/s the writer actually committed (below `rate` when the supplier could not keep up). */
  achievedRate: number;
  /** The writer's UPDATE round trip, p50/p99 ms. */
  statementMs: { p50: number; p99: number };
  /** From the last commit until caught up, ms: near zero when the follower kept up. */
  drainMs: number;
  details?: Record<string, unknown>;
}

/** One window: holds `rate` changes/s for {@link FIXED_RATE_SECONDS} s, waits until caught up, and reads the freshness samples. */
export async function freshnessWindow(c: Contestant, rate: number): Promise<Freshness> {
  const f = c.follower;
  await f.mark();
  await f.resetSamples?.();
  const w = await writeAtRate(c.writer, rate);
  const t0 = performance.now();
  await f.caughtUp(w);
  const drainMs = Math.round(performance.now() - t0);
  const s = (await f.samples?.()) ?? [];
  const st = w.statementMs ?? [];
  return {
    rate, p50: round2(percentile(s, 50)), p99: round2(percentile(s, 99)), max: round2(s.reduce((a, b) => Math.max(a, b), -Infinity)), samples: s.length, changes: w.changes,
    achievedRate: Math.round(w.changes / (w.writerMs / 1000)), statementMs: { p50: round2(percentile(st, 50)), p99: round2(percentile(st, 99)) }, drainMs,
    ...(f.windowDetails ? { details: f.windowDetails() } : {}),
  };
}

/** Polls `done` every 20 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function pollUntil(what: string, done: () => Promise<boolean>, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The p-th percentile (nearest rank, as the suite always computed it); NaN without samples. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** CPU time of the whole machine (every core, user + system + irq), ms. */
function machineCpuMs(): number {
  return os.cpus().reduce((a, c) => a + c.times.user + c.times.sys + c.times.irq + c.times.nice, 0);
}

/** CPU time of this process, ms. */
function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
