import type { Producer } from 'kafkajs';
import type pg from 'pg';
import type { Redis } from 'ioredis';
import type { StockObservation } from '../../schemas/records.js';
import { createCodecs, valueSubject } from '../../schemas/registry.js';
import type { RuntimeConfig } from '../core/config.js';
import { ConfigError, fromKafkaError, fromRedisError } from '../core/errors.js';
import { connectProducer, createKafka } from '../kafka/client.js';
import { cellarTopics, stockKey } from '../kafka/topics.js';
import type { Logger } from '../core/logger.js';
import { query } from '../core/pg.js';
import { redisKeys } from '../../sinks/redis/config.js';
import { keyId } from './compare.js';

/**
 * Corrections no source row can carry, applied below the normalizer:
 * - a DELETE observation of one contribution at one key, for a row counted under a key it no longer has
 *   (counted twice) or a key whose contributors are all deleted but whose total is wrong: the aggregator
 *   applies it like any observation (its version sorts just above what Cellar holds for the row) and
 *   writes the key's total afresh, in both runtimes;
 * - the removal of totals and Redis fields at keys no contributor was ever counted under (orphans), which
 *   no aggregator holds state for.
 */

/** A DELETE of `contributorId`'s contribution at one key, at `version`. */
export function deleteObservation(supplierId: string, contributorId: string, at: { region: string; sku: string; warehouseId: string; bottleSizeMl?: number | null }, version: string, runId: number): StockObservation {
  const now = Date.now();
  return {
    supplierId, warehouseId: at.warehouseId, region: at.region, sku: at.sku, supplierSku: '', vintage: null, bottleSizeMl: at.bottleSizeMl ?? 0,
    bottles: 0, op: 'DELETE', contributorId, sourceVersion: version, sourceTsMs: now, ingestTsMs: now, traceId: `reconcile@run-${runId}`,
  };
}

/** Queues observations for the embedded runtime (`cellar.repair_requests.observation`), applied in its next commit. */
export async function enqueueObservations(pool: pg.Pool, runId: number, supplierId: string, observations: StockObservation[]): Promise<void> {
  if (!observations.length) return;
  await query(pool, 'queueing corrections',
    'INSERT INTO cellar.repair_requests (run_id, supplier_id, observation) SELECT $1, $2, o FROM unnest($3::jsonb[]) AS o',
    [runId, supplierId, observations.map((o) => JSON.stringify(o))]);
}

/**
 * Sends corrections to the Kafka runtime with a producer of their own (reconciliation runs outside the
 * workers), converting what kafkajs throws into `what`'s error and disconnecting whatever happened.
 */
export async function sendCorrections(cfg: RuntimeConfig | undefined, log: Logger, what: string, send: (p: Producer) => Promise<unknown>): Promise<void> {
  if (!cfg) throw new ConfigError('corrections for the Kafka runtime need Kafka settings (CELLAR_KAFKA_BROKERS)');
  const producer = await connectProducer(createKafka(cfg, log, 'cellar-reconcile'), cfg);
  try {
    await send(producer);
  } catch (err) {
    throw fromKafkaError(err, what);
  } finally {
    await producer.disconnect().catch(() => undefined);
  }
}

/** Produces observations to the Kafka runtime's observations topic (Avro, key `region|sku`, acks=all). */
export async function produceObservations(cfg: RuntimeConfig | undefined, log: Logger, observations: StockObservation[]): Promise<void> {
  if (!observations.length) return;
  if (!cfg) throw new ConfigError('corrections for the Kafka runtime need Kafka settings (CELLAR_KAFKA_BROKERS)');
  const topic = cellarTopics(cfg).observations;
  const codecs = createCodecs(cfg.schemaRegistryUrl);
  await codecs.observation.register(valueSubject(topic));
  await sendCorrections(cfg, log, 'sending corrections to the observations topic', (p) =>
    p.send({ topic, acks: -1, messages: observations.map((o) => ({ key: stockKey(o.region, o.sku), value: codecs.observation.encode(valueSubject(topic), o) })) }));
}

/**
 * Removes orphan totals: the `regional_stock` row when it still has the bottles seen and the key still has
 * no contribution (a write racing in keeps its row), then the Redis field, version guard and size of every
 * given key that has no row (so a later real total, whatever its version, is taken). Returns the keys whose
 * row or field was removed.
 */
export async function removeOrphans(pool: pg.Pool, redis: Redis, keys: Array<{ region: string; sku: string; stored: number | null }>, keyPrefix = 'cellar'): Promise<Set<string>> {
  const done = new Set<string>();
  if (!keys.length) return done;
  const rows = keys.filter((k) => k.stored !== null);
  if (rows.length) {
    const { rows: gone } = await query<{ region: string; sku: string }>(pool, 'removing orphan totals',
      `DELETE FROM cellar.regional_stock rs USING unnest($1::text[], $2::text[], $3::bigint[]) AS k(region, sku, bottles)
        WHERE rs.region = k.region AND rs.sku = k.sku AND rs.bottles = k.bottles
          AND NOT EXISTS (SELECT 1 FROM cellar.stock_contributions c WHERE c.region = k.region AND c.sku = k.sku)
        RETURNING rs.region, rs.sku`,
      [rows.map((k) => k.region), rows.map((k) => k.sku), rows.map((k) => k.stored)]);
    for (const g of gone) done.add(keyId(g));
  }
  const { rows: present } = await query<{ region: string; sku: string }>(pool, 'reading totals of orphan keys',
    'SELECT rs.region, rs.sku FROM unnest($1::text[], $2::text[]) AS k(region, sku) JOIN cellar.regional_stock rs ON rs.region = k.region AND rs.sku = k.sku',
    [keys.map((k) => k.region), keys.map((k) => k.sku)]);
  const kept = new Set(present.map(keyId));
  const m = redis.multi();
  for (const k of keys) {
    if (kept.has(keyId(k))) continue;
    const names = redisKeys(keyPrefix, k.region);
    m.hdel(names.stock, k.sku).hdel(names.versions, k.sku).hdel(names.sizes, k.sku);
    done.add(keyId(k));
  }
  try {
    await m.exec();
  } catch (err) {
    throw fromRedisError(err, 'removing orphan Redis fields');
  }
  return done;
}
