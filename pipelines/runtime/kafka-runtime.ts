import { WORKER_ROLES } from '../core/names.js';
import { stockEventPublisher } from '../kafka/stock-events.js';
import { startStockRecords } from './stock-records.js';
import type { Producer } from 'kafkajs';
import type pg from 'pg';
import { loadRegistry } from '../../connectors/registry/loader.js';
import type { ReloadOutcome } from '../state/control.js';
import { diffSuppliers, NO_RELOAD, readConfiguration, watchReloadRequests } from './reload.js';
import { createCodecs } from '../../schemas/registry.js';
import { createPgPool } from '../core/pg.js';
import { applyHeapHeadroom } from '../core/process-env.js';
import { createPostgresStockSink } from '../../sinks/postgres/sink.js';
import { createRedisSnapshotSink } from '../../sinks/redis/sink.js';
import type { StockSink } from '../../sinks/types.js';
import { ContributionStore } from '../state/contributions.js';
import { AggregatorHandler } from '../aggregate/worker.js';
import { dependencyAt, type RuntimeConfig } from '../core/config.js';
import { createLogger, type Logger } from '../core/logger.js';
import { withRetry, waitingLine } from '../core/retry.js';
import { CellarMetrics } from '../core/metrics.js';
import { startOpsServer } from '../core/http.js';
import { DeadLetterWriter } from '../dlq/writer.js';
import { connectProducer, createKafka, ensureTopics } from '../kafka/client.js';
import { coalescingProducer } from '../kafka/producer.js';
import { cellarTopics, groupId } from '../kafka/topics.js';
import { SupplierActivityBoard } from '../state/supplier-activity.js';
import { startConsumerWorker, type BatchHandler, type ConsumerWorker } from '../kafka/worker.js';
import { describeTopics, NormalizerHandler, rawTopics } from '../normalize/worker.js';
import { deploymentId, registerDeployment } from '../state/deployments.js';
import { RouteStore } from '../state/routes.js';
import { DebeziumAvroDecoder } from '../normalize/debezium-avro.js';
import { MappingInputsStore } from '../normalize/sku-map-store.js';
import { SinkHandler, watchStoreLoss } from '../sink/worker.js';

/** How often a normalizer adds what it received from each supplier to `cellar.supplier_activity`, ms. */
const ACTIVITY_FLUSH_MS = 5_000;

export { WORKER_ROLES };
export type WorkerRole = (typeof WORKER_ROLES)[number];

/** A started worker with what it holds, so it can be stopped cleanly. */
export interface RunningWorker {
  role: WorkerRole;
  worker: ConsumerWorker;
  metrics: CellarMetrics;
  /** Port of /metrics, /healthz, /readyz when CELLAR_HTTP_PORT is set. */
  httpPort?: number;
  /** The normalizer: reads the supplier files and SKU maps again and resubscribes (SIGHUP). */
  reload?: () => Promise<ReloadOutcome>;
  stop(): Promise<void>;
}

/**
 * Starts one worker of the Kafka runtime. Dependencies that are not reachable yet (Kafka, Postgres,
 * Redis, the Schema Registry) are waited for with backoff, so workers can start in any order.
 */
