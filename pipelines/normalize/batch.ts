import type { StockObservation } from '../../schemas/records.js';
import { CellarError } from '../core/errors.js';
import type { ChangeEvent } from './debezium.js';
import { decodeRawChange, type DebeziumAvroDecoder } from './debezium-avro.js';
import type { CompiledMapping } from './mapping.js';
import { contributorIdOf, newestPerContributor, normalizeChange, normalizeTruncate, type Route } from './normalize.js';
import { Rejection, type ReasonCode } from './reasons.js';

/** One raw message of a batch, in source order, with the caller's reference (offset, position…). */
export interface RawItem<R> {
  key: Buffer | null;
  value: Buffer | null;
  ref: R;
  /** The change already decoded (a native reader's message in the embedded runtime): `key`/`value` are then unused. */
  change?: ChangeEvent;
}

/** Where the raw messages of a batch come from. */
export interface RawSource {
  supplierId: string;
  mapping: CompiledMapping;
  table: string;
  keyColumns?: string[];
}

/** What normalizing a batch needs from its runtime. */
export interface BatchDeps {
  /** Routes of the given contributors (one round trip). */
  routes(ids: string[]): Promise<Map<string, Route>>;
  /** Live routes of a table last seen before version `before`: what a truncate at `before` removes. */
  liveOfTable(supplierId: string, table: string, before: string): Promise<Route[]>;
  /**
   * Resolves once every route the runtime has placed so far is readable by {@link BatchDeps.liveOfTable}
   * (the embedded runtime: its commit in flight has landed). Called before a truncate reads them.
   */
  settle?(): Promise<void>;
  /**
   * The table's last truncate, shared by every normalizer (the Kafka runtime, where a table's changes are
   * normalized on several partitions at once and a truncate lands on one of them). Absent: one ordered
   * stream per table (the embedded runtime), where the truncate itself sees every earlier row.
   */
  truncates?: TruncateBarrier;
  /** Retries I/O on retriable errors (schema fetches, route reads). */
  retry<T>(what: string, fn: () => Promise<T>): Promise<T>;
  avro?: DebeziumAvroDecoder;
  /** Called for a record that threw something other than a Rejection (a defect), before it is dead-lettered. */
  onDefect?(err: unknown): void;
  /**
   * Persists the bottle sizes the mapping's catalog pinned for SKUs first seen in this batch; returns how
   * many lost to a size another process pinned first. Absent: pins stay in memory (mapping tests).
   */
  flushPins?(): Promise<number>;
}

/** The newest truncate of each table, recorded before the truncate's rows are looked up. */
export interface TruncateBarrier {
  truncatedAt(supplierId: string, table: string): Promise<{ version: string; tsMs: number } | undefined>;
  recordTruncate(supplierId: string, table: string, version: string, tsMs: number): Promise<void>;
}

/**
 * A contributor held at its last valid state: a newer change of its row was refused (dead-lettered), so
 * its previous placement keeps counting. Semantics: see the README, "Rows that turn invalid".
 */
export interface HeldMark {
  contributorId: string;
  supplierId: string;
  sourceTable: string;
  /** Where it still counts (its live route). */
  region: string;
  sku: string;
  reason: string;
  message: string;
  /** Source version of the refused change: only a newer valid change releases it. */
  version: string;
}

/** The outcome of one batch: what to emit, which routes to save, which records to dead-letter. */
export interface NormalizedBatch<R> {
  observations: StockObservation[];
  routes: Route[];
  rejected: Array<{ ref: R; reason: ReasonCode; message: string; position: string | null }>;
  stale: number;
  /** Contributors whose last change in this batch was refused while their row still counts. */
  holds: HeldMark[];
  /** Contributors whose last change in this batch applied: any hold older than `version` ends. */
  releases: Array<{ contributorId: string; version: string }>;
}

