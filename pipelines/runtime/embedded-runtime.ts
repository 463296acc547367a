import PQueue from 'p-queue';
import { Redis } from 'ioredis';
import { postgresUrl } from '../../connectors/registry/connection.js';
import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import { createPostgresCdcSource, type CdcBatch, type PostgresCdcSource } from '../../connectors/postgres-cdc/index.js';
import type { DeadLetter } from '../../schemas/records.js';
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
import { withRetry } from '../core/retry.js';
import { insertDeadLetters } from '../dlq/store.js';
import { normalizeBatch } from '../normalize/batch.js';
import { compileMapping, type CompiledMapping } from '../normalize/mapping.js';
import { RouteStore } from '../normalize/route-store.js';
import type { Route } from '../normalize/normalize.js';
import { loadSkuMaps, tableMappedSuppliers } from '../normalize/sku-map-store.js';

/** The `partition` the embedded runtime files its contributions under (the Kafka runtime uses 0..N-1). */
export const EMBEDDED_PARTITION = -1;

/** A running embedded pipeline. */
export interface EmbeddedRuntime {
  /** Suppliers captured natively, and those skipped with the reason. */
  captured: string[];
  skipped: Array<{ supplier: string; reason: string }>;
  isReady(): boolean;
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
  const pool = createPgPool(cfg.pgUrl, { max: 4, applicationName: 'cellar-embedded' });
  const retry = <T>(what: string, fn: () => Promise<T>) =>
    withRetry(fn, { minDelayMs: 200, maxDelayMs: 5_000, onRetry: (err, attempt) => {
      ready = false;
      log.warn({ err: (err as Error).message, attempt, what }, 'retrying');
    } }).then((v) => ((ready = true), v));
  let ready = false;
  await retry('migrating Cellar\'s database', () => migrate(pool));
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

  const routes = new RouteStore(pool);
  const contributions = new ContributionStore(pool);
  const aggregator = new RegionalAggregator();
  aggregator.restore(await retry('restoring aggregate state', () => contributions.load(EMBEDDED_PARTITION)));
  const skuTables = await retry('reading cellar.sku_map', () => loadSkuMaps(pool, tableMappedSuppliers(suppliers)));
  const queue = new PQueue({ concurrency: 1 }); // one batch at a time: the aggregator and routes are shared
  const sources: PostgresCdcSource[] = [];
  const skipped: EmbeddedRuntime['skipped'] = [];
  let fatal: Error | undefined;
  let fail!: (err: Error) => void;
  const failed = new Promise<Error>((r) => (fail = r));

