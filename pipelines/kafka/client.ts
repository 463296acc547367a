import { Kafka, logLevel, Partitioners, type Admin, type Producer, type ProducerConfig, type ITopicConfig } from 'kafkajs';
import type { RuntimeConfig } from '../core/config.js';
import { fromKafkaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { cellarTopics } from './topics.js';
import { kafkaSecurity } from './security.js';

/**
 * Everything that differs between a real Kafka cluster and librdkafka's mock cluster (the broker used
 * in tests) is decided here and only here.
 *
 * The mock cluster reports controller id 0 while its brokers are 1..N, so every kafkajs call that goes
 * to the controller (CreateTopics, InitProducerId for idempotent producers) fails with "Broker 0 not
 * found"; it also has no CreateTopics at all and creates topics with 4 partitions on first metadata
 * request. Under `librdkafka-mock` Cellar therefore turns producer idempotence off and creates topics
 * by asking for their metadata. Under `standard` (the default) producers are idempotent and topics are
 * created through the admin API, `regional-stock` compacted. Correctness never depends on either:
 * every consumer is idempotent by version.
 */
export interface KafkaProfile {
  idempotentProducer: boolean;
  createTopicsWithAdmin: boolean;
}

export function kafkaProfile(cfg: Pick<RuntimeConfig, 'kafkaCompat'>): KafkaProfile {
  return cfg.kafkaCompat === 'librdkafka-mock'
    ? { idempotentProducer: false, createTopicsWithAdmin: false }
    : { idempotentProducer: true, createTopicsWithAdmin: true };
}

const LEVEL: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

/** What kafkajs logs when a consumer's next offset is gone from the broker and it jumps to the default offset. */
export const OFFSET_RESET_MESSAGE = 'Offset out of range, resetting to default offset';

/** A consumer offset kafkajs reset: the messages between it and the new position were never consumed. */
export interface OffsetReset { topic: string; partition: number; groupId: string }

/**
 * Creates the kafkajs client, logging through the component's logger. kafkajs resets a consumer whose next
 * offset the broker no longer has (removed by retention) without telling its caller, only its log: that log
 * line is turned into `onOffsetReset`, so the skipped changes are counted and said loudly.
 */
export function createKafka(cfg: RuntimeConfig, log: Logger, clientSuffix?: string, hooks: { onOffsetReset?: (r: OffsetReset) => void } = {}): Kafka {
  return new Kafka({
    clientId: clientSuffix ? `${cfg.kafkaClientId}-${clientSuffix}` : cfg.kafkaClientId,
    brokers: cfg.kafkaBrokers,
    ...kafkaSecurity(cfg),
    connectionTimeout: 5_000,
    requestTimeout: 30_000,
    // kafkajs' own retries stay short (about 6 s in all): Cellar's callers retry on, saying what they wait for.
    retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 3_000 },
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }) => {
        const { message, ...rest } = entry;
        if (message === OFFSET_RESET_MESSAGE && hooks.onOffsetReset) {
          const r = rest as unknown as Partial<OffsetReset>;
          hooks.onOffsetReset({ topic: String(r.topic ?? ''), partition: Number(r.partition ?? -1), groupId: String(r.groupId ?? '') });
          return;
        }
        // kafkajs internals (its retries, reconnects, stacks) only at debug: Cellar says what it waits for
        // itself, in one line naming the broker and CELLAR_KAFKA_BROKERS.
        log.debug({ kafkajs: rest, kafkajsLevel: LEVEL[level] }, String(message));
      },
  });
}

/** Producer settings for Cellar's outputs: acks from all replicas, idempotent on real clusters. */
export function producerConfig(cfg: RuntimeConfig): ProducerConfig {
  const profile = kafkaProfile(cfg);
  return {
    allowAutoTopicCreation: !profile.createTopicsWithAdmin,
    idempotent: profile.idempotentProducer,
    maxInFlightRequests: profile.idempotentProducer ? 5 : undefined,
    createPartitioner: Partitioners.DefaultPartitioner,
  };
}

/** Creates and connects a producer; errors are converted to CellarError. */
export async function connectProducer(kafka: Kafka, cfg: RuntimeConfig): Promise<Producer> {
  const producer = kafka.producer(producerConfig(cfg));
  try {
    await producer.connect();
  } catch (err) {
    throw fromKafkaError(err, 'connecting Kafka producer');
  }
  return producer;
}

/** Topic settings Cellar applies when it creates its own topics on a real cluster. */
export function cellarTopicConfigs(cfg: RuntimeConfig): ITopicConfig[] {
  const t = cellarTopics(cfg);
  const base = { numPartitions: cfg.topicPartitions, replicationFactor: cfg.topicReplication };
  return [
    { topic: t.observations, ...base, configEntries: [{ name: 'retention.ms', value: String(7 * 24 * 3600 * 1000) }] },
    {
      topic: t.regionalStock,
      ...base,
      configEntries: [
        { name: 'cleanup.policy', value: 'compact' },
        { name: 'min.compaction.lag.ms', value: '60000' },
      ],
    },
    { topic: t.dlq, ...base, configEntries: [{ name: 'retention.ms', value: String(30 * 24 * 3600 * 1000) }] },
    { topic: t.stockEvents, ...base, configEntries: [{ name: 'retention.ms', value: String(30 * 24 * 3600 * 1000) }] },
  ];
}

/**
 * Makes sure Cellar's topics exist, and waits for `extra` input topics (raw topics, which Debezium or
 * `cellar run capture` create). Real clusters: admin CreateTopics for Cellar's (existing topics are left as
 * they are), then a metadata request that fails, retriably, while an extra topic is missing. Mock cluster:
 * a metadata request creates them all.
 */
export async function ensureTopics(kafka: Kafka, cfg: RuntimeConfig, extra: string[] = []): Promise<void> {
  const admin: Admin = kafka.admin();
  try {
    await admin.connect();
    const configs = cellarTopicConfigs(cfg);
    if (kafkaProfile(cfg).createTopicsWithAdmin) {
      await admin.createTopics({ topics: configs, waitForLeaders: true });
      // Topics Cellar does not own (Debezium's raw topics) must exist before a consumer subscribes, without
      // relying on the broker's auto-creation: a missing one fails here, retriable, and the caller waits.
      if (extra.length) await admin.fetchTopicMetadata({ topics: extra });
    } else {
      await admin.fetchTopicMetadata({ topics: [...configs.map((c) => c.topic), ...extra] });
    }
  } catch (err) {
    throw fromKafkaError(err, 'creating Cellar topics');
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