async function decode<R>(item: RawItem<R>, deps: BatchDeps): Promise<ChangeEvent | null> {
  if (item.change) return item.change;
  const quick = decodeRawChange(item.key, item.value, deps.avro);
  if (!(quick instanceof Promise)) return quick;
  let pending: Promise<ChangeEvent | null> | undefined = quick;
  // Only a schema fetch is asynchronous; its first attempt is `quick`, later ones start anew.
  return deps.retry('decoding raw change', () => {
    const p = pending ?? (decodeRawChange(item.key, item.value, deps.avro) as Promise<ChangeEvent | null>);
    pending = undefined;
    return p;
  });
}

/**
 * Normalizes a batch of raw Debezium messages of one table, in order, with the runtime's routes. Shared
 * by the Kafka normalizer and the embedded runtime. Bad records become rejections (never exceptions);
 * only retriable I/O errors are thrown.
 */
export async function normalizeBatch<R>(items: Array<RawItem<R>>, src: RawSource, deps: BatchDeps, nowMs = Date.now()): Promise<NormalizedBatch<R>> {
  // Between batches only: a batch keeps every size it used until its pins are persisted (see below).
  src.mapping.catalog.trim();
  const out = await normalizeOnce(items, src, deps, nowMs);
  // Sizes pinned for new SKUs are persisted before any observation leaves: when another process pinned
  // a different size first, the batch is normalized again against the winners (all its SKUs are known
  // then, so this happens at most once).
  if (deps.flushPins && src.mapping.catalog.hasPending()) {
    const lost = await deps.retry('pinning bottle sizes', () => deps.flushPins!());
    if (lost > 0) return normalizeOnce(items, src, deps, nowMs);
  }
  return out;
}

