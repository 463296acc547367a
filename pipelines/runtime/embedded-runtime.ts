import { lazyStockEventTopic } from '../kafka/stock-events.js';
import { startStockRecords } from './stock-records.js';
import { CommitAhead } from './commit-ahead.js';
import { createRedis } from '../core/redis.js';
import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import type { StockObservation } from '../../schemas/records.js';
import { createPgPool, query } from '../core/pg.js';
import { applyHeapHeadroom } from '../core/process-env.js';
import { migrate } from '../state/migrate.js';
import { RedisFollower } from '../../sinks/redis/follower.js';
import { createRedisSnapshotSink } from '../../sinks/redis/sink.js';
import { RegionalAggregator } from '../aggregate/aggregator.js';
import { ContributionStore } from '../state/contributions.js';
import { groupBy } from '../core/collections.js';
import { dependencyAt, type RuntimeConfig } from '../core/config.js';
import { redactUrl, type Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { retryInPlace } from '../core/retry.js';
import { CachedHeldStore } from '../state/held.js';
import { SourceStatusBoard } from '../state/source-status.js';
import { watchSourceHealth } from './source-health.js';
import { diffSuppliers, NO_RELOAD, readConfiguration, watchReloadRequests } from './reload.js';
import type { ReloadOutcome } from '../state/control.js';
import type { CompiledMapping } from '../normalize/mapping.js';
import { CachedRouteStore } from '../state/routes.js';
import { MappingInputsStore } from '../normalize/sku-map-store.js';
import { readCheckpoint, type StoredCheckpoint } from '../state/checkpoints.js';
import { deploymentId, registerDeployment } from '../state/deployments.js';
import { prepareGroup, writeGroup, type GroupState, type Pending, type Prepared } from './embedded-group.js';
import { GroupCommitLoop } from './group-commit.js';
import { ReadAhead } from './read-ahead.js';
import { loadFeedRows } from '../state/feed-rows.js';
import { readFeedInbox } from '../state/feed-inbox.js';
import { RuntimeLease } from './lease.js';
import { ReaderSupervisor } from './reader-supervisor.js';
import { hasNativeSource } from '../../connectors/native-source.js';
import { pollResnapshotRequests, snapshotStateOf, type SnapshotState } from './resnapshot.js';

export { EMBEDDED_PARTITION } from './embedded-group.js';

/** How often the embedded runtime looks for corrections queued by reconciliation, ms. */
const REPAIR_POLL_MS = 1_000;
/** Per-command timeout of the client that rebuilds Redis from Postgres, so a frozen Redis fails the attempt. */
const REBUILD_COMMAND_TIMEOUT_MS = 15_000;

/** A running embedded pipeline. */
export interface EmbeddedRuntime {
  /** Suppliers captured natively, and those skipped with the reason. */
  captured: string[];
  skipped: Array<{ supplier: string; reason: string }>;
  isReady(): boolean;
  /** While not ready: what it is retrying (a store or reader it cannot reach) or `Redis behind: …`, for `/readyz`. */
  notReadyReason(): string | undefined;
  /** Why Redis is behind Postgres (unreachable, or being rebuilt from it), or `undefined` while it is current. */
  redisBehind(): string | undefined;
  /** Reads the supplier files and SKU maps again and applies them (see `reload` in startEmbedded). */
  reload(): Promise<ReloadOutcome>;
  /** Settles with the error that made the runtime stop working (the process should exit and restart). */
  failed: Promise<Error>;
  /** Stops the readers, finishes the batch in progress, closes connections. */
  stop(): Promise<void>;
}

/**
 * `cellar run embedded`: every Postgres supplier's native reader → normalize → aggregate → one Postgres
 * transaction (routes, contributions, totals, dead letters, checkpoint) → Redis, in one process, with
 * the same stage code as the Kafka runtime. The reader acknowledges a source position once that
 * transaction committed, so a crash anywhere replays changes the version guards turn into no-ops.
 * Redis, a cache of Postgres, is written after the acknowledgement and never holds up commits: it is
 * rebuilt from Postgres at start, after it lost its data, and once it answers again after an outage.
 */
export async function startEmbedded(cfg: RuntimeConfig, log: Logger, metrics: CellarMetrics): Promise<EmbeddedRuntime> {
  applyHeapHeadroom();
  const startedAt = new Date();
  const suppliers = loadRegistry(cfg.suppliersDir);
  // Every session of this runtime carries one tag, so that a takeover (see RuntimeLease) can end them all.
  const sessionTag = RuntimeLease.sessionTag('embedded');
  // Two for group commits (the one committing and the next one opened ahead), one reading ahead of the
  // next group (ReadAhead), the rest for readers and timers.
  const pool = createPgPool(cfg.pgUrl, { max: 7, applicationName: sessionTag });
  const retry = retryInPlace(log, {
    describe: (what) => dependencyAt(cfg, what),
    onRetry: (what, err, attempt) => {
      ready = false;
      waitingFor = `${what}: ${(err as Error).message} (attempt ${attempt})`;
    },
    onSuccess: () => ((ready = true), (waitingFor = undefined)),
  });
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
  const redis = createRedis(cfg.redisUrl, { maxRetriesPerRequest: 1, commandTimeout: REBUILD_COMMAND_TIMEOUT_MS });
  redis.on('error', () => undefined);
  metrics.redisStale.set(1);
  const redisFollower = new RedisFollower({
    sink: createRedisSnapshotSink({ url: cfg.redisUrl, ttlSeconds: cfg.redisTtlSeconds }), pool, redis, address: redactUrl(cfg.redisUrl), log,
    onChange: (behind) => metrics.redisStale.set(behind ? 1 : 0),
  });
  // Unreachable, Redis starts behind and is rebuilt once it answers; refused for good (e.g. a wrong password), the start fails.
  await redisFollower.start().catch(async (err: unknown) => {
    await redisFollower.stop().catch(() => undefined);
    await stopDeployment(true).catch(() => undefined);
    await lease.release().catch(() => undefined);
    await pool.end().catch(() => undefined);
    throw err;
  });

  // Started once nothing above can fail the start (its follower would outlive a refused start).
  const eventTopic = cfg.stockEventsKafka ? lazyStockEventTopic(cfg, log) : undefined;
  const records = await startStockRecords({ pool, log, retentionDays: cfg.historyRetentionDays, retry, webhooks: { cfg, metrics }, ...(eventTopic ? { topic: eventTopic } : {}) });
  const routes = new CachedRouteStore(pool, cfg.stateCacheContributors);
  const held = new CachedHeldStore(pool);
  await retry('reading held contributors', () => held.load(suppliers.map((s) => s.id)));
  const contributions = new ContributionStore(pool, cfg.stateWholeKeyContributors);
  // Aggregate state is loaded per key when a change needs it (holdKeys), so a restart reads nothing up front.
  const aggregator = new RegionalAggregator({ history: cfg.historyRetentionDays > 0 });
  const inputs = new MappingInputsStore(pool, suppliers, { cachedSizes: cfg.stateCacheContributors });
  await retry('reading cellar.sku_map and cellar.catalog', () => inputs.load());
  const stopRefresh = inputs.refreshEvery(cfg.skuMapRefreshMs, log);
  const skipped: EmbeddedRuntime['skipped'] = [];
  let stopping = false;
  let fail!: (err: Error) => void;
  const failed = new Promise<Error>((r) => (fail = r));
  const snapshots = new Map<string, SnapshotState>();

  const readAhead = new ReadAhead({
    routes, contributions, aggregator, log,
    onTake: (used, missed) => {
      if (used) metrics.stateKeysLoaded.inc({ from: 'read_ahead' }, used);
      if (missed) metrics.stateKeysLoaded.inc({ from: 'group' }, missed);
    },
  });
  const state: GroupState = { aggregator, routes, held, contributions, inputs, snapshots, retry, settled: () => loop.settled(), log, maxContributions: cfg.stateCacheContributors, thresholds: records.thresholds, readAhead, prepare: cfg.pgPreparedStatements };
  /**
   * The Redis writes and metrics of committed groups, in commit order, behind the Postgres commits: the next
   * group's transaction runs while the previous group's totals go to Redis (Postgres holds them already).
   */
  let redisTail: Promise<void> = Promise.resolve();
  const commits = new CommitAhead(pool, retry, (path) => metrics.groupCommits.inc({ path }));
  const commitGroup = async (g: Prepared) => {
    // Its transaction opened ahead (id taken, history written), if that is not done yet: never rejects.
    const began = performance.now();
    await g.ahead;
    const opened = performance.now();
    metrics.groupPhase.observe({ phase: 'history' }, (opened - began) / 1000);
    await commits.commit(g.ahead, async (tx, historyWritten) => {
      await writeGroup(state, g, tx, historyWritten, lease);
    });
    // Postgres holds the committed state: sources are confirmed before Redis, which may be down or behind.
    for (const confirm of g.confirms) await confirm();
    for (const id of g.repairIds) queuedRepairs.delete(id);
    metrics.groupPhase.observe({ phase: 'postgres' }, (performance.now() - opened) / 1000);
    const previous = redisTail;
    redisTail = previous.then(() => afterCommit(g)).catch((err: unknown) => loop.stopOn(err));
    // At most one group's Redis write waits behind the next commit.
    await previous;
  };
  /** Redis and the metrics of a committed group (never throws: the follower falls behind instead). */
  const afterCommit = async (g: Prepared) => {
    const started = performance.now();
    await redisFollower.write(g.totals);
    metrics.groupPhase.observe({ phase: 'redis' }, (performance.now() - started) / 1000);
    metrics.groupChanges.observe(g.changes);
    // The same stage metrics as the Kafka runtime's workers, and the runtime's own throughput.
    metrics.recordStage('source', { letters: g.letters.source });
    metrics.recordStage('normalizer', { stale: g.stale.normalizer, letters: g.letters.normalizer });
    metrics.recordStage('aggregator', { stale: g.stale.aggregator, letters: g.letters.aggregator });
    metrics.recordStage('embedded', { in: g.changes, out: g.totals.length });
    const letters = [...g.letters.source, ...g.letters.normalizer, ...g.letters.aggregator];
    if (letters.length) {
      log.warn({ deadLetters: letters.length, reasons: [...new Set(letters.map((l) => l.reason))], suppliers: [...new Set(letters.map((l) => l.supplierId))], first: letters[0]!.message }, 'dead-lettered records (cellar dlq list)');
    }
    const now = Date.now();
    for (const t of g.totals) if (t.sourceTsMs > 0) metrics.freshness.observe({ sink: 'embedded' }, Math.max(0, now - t.sourceTsMs) / 1000);
  };
  const loop = new GroupCommitLoop<Pending, Prepared>(
    async (taken) => {
      await readAhead.taking(taken);
      const g = await prepareGroup(state, taken);
      g.ahead = commits.ahead(g.history);
      return g;
    },
    commitGroup,
    (err) => {
      log.error({ err }, 'embedded batch failed');
      fail(err);
    },
    undefined,
    (phase, seconds) => metrics.groupPhase.observe({ phase }, seconds),
  );
  void lease.lost.then(loop.stopOn);
  const ended = () => stopping || loop.failed !== undefined;
  const board = new SourceStatusBoard('embedded');
  const readers = new ReaderSupervisor({
    log, metrics, retry, snapshots, ended, onFatal: loop.stopOn, board,
    accept: (p, size) => {
      readAhead.offer(p);
      return loop.push(p, size);
    },
    readCheckpoint: (id) => readCheckpoint<StoredCheckpoint>(pool, id),
    loadFeedRows: (id) => retry('reading the rows of the last feed file', () => loadFeedRows(pool, id)),
    readFeedInbox: (id, after, limit) => retry('reading pushed requests', () => readFeedInbox(pool, id, after, limit)),
  });

  const mappings = new Map<string, { supplier: Supplier; mapping: CompiledMapping }>();
  for (const supplier of suppliers) {
    if (!hasNativeSource(supplier)) {
      skipped.push({ supplier: supplier.id, reason: `no native reader for source kind ${supplier.source.kind}; capture it with Debezium and the Kafka runtime` });
      continue;
    }
    const mapping = inputs.compile(supplier);
    mappings.set(supplier.id, { supplier, mapping });
    snapshots.set(supplier.id, snapshotStateOf(await readCheckpoint<StoredCheckpoint>(pool, supplier.id)));
    // In the background: a supplier whose database is down is retried (and reported) without holding up the others.
    void readers.start(supplier, mapping).catch(loop.stopOn);
  }
  let running = [...mappings.values()].map((m) => m.supplier);
  const health = watchSourceHealth({ pool, board, metrics, log, suppliers: () => running, checkpoint: (id) => readCheckpoint<StoredCheckpoint>(pool, id) });

  /**
   * Reads the supplier files and `cellar.sku_map` again (SIGHUP, `cellar reload`): a registry with any
   * problem is rejected whole and the running one kept; otherwise a new supplier starts capturing, a removed
   * one stops (its slot is kept), and a changed one's reader starts again with its new file, from its slot or
   * checkpoint (repeats are harmless). Dead letters replayed afterwards use the new mapping.
   */
  let reloading: Promise<ReloadOutcome> = Promise.resolve(NO_RELOAD);
  const reload = (): Promise<ReloadOutcome> => (reloading = reloading.catch(() => NO_RELOAD).then(async () => {
    const read = await readConfiguration(cfg.suppliersDir, inputs, log, (next) => new Map(next.filter(hasNativeSource).map((s) => [s.id, inputs.compile(s)])));
    if ('rejected' in read) return read.rejected;
    const { next, prepared: compiled } = read;
    const diff = diffSuppliers(running, next.filter(hasNativeSource));
    for (const s of [...diff.removed, ...diff.changed]) await readers.pause(s.id);
    for (const s of diff.removed) {
      mappings.delete(s.id);
      board.set(s.id, 'stopped', 'removed from the supplier files');
    }
    for (const s of [...diff.added, ...diff.changed]) {
      mappings.set(s.id, { supplier: s, mapping: compiled.get(s.id)! });
      if (!snapshots.has(s.id)) snapshots.set(s.id, snapshotStateOf(await readCheckpoint<StoredCheckpoint>(pool, s.id)));
      void readers.start(s, compiled.get(s.id)!).catch(loop.stopOn);
    }
    // Unchanged suppliers keep their reader and mapping: its SKU map and catalog objects were refreshed in place.
    running = next.filter(hasNativeSource);
    const skippedNow = next.filter((s) => !hasNativeSource(s)).map((s) => s.id);
    const outcome = { ok: true, added: diff.added.map((s) => s.id), removed: diff.removed.map((s) => s.id), changed: diff.changed.map((s) => s.id), skipped: skippedNow };
    log.info(outcome, 'configuration reloaded');
    return outcome;
  }));
  const stopReloads = watchReloadRequests({ pool, role: 'embedded', reload, log, startedAt, ended });
  // Corrections from reconciliation (cellar.repair_requests) take the same path as the readers' changes.
  const queuedRepairs = new Set<number>();
  const pollRepairs = async () => {
    const { rows } = await query<{ id: string; supplier_id: string; source_table: string | null; key: string | null; value: string | null; observation: StockObservation | null; replay_of: string | null }>(pool, 'reading corrections',
      'SELECT id, supplier_id, source_table, key, value, observation, replay_of FROM cellar.repair_requests ORDER BY id LIMIT 5000');
    const bySupplier = groupBy(rows.filter((r) => !queuedRepairs.has(Number(r.id)) && mappings.has(r.supplier_id)), (r) => r.supplier_id);
    for (const [id, list] of bySupplier) {
      const { supplier, mapping } = mappings.get(id)!;
      for (const r of list) queuedRepairs.add(Number(r.id));
      loop.offer({
        supplier, mapping, checkpoint: undefined, confirm: async () => undefined, repairIds: list.map((r) => Number(r.id)),
        observations: list.flatMap((r) => (r.observation ? [r.observation] : [])),
        batch: { snapshot: false, changes: list.flatMap((r) => (r.observation ? [] : [{ table: r.source_table!, key: r.key, value: r.value!, ...(r.replay_of ? { replayOf: Number(r.replay_of) } : {}) }])) },
      });
    }
  };
  // `cellar resnapshot`: the reader stops, what it handed over commits, and it starts again owing what was asked.
  const resnapshots = pollResnapshotRequests({ pool, log, runtime: 'embedded', suppliers: () => [...mappings.keys()], sourceId: (id) => id, fence: (tx) => lease.fence(tx),
    pause: async (id) => {
      await readers.pause(id);
      await loop.drain();
    },
    resume: (id, owed) => (owed && snapshots.set(id, owed), readers.start(mappings.get(id)!.supplier, mappings.get(id)!.mapping).catch(loop.stopOn)),
  });
  const repairTimer = setInterval(() => {
    if (ended()) return;
    pollRepairs().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'reading corrections failed; retrying'));
  }, REPAIR_POLL_MS);
  repairTimer.unref();
  ready = true;
  waitingFor = undefined;
  for (const s of skipped) log.warn(s, 'supplier not captured by the embedded runtime');
  return {
    captured: suppliers.filter((s) => !skipped.some((k) => k.supplier === s.id)).map((s) => s.id),
    skipped,
    isReady: () => ready && !loop.failed && !redisFollower.behind,
    notReadyReason: () => (loop.failed ? `stopped: ${loop.failed.message}` : !ready ? waitingFor : redisFollower.behind && `Redis behind: ${redisFollower.behind}`),
    redisBehind: () => redisFollower.behind,
    failed,
    reload,
    stop: async () => {
      clearInterval(repairTimer);
      await records.stop();
      await eventTopic?.close();
      await stopReloads();
      health.stop();
      await resnapshots.stop();
      stopRefresh();
      await readers.stopAll();
      await board.flush(pool).catch(() => undefined);
      stopping = true;
      await loop.stop();
      await readAhead.idle();
      await commits.abandonAll();
      await redisTail;
      await redisFollower.stop();
      await stopDeployment(true);
      await lease.release();
      await pool.end().catch(() => undefined);
    },
  };
}

