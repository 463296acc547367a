import { randomUUID } from 'node:crypto';
import { saveHistory } from '../state/history.js';
import type { OpenedAhead } from './commit-ahead.js';
import { deriveEvents, type StockLevelEvent, type Thresholds } from '../events/derive.js';
import { saveEvents } from '../events/log.js';
import type pg from 'pg';
import type { Supplier } from '../../connectors/registry/loader.js';
import { toDebeziumJson } from '../../connectors/debezium/envelope.js';
import { SourceChange } from '../../connectors/source-change.js';
import type { DeadLetter, RegionalStock, StockObservation } from '../../schemas/records.js';
import { query, queryAll, type Statement } from '../core/pg.js';
import { regionalStockUpsert } from '../../sinks/postgres/sink.js';
import type { Contribution, RegionalAggregator } from '../aggregate/aggregator.js';
import { contributionsUpsert, type ContributionStore } from '../state/contributions.js';
import type { HistoryEntry } from '../aggregate/aggregator.js';
import { aggregateObservations, holdKeys } from '../aggregate/stage.js';
import { groupBy } from '../core/collections.js';
import type { Logger } from '../core/logger.js';
import { deadLetter } from '../dlq/letter.js';
import { insertDeadLetters } from '../state/dead-letters.js';
import { normalizeBatch, type HeldMark } from '../normalize/batch.js';
import type { CachedHeldStore } from '../state/held.js';
import type { CompiledMapping } from '../normalize/mapping.js';
import type { Route } from '../normalize/normalize.js';
import type { CachedRouteStore } from '../state/routes.js';
import type { MappingInputsStore } from '../normalize/sku-map-store.js';
import { storedPosition, checkpointUpsert, type StoredCheckpoint } from '../state/checkpoints.js';
import type { ChangeBatch, SourceCheckpoint } from '../../connectors/native-source.js';
import type { FeedDelta } from '../../connectors/feed/source.js';
import { applyFeedDelta } from '../state/feed-rows.js';
import type { ReadAhead } from './read-ahead.js';
import type { FenceRow, RuntimeLease } from './lease.js';
import { afterBatch, finishResnapshotRequests, snapshotStateOf, type SnapshotState } from './resnapshot.js';

/** The `partition` the embedded runtime files its contributions under (the Kafka runtime uses 0..N-1). */
export const EMBEDDED_PARTITION = -1;


/**
 * A change the embedded runtime applies: a native reader's {@link SourceChange}, or a correction from
 * `cellar.repair_requests` (the row's Debezium JSON, as reconciliation also sends it to raw topics).
 */
export type EmbeddedChange = SourceChange | { table: string; key: string | null; value: string; replayOf?: number };

/** A source batch, where it leaves its source (checkpointed), and how to tell the source it is durable. */
export interface Pending {
  supplier: Supplier;
  mapping: CompiledMapping;
  batch: { changes: EmbeddedChange[]; snapshot: boolean; snapshotComplete?: boolean; feed?: ChangeBatch['feed'] };
  /** Where the source stands after this batch; undefined for corrections (nothing to checkpoint). */
  checkpoint: SourceCheckpoint | undefined;
  confirm: () => Promise<void>;
  /** Rows of `cellar.repair_requests` this batch carries, deleted in the commit that applies them. */
  repairIds?: number[];
  /** Corrections below the normalizer (see pipelines/reconcile/direct-repair.ts). */
  observations?: StockObservation[];
}

/** A group normalized and aggregated in memory, ready to commit. */
export interface Prepared {
  /** Dead letters by stage, each stage's stale changes, and the changes read. */
  letters: { source: DeadLetter[]; normalizer: DeadLetter[]; aggregator: DeadLetter[] };
  /** Feeds: the rows each applied file leaves, by supplier, in order (written with the checkpoints). */
  feedDeltas: Array<[string, FeedDelta]>;
  stale: { normalizer: number; aggregator: number };
  changes: number;
  /** Routes whose placement changed (see CachedRouteStore.placementChanges). */
  routesToSave: Route[];
  totals: RegionalStock[];
  changed: Contribution[];
  /** Every effective change of a total, in order (written to `cellar.stock_history` when kept). */
  history: HistoryEntry[];
  /** The stock events those changes make (written to `cellar.stock_events` with the history). */
  events: StockLevelEvent[];
  /** The group's transaction, opened with its history written while the previous group commits (see CommitAhead). */
  ahead?: Promise<OpenedAhead | undefined>;
  /** Checkpoint rows as of this group (taken now: the next group may already finish a snapshot). */
  checkpoints: Array<[string, StoredCheckpoint]>;
  confirms: Array<() => Promise<void>>;
  repairIds: number[];
  /** Resnapshot requests whose snapshot this group completes. */
  finished: number[];
  holds: HeldMark[];
  releases: Array<{ contributorId: string; version: string }>;
}