async function normalizeOnce<R>(items: Array<RawItem<R>>, src: RawSource, deps: BatchDeps, nowMs: number): Promise<NormalizedBatch<R>> {
  const out: NormalizedBatch<R> = { observations: [], routes: [], rejected: [], stale: 0, holds: [], releases: [] };
  // The last outcome per contributor decides: held (refused while counted) or released (applied).
  const last = new Map<string, HeldMark | { contributorId: string; version: string }>();
  const hold = (route: Route | undefined, change: ChangeEvent, reason: string, message: string) => {
    if (!route || route.deleted || change.sourceVersion <= route.sourceVersion) return;
    last.set(route.contributorId, { contributorId: route.contributorId, supplierId: route.supplierId, sourceTable: route.sourceTable, region: route.region, sku: route.sku, reason, message, version: change.sourceVersion });
  };
  const reject = (ref: R, err: unknown, position: string | null) => {
    if (err instanceof Rejection) return void out.rejected.push({ ref, reason: err.reason, message: err.message, position });
    deps.onDefect?.(err);
    out.rejected.push({ ref, reason: 'unexpected_error', message: `${(err as Error)?.name ?? 'Error'}: ${(err as Error)?.message ?? String(err)}`, position });
  };
  const work: Array<{ ref: R; change: ChangeEvent; contributorId: string }> = [];
  for (const item of items) {
    try {
      // A change already decoded (a native reader's) is not awaited: one promise and one microtask less per change.
      const change = item.change ?? (await decode(item, deps));
      if (!change || change.op === 'm') continue; // tombstones and logical messages carry no stock
      if (change.table !== src.table) throw new Rejection('unknown_table', `change on ${change.table} arrived where ${src.table} is expected`);
      work.push({ ref: item.ref, change, contributorId: change.op === 't' ? '' : contributorIdOf(src.supplierId, change, src.keyColumns) });
    } catch (err) {
      if (err instanceof CellarError && err.retriable) throw err;
      reject(item.ref, err, null);
    }
  }
  const known = await deps.retry('reading routes', () => deps.routes([...new Set(work.filter((w) => w.contributorId).map((w) => w.contributorId))]));
  const barrier = deps.truncates && work.some((w) => w.change.op !== 't')
    ? await deps.retry('reading the table\'s last truncate', () => deps.truncates!.truncatedAt(src.supplierId, src.table))
    : undefined;
  for (const item of work) {
    if (item.change.op === 't') {
      // Recorded first: a normalizer of another partition that places a row of this table from now on
      // either finds the truncate, or saved its route before the read below (see sweepTruncated).
      await deps.retry('recording a truncate', async () => deps.truncates?.recordTruncate(src.supplierId, item.change.table, item.change.sourceVersion, item.change.sourceTsMs));
      // A truncate removes the rows seen before it: routes read now, updated by this batch so far.
      await deps.settle?.();
      const live = await deps.retry('reading routes of truncated table', () => deps.liveOfTable(src.supplierId, item.change.table, item.change.sourceVersion));
      const current = live.map((r) => known.get(r.contributorId) ?? r);
      for (const r of known.values()) if (!r.deleted && r.sourceTable === item.change.table && !current.includes(r)) current.push(r);
      const t = normalizeTruncate(item.change, current, nowMs);
      out.observations.push(...t.observations);
      for (const r of t.routes) {
        known.set(r.contributorId, r);
        last.set(r.contributorId, { contributorId: r.contributorId, version: r.sourceVersion });
      }
      out.routes.push(...t.routes);
      continue;
    }
    const route = known.get(item.contributorId);
    if (barrier && item.change.sourceVersion <= barrier.version && !item.change.source.cellar_version && (!route || route.sourceVersion < barrier.version)) {
      out.stale++; // older than a truncate of its table: that row is gone (a correction is exempt: it reads the source now)
      continue;
    }
    let outcome: ReturnType<typeof normalizeChange>;
    try {
      outcome = normalizeChange(item.change, src.mapping, item.contributorId, route, nowMs);
    } catch (err) {
      reject(item.ref, err, item.change.position);
      const r = out.rejected.at(-1)!;
      hold(route, item.change, r.reason, r.message);
      continue;
    }
    if (outcome.kind === 'stale') out.stale++;
    else if (outcome.kind === 'rejected') {
      out.rejected.push({ ref: item.ref, reason: outcome.reason, message: outcome.message, position: item.change.position });
      hold(route, item.change, outcome.reason, outcome.message);
    } else {
      out.observations.push(...outcome.observations);
      known.set(item.contributorId, outcome.route);
      out.routes.push(outcome.route);
      last.set(item.contributorId, { contributorId: item.contributorId, version: item.change.sourceVersion });
    }
  }
  for (const v of last.values()) {
    if ('reason' in v) out.holds.push(v);
    else out.releases.push(v);
  }
  return out;
}

/**
 * After a batch's routes were saved: removes, at the truncate's version, every live route of `routes`
 * older than a truncate of its table that another normalizer recorded meanwhile (its own lookup of the
 * table's rows could not see routes saved after it). Returns the DELETE observations to emit and the
 * routes to save; nothing when no truncate overtook the batch.
 */
export async function sweepTruncated(routes: Route[], supplierId: string, table: string, deps: Pick<BatchDeps, 'truncates' | 'retry'>, nowMs = Date.now()): Promise<{ observations: StockObservation[]; routes: Route[] }> {
  const live = newestPerContributor(routes.filter((r) => r.sourceTable === table)).filter((r) => !r.deleted);
  if (!deps.truncates || live.length === 0) return { observations: [], routes: [] };
  const barrier = await deps.retry('reading the table\'s last truncate', () => deps.truncates!.truncatedAt(supplierId, table));
  if (!barrier || !live.some((r) => r.sourceVersion < barrier.version)) return { observations: [], routes: [] };
  const truncate: ChangeEvent = { op: 't', before: null, after: null, key: null, source: {}, table, sourceVersion: barrier.version, sourceTsMs: barrier.tsMs, position: `truncate@${barrier.version}` };
  return normalizeTruncate(truncate, live, nowMs);
}