  const handleBatch = async (supplier: Supplier, mapping: CompiledMapping, batch: CdcBatch) => {
    if (fatal) throw fatal;
    const byTable = new Map<string, CdcBatch['messages']>();
    for (const m of batch.messages) {
      const table = m.topic.slice(supplier.topicPrefix.length + 1);
      byTable.set(table, [...(byTable.get(table) ?? []), m]);
    }
    const letters: DeadLetter[] = [];
    let stale = 0;
    const allRoutes: Route[] = [];
    for (const [table, msgs] of byTable) {
      const res = await normalizeBatch(
        msgs.map((m) => ({ key: m.key === null ? null : Buffer.from(m.key), value: Buffer.from(m.value), ref: m })),
        { supplierId: supplier.id, mapping, table, keyColumns: supplier.source.tables.find((t) => t.name === table)?.key },
        { routes: (ids) => routes.get(ids), liveOfTable: (s, t) => routes.liveOfTable(s, t), retry, onDefect: (err) => log.error({ err }, 'unexpected error on one record; dead-lettered') },
      );
      for (const o of res.observations) aggregator.apply(o);
      allRoutes.push(...res.routes);
      stale += res.stale;
      for (const r of res.rejected) {
        letters.push({ stage: 'normalizer', reason: r.reason, message: r.message, supplierId: supplier.id, topic: null, partition: null, offset: null, sourcePosition: r.position ?? `lsn=${batch.lsn}`, key: r.ref.key === null ? null : Buffer.from(r.ref.key), value: Buffer.from(r.ref.value), tsMs: Date.now() });
      }
    }
    const { totals, contributions: changed } = aggregator.drain(Date.now());
    const checkpoint = { kind: 'postgres', lsn: batch.lsn, snapshotDone: !batch.snapshot || Boolean(batch.snapshotComplete) };
    try {
      await retry('committing batch', () =>
        inTransaction(pool, 'committing embedded batch', async (tx) => {
          await routes.save(allRoutes, tx);
          await contributions.save(changed, EMBEDDED_PARTITION, tx);
          await upsertRegionalStock(tx, totals);
          await insertDeadLetters(tx, letters);
          if (!batch.snapshot || batch.snapshotComplete) {
            await query(tx, 'writing checkpoint', `INSERT INTO cellar.checkpoints (source_id, position, updated_at) VALUES ($1, $2, now())
              ON CONFLICT (source_id) DO UPDATE SET position = excluded.position, updated_at = now()`, [supplier.id, JSON.stringify(checkpoint)]);
          }
        }),
      );
    } catch (err) {
      // The in-memory state is ahead of what Postgres holds: stop, a restart restores from Postgres.
      fatal = err instanceof Error ? err : new Error(String(err));
      fail(fatal);
      throw fatal;
    }
    const res = await retry('writing Redis', () => redisSink.writeBatch(totals));
    if (res.reset) await rebuild(); // Redis lost its data: Postgres (just committed) is complete
    metrics.eventsIn.inc({ stage: 'embedded' }, batch.messages.length);
    metrics.eventsOut.inc({ stage: 'embedded' }, totals.length);
    if (stale) metrics.staleEvents.inc({ stage: 'embedded' }, stale);
    for (const l of letters) metrics.deadLetters.inc({ stage: 'normalizer', reason: l.reason });
    const now = Date.now();
    for (const t of totals) if (t.sourceTsMs > 0) metrics.freshness.observe({ sink: 'embedded' }, Math.max(0, now - t.sourceTsMs) / 1000);
  };

  for (const supplier of suppliers) {
    if (supplier.source.kind !== 'postgres') {
      skipped.push({ supplier: supplier.id, reason: `no native reader for source kind ${supplier.source.kind} yet; capture it with Debezium and the Kafka runtime` });
      continue;
    }
    const mapping = compileMapping(supplier, skuTables.get(supplier.id));
    const source = createPostgresCdcSource({ url: postgresUrl(supplier), topicPrefix: supplier.topicPrefix, tables: supplier.source.tables.map((t) => t.name) }, log);
    const cp = await query<{ position: { snapshotDone?: boolean } }>(pool, 'reading checkpoint', 'SELECT position FROM cellar.checkpoints WHERE source_id = $1', [supplier.id]);
    await retry(`starting the reader of ${supplier.id}`, async () => {
      try {
        await source.start((batch) => queue.add(() => handleBatch(supplier, mapping, batch)) as Promise<void>, { snapshotDone: cp.rows[0]?.position.snapshotDone ?? false });
      } catch (err) {
        throw err instanceof CellarError ? err : new CellarError('cdc_start', `${supplier.id}: ${(err as Error).message}`, { retriable: true, cause: err });
      }
    });
    sources.push(source);
  }
  ready = true;
  for (const s of skipped) log.warn(s, 'supplier not captured by the embedded runtime');
  return {
    captured: suppliers.filter((s) => !skipped.some((k) => k.supplier === s.id)).map((s) => s.id),
    skipped,
    isReady: () => ready && !fatal,
    failed,
    stop: async () => {
      for (const s of sources) await s.stop();
      await queue.onIdle();
      await redisSink.close();
      redis.disconnect();
      await pool.end().catch(() => undefined);
    },
  };
}