/** What preparing and committing groups works with: the embedded runtime's state and stores. */
export interface GroupState {
  aggregator: RegionalAggregator;
  routes: CachedRouteStore;
  held: CachedHeldStore;
  contributions: ContributionStore;
  inputs: MappingInputsStore;
  /** What each reader owes, as of the batches prepared so far. */
  snapshots: Map<string, SnapshotState>;
  retry: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
  /** Resolves once the commit in flight landed (a truncate reads the routes it saved). */
  settled: () => Promise<void>;
  log: Logger;
  /** Contributions the aggregator keeps in memory (CELLAR_STATE_CACHE_CONTRIBUTORS). */
  maxContributions: number;
  /** The low-stock rules events are derived with (refreshed in the background). */
  thresholds: () => Thresholds;
  /** Send each group's commit statement as a prepared statement (CELLAR_PG_PREPARED_STATEMENTS). */
  prepare?: boolean;
  /** Contributions read ahead of the group (see ReadAhead); absent: every key is read when needed. */
  readAhead?: Pick<ReadAhead, 'take' | 'takeEntries'>;
}

/**
 * Normalizes and aggregates a group in memory with the stages the Kafka runtime runs (normalizeBatch,
 * aggregateObservations), per supplier and table in source order; corrections below the normalizer go
 * straight to the aggregator.
 */
export async function prepareGroup(s: GroupState, taken: Pending[]): Promise<Prepared> {
  const out: Prepared = {
    letters: { source: [], normalizer: [], aggregator: [] }, feedDeltas: [], stale: { normalizer: 0, aggregator: 0 }, changes: 0, routesToSave: [], totals: [], changed: [], history: [], events: [],
    checkpoints: [], confirms: [], repairIds: taken.flatMap((p) => p.repairIds ?? []), finished: [], holds: [], releases: [],
  };
  // Memory is bounded: keys are dropped only once every drained change is committed, so one loaded again
  // reads what the aggregator last had.
  if (s.aggregator.size > s.maxContributions) {
    await s.settled();
    const dropped = s.aggregator.evict(s.maxContributions);
    s.log.debug({ dropped, held: s.aggregator.size }, 'aggregate state: least recently used keys dropped from memory');
  }
  const aggregate = async (list: StockObservation[]) => {
    await holdKeys(s.aggregator, list, async (keys) => {
      const ahead = s.readAhead?.take(keys) ?? { rows: [], partial: [], rest: keys };
      if (!ahead.rest.length) return ahead;
      const read = await s.retry('loading aggregate state', () => s.contributions.loadKeys(EMBEDDED_PARTITION, ahead.rest));
      return { rows: [...ahead.rows, ...read.rows], partial: [...ahead.partial, ...read.partial] };
    }, async (wants) => {
      const ahead = s.readAhead?.takeEntries(wants) ?? { rows: [], rest: wants };
      if (!ahead.rest.length) return ahead.rows;
      return [...ahead.rows, ...await s.retry('loading aggregate state', () => s.contributions.loadEntries(EMBEDDED_PARTITION, ahead.rest))];
    });
    const r = aggregateObservations(s.aggregator, list, (o) => o, (o) => ({ value: JSON.stringify(o) }));
    out.stale.aggregator += r.stale;
    out.letters.aggregator.push(...r.letters);
  };
  const allRoutes: Route[] = [];
  const bySupplier = groupBy(taken, (p) => p.supplier.id);
  for (const group of bySupplier.values()) {
    const { supplier, mapping } = group[0]!;
    const byTable = new Map<string, Array<{ m: EmbeddedChange; at: string }>>();
    for (const p of group) {
      if (p.observations) await aggregate(p.observations);
      out.changes += p.batch.changes.length;
      const at = p.checkpoint ? JSON.stringify(storedPosition(p.checkpoint)) : 'reconciliation';
      for (const m of p.batch.changes) {
        const table = m.table;
        const list = byTable.get(table);
        if (list) list.push({ m, at });
        else byTable.set(table, [{ m, at }]);
      }
      if (!p.repairIds) out.finished.push(...afterBatch(s.snapshots, supplier.id, p.batch));
      if (p.batch.feed?.delta) out.feedDeltas.push([supplier.id, p.batch.feed.delta]);
      for (const r of p.batch.feed?.rejected ?? []) {
        out.letters.source.push(deadLetter('source', r.reason, r.message, { supplierId: supplier.id, sourcePosition: `${r.file}:${r.line}`, value: r.text }));
      }
    }
    for (const [table, msgs] of byTable) {
      const res = await normalizeBatch(
        msgs.map((ref) => {
          // Native readers' changes go in as they are; corrections from the queue are JSON.
          const m = ref.m;
          if (m instanceof SourceChange) return { key: null, value: null, change: m.event(), ref };
          return { key: m.key === null ? null : Buffer.from(m.key), value: Buffer.from(m.value), ref };
        }),
        { supplierId: supplier.id, mapping, table, keyColumns: supplier.source.tables.find((t) => t.name === table)?.key },
        { routes: (ids) => s.routes.get(ids), liveOfTable: (sid, t, before) => s.routes.liveOfTable(sid, t, before), settle: s.settled, retry: s.retry, flushPins: () => s.inputs.flushPins(), onDefect: (err) => s.log.error({ err }, 'unexpected error on one record; dead-lettered') },
      );
      await aggregate(res.observations);
      allRoutes.push(...res.routes);
      const h = s.held.track(res.holds, res.releases);
      out.holds.push(...h.holds);
      out.releases.push(...h.releases);
      out.stale.normalizer += res.stale;
      for (const r of res.rejected) {
        out.letters.normalizer.push(deadLetter('normalizer', r.reason, r.message, { supplierId: supplier.id, sourcePosition: r.position ?? r.ref.at, ...rawOf(r.ref.m), sourceTable: table }));
      }
    }
  }
  const drained = s.aggregator.drain(Date.now());
  out.totals = drained.totals;
  out.changed = drained.contributions;
  out.history = drained.history;
  out.events = deriveEvents(drained.history, s.thresholds());
  // Only placements that changed are written (see placementChanges); the next group is prepared while
  // this one commits, so it must see these routes already.
  out.routesToSave = s.routes.placementChanges(allRoutes);
  s.routes.remember(allRoutes);
  for (const group of bySupplier.values()) {
    const last = group.filter((p) => p.checkpoint !== undefined).at(-1);
    if (!last?.checkpoint) continue;
    out.checkpoints.push([last.supplier.id, { kind: last.supplier.source.kind, ...storedPosition(last.checkpoint), ...snapshotStateOf(s.snapshots.get(last.supplier.id)) }]);
    out.confirms.push(last.confirm);
  }
  // Stable across retries of the commit, so letters of a commit whose outcome was unknown are written once.
  const id = randomUUID();
  [...out.letters.source, ...out.letters.normalizer, ...out.letters.aggregator].forEach((l, i) => (l.dedupeKey = `${id}:${i}`));
  return out;
}

