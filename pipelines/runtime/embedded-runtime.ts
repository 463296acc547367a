import { Redis } from 'ioredis';
import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import type { StockObservation } from '../../schemas/records.js';
import { createPgPool, inTransaction, query } from '../core/pg.js';
import { migrate } from '../state/migrate.js';
import { rebuildRedisFromPostgres } from '../../sinks/redis/rebuild.js';
import { createRedisSnapshotSink } from '../../sinks/redis/sink.js';
import { RegionalAggregator } from '../aggregate/aggregator.js';
import { ContributionStore } from '../state/contributions.js';
import { groupBy } from '../core/collections.js';
import type { RuntimeConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { retryInPlace } from '../core/retry.js';
import { CachedHeldStore } from '../state/held.js';
import type { CompiledMapping } from '../normalize/mapping.js';
import { CachedRouteStore } from '../state/routes.js';
import { MappingInputsStore } from '../normalize/sku-map-store.js';
import { readCheckpoint, type StoredCheckpoint } from '../state/checkpoints.js';
import { deploymentId, registerDeployment } from '../state/deployments.js';
import { EMBEDDED_PARTITION, prepareGroup, writeGroup, type GroupState, type Pending, type Prepared } from './embedded-group.js';
import { GroupCommitLoop } from './group-commit.js';
import { RuntimeLease } from './lease.js';
import { ReaderSupervisor } from './reader-supervisor.js';
import { hasNativeSource } from '../../connectors/native-source.js';
import { pollResnapshotRequests, snapshotStateOf, type SnapshotState } from './resnapshot.js';

export { EMBEDDED_PARTITION } from './embedded-group.js';

/** How often the embedded runtime looks for corrections queued by reconciliation, ms. */
const REPAIR_POLL_MS = 1_000;

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
  const retry = retryInPlace(log, {
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
  const skipped: EmbeddedRuntime['skipped'] = [];
  let stopping = false;
  let fail!: (err: Error) => void;
  const failed = new Promise<Error>((r) => (fail = r));
  const snapshots = new Map<string, SnapshotState>();

  const state: GroupState = { aggregator, routes, held, contributions, inputs, snapshots, retry, settled: () => loop.settled(), log };
  const commitGroup = async (g: Prepared) => {
    await retry('committing batch', () =>
      inTransaction(pool, 'committing embedded batch', async (tx) => {
        await lease.fence(tx);
        await writeGroup(state, g, tx);
      }),
    );
    const res = await retry('writing Redis', () => redisSink.writeBatch(g.totals));
    if (res.reset) await rebuild(); // Redis lost its data: Postgres (just committed) is complete
    for (const confirm of g.confirms) await confirm();
    for (const id of g.repairIds) queuedRepairs.delete(id);
    // The same stage metrics as the Kafka runtime's workers, and the runtime's own throughput.
    metrics.recordStage('normalizer', { stale: g.stale.normalizer, letters: g.letters.normalizer });
    metrics.recordStage('aggregator', { stale: g.stale.aggregator, letters: g.letters.aggregator });
    metrics.recordStage('embedded', { in: g.changes, out: g.totals.length });
    const letters = [...g.letters.normalizer, ...g.letters.aggregator];
    if (letters.length) {
      log.warn({ deadLetters: letters.length, reasons: [...new Set(letters.map((l) => l.reason))], suppliers: [...new Set(letters.map((l) => l.supplierId))], first: letters[0]!.message }, 'dead-lettered records (cellar dlq list)');
    }
    const now = Date.now();
    for (const t of g.totals) if (t.sourceTsMs > 0) metrics.freshness.observe({ sink: 'embedded' }, Math.max(0, now - t.sourceTsMs) / 1000);
  };
  const loop = new GroupCommitLoop<Pending, Prepared>((taken) => prepareGroup(state, taken), commitGroup, (err) => {
    log.error({ err }, 'embedded batch failed');
    fail(err);
  });
  void lease.lost.then(loop.stopOn);
  const ended = () => stopping || loop.failed !== undefined;
  const readers = new ReaderSupervisor({
    log, metrics, retry, snapshots, ended, onFatal: loop.stopOn,
    accept: (p, size) => loop.push(p, size),
    readCheckpoint: (id) => readCheckpoint<StoredCheckpoint>(pool, id),
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
    await readers.start(supplier, mapping);
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
      loop.offer({
        supplier, mapping, checkpoint: undefined, confirm: async () => undefined, repairIds: list.map((r) => Number(r.id)),
        observations: list.flatMap((r) => (r.observation ? [r.observation] : [])),
        batch: { snapshot: false, changes: list.flatMap((r) => (r.observation ? [] : [{ table: r.source_table!, key: r.key, value: r.value! }])) },
      });
    }
  };
  // `cellar resnapshot`: the reader stops, what it handed over commits, and it starts again owing what was asked.
  const resnapshots = pollResnapshotRequests({ pool, log, runtime: 'embedded', suppliers: [...mappings.keys()], sourceId: (id) => id, fence: (tx) => lease.fence(tx),
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
    isReady: () => ready && !loop.failed,
    notReadyReason: () => (loop.failed ? `stopped: ${loop.failed.message}` : ready ? undefined : waitingFor),
    failed,
    stop: async () => {
      clearInterval(repairTimer);
      await resnapshots.stop();
      stopRefresh();
      await readers.stopAll();
      stopping = true;
      await loop.stop();
      await redisSink.close();
      redis.disconnect();
      await stopDeployment(true);
      await lease.release();
      await pool.end().catch(() => undefined);
    },
  };
}