export async function startWorker(
  role: WorkerRole,
  cfg: RuntimeConfig,
  log: Logger = createLogger(role),
  metrics: CellarMetrics = new CellarMetrics(),
): Promise<RunningWorker> {
  applyHeapHeadroom();
  const topics = cellarTopics(cfg);
  const kafka = createKafka(cfg, log, role, {
    onOffsetReset: (r) => {
      metrics.offsetResets.inc({ group: r.groupId, topic: r.topic });
      log.error({ ...r }, `${r.topic}[${r.partition}]: the broker no longer has the next message for group ${r.groupId} (removed by retention before it was consumed): the consumer jumped ahead and those changes were skipped. Totals can be wrong until \`cellar reconcile --repair\` (or \`cellar resnapshot\`) corrects them; give the topic a longer retention`);
    },
  });
  const codecs = createCodecs(cfg.schemaRegistryUrl);
  const startedAt = new Date();
  const closers: Array<() => Promise<void>> = [];
  /** What start-up waits for now (`/readyz` says it from the first second). */
  let phase = 'configuration';
  let worker: ConsumerWorker | undefined;
  let conflict: string | undefined;
  let sinkHealthy: () => boolean = () => true;
  let live = true;
  const ops = cfg.httpPort >= 0
    ? await startOpsServer(cfg.httpPort, metrics, {
      live: () => live,
      ready: () => !!worker && !conflict && worker.isReady() && sinkHealthy(),
      reason: () => conflict ?? (!worker ? `starting: waiting for ${phase}` : worker.problem() ?? (sinkHealthy() ? undefined : 'the store is unavailable; retrying')),
    })
    : undefined;
  const wait = <T>(what: string, fn: () => Promise<T>) => {
    phase = what;
    return withRetry(fn, { minDelayMs: 250, maxDelayMs: 5_000, retries: 60, onRetry: (err, attempt, delayMs) => log.warn({ err: (err as Error).message, attempt }, waitingLine(dependencyAt(cfg, what), attempt, delayMs, err)) });
  };
  try {
    return await startRole();
  } catch (err) {
    live = false;
    await ops?.close();
    throw err;
  }

  async function startRole(): Promise<RunningWorker> {
    let producer: Producer | undefined;
    let pool: pg.Pool | undefined;
    const getProducer = async () => {
      // Concurrent partition batches' sends share produce requests (see SendCoalescer).
      producer ??= coalescingProducer(await wait('Kafka', () => connectProducer(kafka, cfg)), (sends) => {
        metrics.produceRequests.inc();
        metrics.produceSends.inc(sends);
      });
      return producer;
    };
    const getPool = () => (pool ??= createPgPool(cfg.pgUrl, { applicationName: `cellar-${role}` }));

    let handler: BatchHandler;
    let inputTopics: string[];
    let sink: StockSink | undefined;
    // Configuration problems fail at once, before waiting for any service.
    let suppliers = role === 'normalizer' ? loadRegistry(cfg.suppliersDir) : [];
    // Mappings read cellar.sku_map and the catalog of bottle sizes; both are re-read while running.
    const inputs = role === 'normalizer' ? new MappingInputsStore(getPool(), suppliers, { cachedSizes: cfg.stateCacheContributors }) : undefined;
    if (inputs) {
      await wait('Postgres (cellar.sku_map, cellar.catalog)', () => inputs.load());
      const stopRefresh = inputs.refreshEvery(cfg.skuMapRefreshMs, log);
      closers.push(async () => stopRefresh());
    }
    const raw = inputs ? rawTopics(suppliers, inputs) : [];
    await wait('Kafka topics', () => ensureTopics(kafka, cfg));
    // What the normalizer receives from each supplier, for `cellar status` (written every few seconds).
    const activity = role === 'normalizer' ? new SupplierActivityBoard() : undefined;
    if (activity) {
      const flush = () => activity.flush(getPool()).catch((err) => log.warn({ err: (err as Error).message }, 'supplier activity not written (kept for the next try)'));
      const timer = setInterval(() => void flush(), ACTIVITY_FLUSH_MS);
      timer.unref();
      closers.push(async () => {
        clearInterval(timer);
        await flush();
      });
    }
    if (role === 'normalizer') {
      inputTopics = raw.map((r) => r.topic);
      await wait('raw topics', () => ensureTopics(kafka, cfg, inputTopics));
      log.info({ topics: describeTopics(raw) }, 'normalizing raw topics');
      const dlq = new DeadLetterWriter(await getProducer(), codecs, topics.dlq, getPool());
      const h = new NormalizerHandler(raw, new RouteStore(getPool()), await getProducer(), codecs, topics.observations, dlq, log, metrics, new DebeziumAvroDecoder(cfg.schemaRegistryUrl), () => inputs!.flushPins(), activity);
      await wait('Schema Registry', () => h.init());
      handler = h;
    } else if (role === 'aggregator') {
      inputTopics = [topics.observations];
      const dlq = new DeadLetterWriter(await getProducer(), codecs, topics.dlq, getPool());
      const records = await startStockRecords({
        pool: getPool(), log, retentionDays: cfg.historyRetentionDays, retry: wait, webhooks: { cfg, metrics },
        topic: { name: topics.stockEvents, publish: stockEventPublisher(await getProducer(), codecs.stockEvent, topics.stockEvents) },
      });
      closers.push(() => records.stop());
      const h = new AggregatorHandler(new ContributionStore(getPool(), cfg.stateWholeKeyContributors), await getProducer(), codecs, topics.regionalStock, dlq, log, metrics, cfg.stateCacheContributors, cfg.historyRetentionDays > 0 ? records.thresholds : null);
      await wait('Schema Registry', () => h.init());
      handler = h;
    } else {
      inputTopics = [topics.regionalStock];
      const store: StockSink = role === 'sink-postgres' ? createPostgresStockSink({ url: cfg.pgUrl }) : createRedisSnapshotSink({ url: cfg.redisUrl, ttlSeconds: cfg.redisTtlSeconds });
      sink = store;
      await wait(role === 'sink-postgres' ? 'Postgres' : 'Redis', () => store.connect());
      sinkHealthy = () => store.isHealthy?.() ?? true;
      closers.push(() => store.close());
      const dlq = new DeadLetterWriter(await getProducer(), codecs, topics.dlq, getPool());
      await wait('Schema Registry', () => dlq.init());
      handler = new SinkHandler(role === 'sink-postgres' ? 'postgres' : 'redis', store, codecs, dlq, log, metrics);
    }

    // One deployment per Cellar database: refused beside the embedded runtime or another topic prefix.
    const stopDeployment = await wait('Postgres (cellar.deployments)', () => registerDeployment(getPool(), deploymentId('kafka', cfg.topicPrefix), role, log, (m) => (conflict = m)));
    closers.push(() => stopDeployment());
    const consume = (t: string[], h: BatchHandler) =>
      startConsumerWorker({ kafka, groupId: groupId(cfg, role), topics: t, handler: h, log, sessionTimeoutMs: cfg.kafkaSessionTimeoutMs, stallMs: cfg.kafkaStallMs, partitionsConcurrently: cfg.kafkaPartitionsConcurrently, metrics });
    let running = await wait('consumer group', () => consume(inputTopics, handler));
    worker = running;
    // Stopped first among the closers: a replay must not start while the sink closes.
    if (sink) closers.unshift(watchStoreLoss({ sink, name: role, topic: topics.regionalStock, worker: () => running, log }));

    /**
     * The normalizer reads the supplier files and SKU maps again (SIGHUP): a registry with any problem is
     * rejected whole; otherwise it subscribes to the new set of raw topics with the new mappings (leaving
     * the group and joining again: the batch in progress commits first, so nothing is lost or skipped).
     */
    let reloading: Promise<ReloadOutcome> = Promise.resolve(NO_RELOAD);
    const reload = role !== 'normalizer' ? undefined : (): Promise<ReloadOutcome> => (reloading = reloading.catch(() => NO_RELOAD).then(async () => {
      const read = await readConfiguration(cfg.suppliersDir, inputs!, log, (next) => rawTopics(next, inputs!));
      if ('rejected' in read) return read.rejected;
      const { next, prepared: nextRaw } = read;
      const diff = diffSuppliers(suppliers, next);
      if (!diff.added.length && !diff.removed.length && !diff.changed.length) {
        // Same files: the SKU maps and catalog were refreshed in place; the subscription stays (no rebalance).
        log.info({ ...NO_RELOAD }, 'configuration reloaded');
        return NO_RELOAD;
      }
      const nextTopics = nextRaw.map((r) => r.topic);
      await wait('raw topics', () => ensureTopics(kafka, cfg, nextTopics));
      const dlq = new DeadLetterWriter(await getProducer(), codecs, topics.dlq, getPool());
      const h = new NormalizerHandler(nextRaw, new RouteStore(getPool()), await getProducer(), codecs, topics.observations, dlq, log, metrics, new DebeziumAvroDecoder(cfg.schemaRegistryUrl), () => inputs!.flushPins(), activity);
      await wait('Schema Registry', () => h.init());
      await running.stop();
      running = await wait('consumer group', () => consume(nextTopics, h));
      worker = running;
      suppliers = next;
      const outcome = { ok: true, added: diff.added.map((x) => x.id), removed: diff.removed.map((x) => x.id), changed: diff.changed.map((x) => x.id), skipped: [] };
      log.info({ ...outcome, topics: describeTopics(nextRaw) }, 'configuration reloaded');
      return outcome;
    }));
    if (reload) {
      const stopReloads = watchReloadRequests({ pool: getPool(), role, reload, log, startedAt, ended: () => !live });
      closers.push(async () => stopReloads());
    }
    phase = 'nothing';
    log.info({ role, group: groupId(cfg, role), topics: inputTopics, httpPort: ops?.port }, 'worker started');
    let stopped: Promise<void> | undefined;
    return {
      role,
      get worker() {
        return running;
      },
      metrics,
      httpPort: ops?.port,
      ...(reload ? { reload } : {}),
      stop: () =>
        (stopped ??= (async () => {
          live = false;
          await ops?.close();
          await running.stop();
          for (const c of closers) await c();
          await producer?.disconnect().catch(() => undefined);
          await pool?.end().catch(() => undefined);
          log.info('worker stopped');
        })()),
    };
  }
}