/**
 * Writes a prepared group in the caller's transaction: routes, holds, contributions, history (unless
 * `historyWritten`: written ahead in this transaction, see CommitAhead), events, totals, letters, checkpoints;
 * `fence` (the single-writer lease) is read with the last of them and refuses the commit when lost.
 */
export async function writeGroup(s: GroupState, g: Prepared, tx: pg.PoolClient, historyWritten = false, fence?: Pick<RuntimeLease, 'fenceRead' | 'checkFence'>): Promise<void> {
  await s.routes.save(g.routesToSave, tx);
  await s.held.apply(g.holds, g.releases, tx);
  if (!historyWritten) await saveHistory(tx, g.history);
  await saveEvents(tx, g.events);
  await insertDeadLetters(tx, [...g.letters.source, ...g.letters.normalizer, ...g.letters.aggregator]);
  for (const [sourceId, delta] of g.feedDeltas) await applyFeedDelta(tx, sourceId, delta);
  await finishResnapshotRequests(tx, g.finished);
  if (g.repairIds.length) await query(tx, 'consuming corrections', 'DELETE FROM cellar.repair_requests WHERE id = ANY($1)', [g.repairIds]);
  // What every group writes, with the lease fence, in one round trip: tables none of the others reads.
  const writes: Statement[] = [];
  const contributions = contributionsUpsert(g.changed, EMBEDDED_PARTITION);
  if (contributions) writes.push(contributions);
  const totals = regionalStockUpsert(g.totals);
  if (totals) writes.push(totals);
  for (const [sourceId, checkpoint] of g.checkpoints) writes.push(checkpointUpsert(sourceId, checkpoint));
  const fenced = await queryAll<FenceRow>(tx, 'saving contributions, totals and checkpoints', writes, fence?.fenceRead(), { prepare: s.prepare === true });
  fence?.checkFence(fenced);
}

/** A refused change as its dead letter keeps it: the Debezium JSON a replay can send again, and the letter it replays. */
function rawOf(m: EmbeddedChange): { key: string | null; value: string; replayOf?: number } {
  if (m instanceof SourceChange) {
    const { key, value } = toDebeziumJson(m);
    return { key, value };
  }
  return { key: m.key, value: m.value, ...(m.replayOf ? { replayOf: m.replayOf } : {}) };
}
