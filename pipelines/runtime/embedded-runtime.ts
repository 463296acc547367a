import { Redis } from 'ioredis';
import { mysqlUrl, postgresUrl } from '../../connectors/registry/connection.js';
import { createMysqlCdcSource, type BinlogPosition } from '../../connectors/mysql-cdc/index.js';
import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import { createPostgresCdcSource, type CdcBatch } from '../../connectors/postgres-cdc/index.js';
import type { DeadLetter, StockObservation } from '../../schemas/records.js';
import { createPgPool, inTransaction, query } from '../../sinks/postgres/pool.js';
import { migrate } from '../../sinks/postgres/migrate.js';
import { upsertRegionalStock } from '../../sinks/postgres/sink.js';
import { rebuildRedisFromPostgres } from '../../sinks/redis/rebuild.js';
import { createRedisSnapshotSink } from '../../sinks/redis/sink.js';
import { RegionalAggregator } from '../aggregate/aggregator.js';
import { ContributionStore } from '../aggregate/contribution-store.js';
import type { RuntimeConfig } from '../core/config.js';
import { CellarError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { sleep, withRetry } from '../core/retry.js';
import { insertDeadLetters } from '../dlq/store.js';
import { normalizeBatch } from '../normalize/batch.js';
import type { CompiledMapping } from '../normalize/mapping.js';
import { CachedRouteStore } from '../normalize/route-store.js';
import { CachedHeldStore } from '../normalize/held-store.js';
import type { HeldMark } from '../normalize/batch.js';
import { randomUUID } from 'node:crypto';
import type { Route } from '../normalize/normalize.js';
import { MappingInputsStore } from '../normalize/sku-map-store.js';
import { groupBy } from '../core/collections.js';
import { DebeziumJsonMessage } from '../../connectors/debezium/envelope.js';
import { readCheckpoint, writeCheckpoint } from './checkpoints.js';
import { RuntimeLease } from './lease.js';
import { deploymentId, registerDeployment } from './deployment.js';
import { afterBatch, finishResnapshotRequests, pollResnapshotRequests, snapshotStateOf, type SnapshotState } from './resnapshot.js';

/** The `partition` the embedded runtime files its contributions under (the Kafka runtime uses 0..N-1). */
export const EMBEDDED_PARTITION = -1;
/** A supplier's checkpoint: where its reader resumes, and the snapshot it owes (see SnapshotState). */
interface EmbeddedCheckpoint extends SnapshotState { kind: string; position?: unknown }

/** How often the embedded runtime looks for corrections queued by reconciliation, ms. */
const REPAIR_POLL_MS = 1_000;
/** Wait before starting a reader again after its stream stopped on an error, ms (then retries with backoff). */
const READER_RESTART_MS = 1_000;

/** A running embedded pipeline. */
export interface EmbeddedRuntime {
  /** Suppliers captured natively, and those skipped with the reason. */
  captured: string[];
  skipped: Array<{ supplier: string; reason: string }>;
  isReady(): boolean;
  /** While not ready: what it is retrying (a store or reader it cannot reach), for `/readyz`. */
  notReadyReason(): string | undefined;
  /** Settles with the error that made the runtime stop working (the process should exit and restart). */
  failed: Promise<Error>;
  /** Stops the readers, finishes the batch in progress, closes connections. */
  stop(): Promise<void>;
}

/**
 * `cellar run embedded`: every Postgres supplier's native reader → normalize → aggregate → one Postgres
 * transaction (routes, contributions, totals, dead letters, checkpoint) → Redis, in one process, with
 * the same stage code as the Kafka runtime. The reader acknowledges a source position only after that
 * transaction committed, so a crash anywhere replays changes the version guards turn into no-ops.
 * Redis is written after the commit and rebuilt from Postgres at start and after Redis lost its data.
 */
export async function startEmbedded(cfg: RuntimeConfig, log: Logger, metrics: CellarMetrics): Promise<EmbeddedRuntime> {
  const suppliers = loadRegistry(cfg.suppliersDir);
  // Every session of this runtime carries one tag, so that a takeover (see RuntimeLease) can end them all.
  const sessionTag = RuntimeLease.sessionTag('embedded');
  const pool = createPgPool(cfg.pgUrl, { max: 4, applicationName: sessionTag });
  const retry = <T>(what: string, fn: () => Promise<T>) =>
    withRetry(fn, { minDelayMs: 200, maxDelayMs: 5_000, onRetry: (err, attempt) => {
      ready = false;
      waitingFor = `${what}: ${(err as Error).message} (attempt ${attempt})`;
      log.warn({ err: (err as Error).message, attempt, what }, 'retrying');
    } }).then((v) => ((ready = true), (waitingFor = undefined), v));
  let ready = false;
  /** What the runtime is retrying, while it is not ready. */
  let waitingFor: string | undefined = 'starting';
  await retry('migrating Cellar\'s database', () => migrate(pool));
  // One embedded runtime per Cellar database: a second one is refused (or, with takeOver, fences this one).
  const lease = await retry('taking the single-writer lease', () => RuntimeLease.acquire(cfg.pgUrl, 'embedded', log, { takeOver: cfg.takeOver, sessionTag })).catch(async (err: unknown) => {
    await pool.end().catch(() => undefined);
    throw err;
  });
  log.info({ epoch: lease.epoch }, 'holding the embedded runtime lease');
  const stopDeployment = await registerDeployment(pool, deploymentId('embedded'), 'embedded', log).catch(async (err: unknown) => {
    await lease.release().catch(() => undefined);
    await pool.end().catch(() => undefined);
    throw err;
  });
  const redisSink = createRedisSnapshotSink({ url: cfg.redisUrl, ttlSeconds: cfg.redisTtlSeconds });
  await retry('connecting Redis', () => redisSink.connect());
  const redis = new Redis(cfg.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  const rebuild = async () => {
    const r = await retry('rebuilding Redis from Postgres', () => rebuildRedisFromPostgres({ pool, redis }));
    log.info(r, 'Redis snapshots rebuilt from Postgres');
  };
  await rebuild();
  await redisSink.writeBatch([]); // consumes the reset a new epoch reports: Redis was just rebuilt

  const routes = new CachedRouteStore(pool);
  const held = new CachedHeldStore(pool);
  await retry('reading held contributors', () => held.load(suppliers.map((s) => s.id)));
  const contributions = new ContributionStore(pool);
  const aggregator = new RegionalAggregator();
  aggregator.restore(await retry('restoring aggregate state', () => contributions.load(EMBEDDED_PARTITION)));
  const inputs = new MappingInputsStore(pool, suppliers);
  await retry('reading cellar.sku_map and cellar.catalog', () => inputs.load());
  const stopRefresh = inputs.refreshEvery(cfg.skuMapRefreshMs, log);
  /** The running reader of each supplier. */
  const readers = new Map<string, { stop(): Promise<void>; done: Promise<void> }>();
  const skipped: EmbeddedRuntime['skipped'] = [];
  let fatal: Error | undefined;
  let fail!: (err: Error) => void;
  const failed = new Promise<Error>((r) => (fail = r));

  // Group commit: readers hand over committed source transactions as they arrive; one loop commits all
  // that accumulated in one Postgres transaction, then confirms each reader's position. The buffer is
  // bounded: a full buffer makes the readers wait (and the replication stream pause).
  /** A source batch, where it leaves its source (checkpointed), and how to tell the source it is durable. */
  interface Pending {
    supplier: Supplier;
    mapping: CompiledMapping;
    batch: { messages: CdcBatch['messages']; snapshot: boolean; snapshotComplete?: boolean };
    /** Where the source resumes after this batch; undefined for corrections (nothing to checkpoint). */
    position: unknown;
    confirm: () => Promise<void>;
    /** Rows of `cellar.repair_requests` this batch carries, deleted in the commit that applies them. */
    repairIds?: number[];
    /** Corrections below the normalizer (see pipelines/reconcile/direct-repair.ts). */
    observations?: StockObservation[];
  }
  const buffer: Pending[] = [];
  let buffered = 0;
  let stopping = false;
  let wake: (() => void) | undefined;
  let space: Array<() => void> = [];
  const snapshots = new Map<string, SnapshotState>(); // what each reader owes, as of the batches prepared so far
  const generation = new Map<string, number>(); // bumped when a reader stops for a resnapshot: older readers' batches are dropped

  /** A group normalized and aggregated in memory, ready to commit (see the loop below). */
  interface Prepared {
    letters: DeadLetter[];
    /** Routes whose placement changed (see CachedRouteStore.placementChanges). */
    routesToSave: Route[];
    totals: ReturnType<RegionalAggregator['drain']>['totals'];
    changed: ReturnType<RegionalAggregator['drain']>['contributions'];
    stale: number;
    changes: number;
    /** Checkpoint rows as of this group (taken now: the next group may already finish a snapshot). */
    checkpoints: Array<[string, EmbeddedCheckpoint]>;
    confirms: Array<() => Promise<void>>;
    repairIds: number[];
    finished: number[]; // resnapshot requests whose snapshot this group completes
    holds: HeldMark[];
    releases: Array<{ contributorId: string; version: string }>;
  }

  const prepareGroup = async (taken: Pending[]): Promise<Prepared> => {
    const letters: DeadLetter[] = [];
    const aggregate = (list: StockObservation[]) => {
      for (const o of list) {
        const outcome = aggregator.apply(o);
        if (outcome === 'applied' || outcome === 'stale') continue;
        letters.push({ stage: 'aggregator', reason: outcome, message: aggregator.refusalMessage(o, outcome), supplierId: o.supplierId, topic: null, partition: null, offset: null, sourcePosition: o.sourceVersion, key: null, value: Buffer.from(JSON.stringify(o)), tsMs: Date.now(), sourceTable: null });
      }
    };
    const allRoutes: Route[] = [];
    const holds: Prepared['holds'] = [];
    const releases: Prepared['releases'] = [];
    const finished: number[] = [];
    let stale = 0;
    let changes = 0;
    const bySupplier = groupBy(taken, (p) => p.supplier.id);
    for (const group of bySupplier.values()) {
      const { supplier, mapping } = group[0]!;
      const byTable = new Map<string, Array<{ m: CdcBatch['messages'][number]; at: string }>>();
      for (const p of group) {
        if (p.observations) aggregate(p.observations);
        changes += p.batch.messages.length;
        const at = JSON.stringify(p.position ?? 'reconciliation');
        for (const m of p.batch.messages) {
          const table = m.topic.slice(supplier.topicPrefix.length + 1);
          const item = { m, at };
          const list = byTable.get(table);
          if (list) list.push(item);
          else byTable.set(table, [item]);
        }
        if (!p.repairIds) finished.push(...afterBatch(snapshots, supplier.id, p.batch));
      }
      for (const [table, msgs] of byTable) {
        const res = await normalizeBatch(
          msgs.map(({ m, at }) => {
            // Native readers' messages decode themselves; corrections from the queue are JSON.
            const change = m instanceof DebeziumJsonMessage ? m.change() : undefined;
            if (change) return { key: null, value: null, change, ref: { m, at } };
            return { key: m.key === null ? null : Buffer.from(m.key), value: Buffer.from(m.value), ref: { m, at } };
          }),
          { supplierId: supplier.id, mapping, table, keyColumns: supplier.source.tables.find((t) => t.name === table)?.key },
          { routes: (ids) => routes.get(ids), liveOfTable: (sid, t) => routes.liveOfTable(sid, t), settle: () => committing, retry, flushPins: () => inputs.flushPins(), onDefect: (err) => log.error({ err }, 'unexpected error on one record; dead-lettered') },
        );
        aggregate(res.observations);
        allRoutes.push(...res.routes);
        const h = held.track(res.holds, res.releases);
        holds.push(...h.holds);
        releases.push(...h.releases);
        stale += res.stale;
        for (const r of res.rejected) {
          letters.push({ stage: 'normalizer', reason: r.reason, message: r.message, supplierId: supplier.id, topic: null, partition: null, offset: null, sourcePosition: r.position ?? r.ref.at, key: r.ref.m.key === null ? null : Buffer.from(r.ref.m.key), value: Buffer.from(r.ref.m.value), tsMs: Date.now(), sourceTable: table });
        }
      }
    }
    const { totals, contributions: changed } = aggregator.drain(Date.now());
    // Only placements that changed are written (see placementChanges); the next group is prepared while
    // this one commits, so it must see these routes already.
    const routesToSave = routes.placementChanges(allRoutes);
    routes.remember(allRoutes);
    const checkpoints: Prepared['checkpoints'] = [];
    const confirms: Prepared['confirms'] = [];
    for (const group of bySupplier.values()) {
      const last = group.filter((p) => p.position !== undefined).at(-1);
      if (!last) continue;
      checkpoints.push([last.supplier.id, { kind: last.supplier.source.kind, position: last.position, ...snapshotStateOf(snapshots.get(last.supplier.id)) }]);
      confirms.push(last.confirm);
    }
    // Stable across retries of the commit, so letters of a commit whose outcome was unknown are written once.
    const group = randomUUID();
    letters.forEach((l, i) => (l.dedupeKey = `${group}:${i}`));
    return { letters, routesToSave, totals, changed, stale, changes, checkpoints, confirms, repairIds: taken.flatMap((p) => p.repairIds ?? []), holds, releases, finished };
  };

  const commitGroup = async (g: Prepared) => {
    const { letters, totals, stale, changes } = g;
    await retry('committing batch', () =>
      inTransaction(pool, 'committing embedded batch', async (tx) => {
        await lease.fence(tx);
        await routes.save(g.routesToSave, tx);
        await held.apply(g.holds, g.releases, tx);
        await contributions.save(g.changed, EMBEDDED_PARTITION, tx);
        await upsertRegionalStock(tx, totals);
        await insertDeadLetters(tx, letters);
        await finishResnapshotRequests(tx, g.finished);
        if (g.repairIds.length) await query(tx, 'consuming corrections', 'DELETE FROM cellar.repair_requests WHERE id = ANY($1)', [g.repairIds]);
        for (const [sourceId, checkpoint] of g.checkpoints) await writeCheckpoint(tx, sourceId, checkpoint);
      }),
    );
    const res = await retry('writing Redis', () => redisSink.writeBatch(totals));
    if (res.reset) await rebuild(); // Redis lost its data: Postgres (just committed) is complete
    for (const confirm of g.confirms) await confirm();
    for (const id of g.repairIds) queuedRepairs.delete(id);
    metrics.eventsIn.inc({ stage: 'embedded' }, changes);
    metrics.eventsOut.inc({ stage: 'embedded' }, totals.length);
    if (stale) metrics.staleEvents.inc({ stage: 'embedded' }, stale);
    for (const l of letters) metrics.deadLetters.inc({ stage: l.stage, reason: l.reason });
    if (letters.length) {
      log.warn({ deadLetters: letters.length, reasons: [...new Set(letters.map((l) => l.reason))], suppliers: [...new Set(letters.map((l) => l.supplierId))], first: letters[0]!.message }, 'dead-lettered records (cellar dlq list)');
    }
    const now = Date.now();
    for (const t of totals) if (t.sourceTsMs > 0) metrics.freshness.observe({ sink: 'embedded' }, Math.max(0, now - t.sourceTsMs) / 1000);
  };

  // Two groups in flight: the next group is normalized and aggregated in memory while the previous one
  // commits; commits stay in order. Any failure after retries stops the runtime: its memory is then ahead
  // of Postgres, and a restart restores from Postgres and resumes at the checkpoints.
  const stopOn = (err: unknown) => {
    fatal ??= err instanceof Error ? err : new Error(String(err));
    log.error({ err: fatal }, 'embedded batch failed');
    fail(fatal);
  };
  void lease.lost.then(stopOn);
  /** The commit of the previous group, in flight while the next one is prepared (see the loop). */
  let committing: Promise<void> = Promise.resolve();
  const groups = { taken: 0, committing: 0 }; // groups taken from the buffer, and how many of them are committing (or done)
  const loop = (async () => {
    while (!fatal) {
      if (!buffer.length) {
        if (stopping) break;
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      const taken = buffer.splice(0);
      groups.taken++;
      buffered = 0;
      for (const r of space.splice(0)) r();
      let prepared: Prepared;
      try {
        prepared = await prepareGroup(taken);
      } catch (err) {
        stopOn(err);
        break;
      }
      await committing;
      if (fatal) break;
      committing = commitGroup(prepared).catch(stopOn);
      groups.committing = groups.taken;
    }
    await committing;
  })();

  const MAX_BUFFERED = 50_000;
  const mappings = new Map<string, { supplier: Supplier; mapping: CompiledMapping }>();

  /**
   * Starts a supplier's reader from where Cellar's commits left it (the slot's confirmed position, or the
   * checkpointed binlog position), and starts it again, with backoff, when its stream stops on an error
   * (a restarted or unreachable supplier database): changes read but not yet committed are read again,
   * and the version guards make the repeats harmless.
   */
  const startReader = async (supplier: Supplier, mapping: CompiledMapping): Promise<void> => {
    const gen = generation.get(supplier.id) ?? 0;
    const accept = async (p: Omit<Pending, 'supplier' | 'mapping'>) => {
      if (fatal) throw fatal;
      if ((generation.get(supplier.id) ?? 0) !== gen) return;
      buffer.push({ supplier, mapping, ...p });
      buffered += p.batch.messages.length;
      wake?.();
      while (buffered > MAX_BUFFERED && !fatal) await new Promise<void>((r) => space.push(r));
    };
    const tables = supplier.source.tables.map((t) => t.name);
    const source = await retry(`starting the reader of ${supplier.id}`, async () => {
      try {
        if (supplier.source.kind === 'postgres') {
          const pgSource = createPostgresCdcSource({ url: postgresUrl(supplier), topicPrefix: supplier.topicPrefix, tables }, log);
          // A batch of a reader that has since stopped cannot be acknowledged through it: its successor
          // resumes from the slot's confirmed position and acknowledges what follows.
          await pgSource.start((b) => accept({ batch: b, position: b.lsn, confirm: () => pgSource.confirm(b.lsn).catch(() => undefined) }), { ...snapshots.get(supplier.id), explicitConfirm: true, evictSlotHolder: true });
          return pgSource;
        }
        // The binlog position in the checkpoint is where a restart resumes: nothing to confirm at the source.
        const saved = await readCheckpoint<EmbeddedCheckpoint>(pool, supplier.id);
        const mySource = createMysqlCdcSource({ url: mysqlUrl(supplier), topicPrefix: supplier.topicPrefix, tables }, log);
        const resume = snapshots.get(supplier.id)?.snapshotDone && saved?.position ? { position: saved.position as BinlogPosition, snapshotTables: snapshots.get(supplier.id)?.snapshotTables } : {};
        await mySource.start((b) => accept({ batch: b, position: b.position, confirm: async () => undefined }), resume);
        return mySource;
      } catch (err) {
        throw err instanceof CellarError ? err : new CellarError('cdc_start', `${supplier.id}: ${(err as Error).message}`, { retriable: true, cause: err });
      }
    });
    if ((generation.get(supplier.id) ?? 0) !== gen) return void (await source.stop()); // superseded while starting
    readers.set(supplier.id, source);
    source.done.catch(async (err: unknown) => {
      if (readers.get(supplier.id) === source) readers.delete(supplier.id);
      await source.stop().catch(() => undefined);
      if (stopping || fatal) return;
      metrics.readerRestarts.inc({ supplier: supplier.id });
      log.error({ supplier: supplier.id, err: (err as Error).message }, 'reader stopped; starting it again from the last commit');
      await sleep(READER_RESTART_MS);
      if (!stopping && !fatal && (generation.get(supplier.id) ?? 0) === gen) await startReader(supplier, mapping).catch((e: unknown) => stopOn(e));
    });
  };

  for (const supplier of suppliers) {
    const kind = supplier.source.kind;
    if (kind !== 'postgres' && kind !== 'mysql' && kind !== 'mariadb') {
      skipped.push({ supplier: supplier.id, reason: `no native reader for source kind ${kind}; capture it with Debezium and the Kafka runtime` });
      continue;
    }
    const mapping = inputs.compile(supplier);
    mappings.set(supplier.id, { supplier, mapping });
    snapshots.set(supplier.id, snapshotStateOf(await readCheckpoint<EmbeddedCheckpoint>(pool, supplier.id)));
    await startReader(supplier, mapping);
  }
  // Corrections from reconciliation (cellar.repair_requests) take the same path as the readers' changes.
  const queuedRepairs = new Set<number>();
  const pollRepairs = async () => {
    const { rows } = await query<{ id: string; supplier_id: string; source_table: string | null; key: string | null; value: string | null; observation: StockObservation | null }>(pool, 'reading corrections',
      'SELECT id, supplier_id, source_table, key, value, observation FROM cellar.repair_requests ORDER BY id LIMIT 5000');
    const bySupplier = groupBy(rows.filter((r) => !queuedRepairs.has(Number(r.id)) && mappings.has(r.supplier_id)), (r) => r.supplier_id);
    for (const [id, list] of bySupplier) {
      const { supplier, mapping } = mappings.get(id)!;
      for (const r of list) queuedRepairs.add(Number(r.id));
      buffer.push({
        supplier, mapping, position: undefined, confirm: async () => undefined, repairIds: list.map((r) => Number(r.id)),
        observations: list.flatMap((r) => (r.observation ? [r.observation] : [])),
        batch: { snapshot: false, messages: list.flatMap((r) => (r.observation ? [] : [{ topic: `${supplier.topicPrefix}.${r.source_table}`, key: r.key, value: r.value! }])) },
      });
      wake?.();
    }
  };
  // `cellar resnapshot`: the reader stops, what it handed over commits, and it starts again owing what was asked.
  const resnapshots = pollResnapshotRequests({ pool, log, runtime: 'embedded', suppliers: [...mappings.keys()], sourceId: (id) => id, fence: (tx) => lease.fence(tx),
    pause: async (id) => {
      generation.set(id, (generation.get(id) ?? 0) + 1);
      await readers.get(id)?.stop();
      // The group holding the last batch it handed over (the next one taken, if any wait), then its commit.
      const last = groups.taken + (buffer.length ? 1 : 0);
      while (groups.committing < last && !fatal) await sleep(10);
      await committing.then(() => { if (fatal) throw fatal; });
    },
    resume: (id, state) => (state && snapshots.set(id, state), startReader(mappings.get(id)!.supplier, mappings.get(id)!.mapping).catch(stopOn)),
  });
  const repairTimer = setInterval(() => {
    if (stopping || fatal) return;
    pollRepairs().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'reading corrections failed; retrying'));
  }, REPAIR_POLL_MS);
  repairTimer.unref();
  ready = true;
  waitingFor = undefined;
  for (const s of skipped) log.warn(s, 'supplier not captured by the embedded runtime');
  return {
    captured: suppliers.filter((s) => !skipped.some((k) => k.supplier === s.id)).map((s) => s.id),
    skipped,
    isReady: () => ready && !fatal,
    notReadyReason: () => (fatal ? `stopped: ${fatal.message}` : ready ? undefined : waitingFor),
    failed,
    stop: async () => {
      clearInterval(repairTimer);
      await resnapshots.stop();
      stopRefresh();
      for (const s of readers.values()) await s.stop();
      stopping = true;
      wake?.();
      await loop;
      await redisSink.close();
      redis.disconnect();
      await stopDeployment(true);
      await lease.release();
      await pool.end().catch(() => undefined);
    },
  };
}

