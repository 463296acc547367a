import type { Consumer, Kafka } from 'kafkajs';
import { loadRuntimeConfig, type RuntimeConfig } from '../../pipelines/core/config.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { createKafka } from '../../pipelines/kafka/client.js';
import { cellarEnv, rid } from './services.js';

/** A runtime config for in-process workers on random topics and groups. */
export function testConfig(extra: Record<string, string>): RuntimeConfig {
  const id = rid('c');
  return loadRuntimeConfig({ ...process.env, ...cellarEnv({ CELLAR_TOPIC_PREFIX: `${id}.cellar`, CELLAR_GROUP_PREFIX: id, ...extra }) });
}

/** Collects every message of `topic` from the beginning, decoded with `decode`, into `out`. */
export async function collect<T>(cfg: RuntimeConfig, topic: string, decode: (v: Buffer) => Promise<T>): Promise<{ out: T[]; stop(): Promise<void> }> {
  const kafka: Kafka = createKafka(cfg, createLogger('test-collector', 'warn'), 'collector');
  const consumer: Consumer = kafka.consumer({ groupId: rid('collector'), sessionTimeout: 6_000, heartbeatInterval: 500 });
  const out: T[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => void (message.value && out.push(await decode(message.value))) });
  return { out, stop: () => consumer.disconnect() };
}
