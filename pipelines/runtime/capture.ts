import { postgresUrl } from '../../connectors/registry/connection.js';
import { loadRegistry } from '../../connectors/registry/loader.js';
import { createPostgresCdcSource } from '../../connectors/postgres-cdc/index.js';
import { createPgPool, query } from '../../sinks/postgres/pool.js';
import { migrate } from '../../sinks/postgres/migrate.js';
import type { RuntimeConfig } from '../core/config.js';
import { ConfigError, fromKafkaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { withRetry } from '../core/retry.js';
import { connectProducer, createKafka, ensureTopics } from '../kafka/client.js';

/**
 * `cellar run capture --supplier ID`: the native reader of one supplier publishing to Kafka raw topics
 * under Debezium's topic names and format, for sites that run Kafka without Kafka Connect. A source
 * position is acknowledged only after the broker acknowledged (acks=all) every message before it; the
 * snapshot's completion is checkpointed in `cellar.checkpoints` (source id `capture:<supplier>`).
 */
export async function startCapture(cfg: RuntimeConfig, supplierId: string, log: Logger, metrics: CellarMetrics): Promise<{ stop(): Promise<void> }> {
  const supplier = loadRegistry(cfg.suppliersDir).find((s) => s.id === supplierId);
  if (!supplier) throw new ConfigError(`no supplier "${supplierId}" in ${cfg.suppliersDir}`);
  if (supplier.source.kind !== 'postgres') {
    throw new ConfigError(`${supplier.file}: source.kind: ${supplier.source.kind} has no native reader yet; capture it with Debezium on Kafka Connect`);
  }
  const retry = <T>(what: string, fn: () => Promise<T>) =>
    withRetry(fn, { minDelayMs: 200, maxDelayMs: 5_000, onRetry: (err, attempt) => log.warn({ err: (err as Error).message, attempt, what }, 'retrying') });
  const pool = createPgPool(cfg.pgUrl, { max: 2, applicationName: 'cellar-capture' });
  await retry('migrating Cellar\'s database', () => migrate(pool));
  const kafka = createKafka(cfg, log, `capture-${supplier.id}`);
  const topics = supplier.source.tables.map((t) => `${supplier.topicPrefix}.${t.name}`);
  await retry('Kafka topics', () => ensureTopics(kafka, cfg, topics));
  const producer = await retry('Kafka', () => connectProducer(kafka, cfg));
  const sourceId = `capture:${supplier.id}`;
  const cp = await query<{ position: { snapshotDone?: boolean } }>(pool, 'reading checkpoint', 'SELECT position FROM cellar.checkpoints WHERE source_id = $1', [sourceId]);
  const source = createPostgresCdcSource({ url: postgresUrl(supplier), topicPrefix: supplier.topicPrefix, tables: supplier.source.tables.map((t) => t.name) }, log);
  await retry(`starting the reader of ${supplier.id}`, () =>
    source.start(
      async (batch) => {
        if (batch.messages.length) {
          await retry('producing raw changes', async () => {
            try {
              await producer.sendBatch({
                acks: -1,
                topicMessages: [...new Set(batch.messages.map((m) => m.topic))].map((topic) => ({
                  topic,
                  messages: batch.messages.filter((m) => m.topic === topic).map((m) => ({ key: m.key, value: m.value })),
                })),
              });
            } catch (err) {
              throw fromKafkaError(err, 'producing raw changes');
            }
          });
          metrics.eventsOut.inc({ stage: 'capture' }, batch.messages.length);
        }
        if (batch.snapshotComplete) {
          await retry('writing checkpoint', () =>
            query(pool, 'writing checkpoint', `INSERT INTO cellar.checkpoints (source_id, position) VALUES ($1, $2)
              ON CONFLICT (source_id) DO UPDATE SET position = excluded.position, updated_at = now()`, [sourceId, JSON.stringify({ kind: 'postgres', lsn: batch.lsn, snapshotDone: true })]),
          );
        }
      },
      { snapshotDone: cp.rows[0]?.position.snapshotDone ?? false },
    ),
  );
  log.info({ supplier: supplier.id, topics }, 'capturing');
  return {
    stop: async () => {
      await source.stop();
      await producer.disconnect().catch(() => undefined);
      await pool.end().catch(() => undefined);
    },
  };
}
