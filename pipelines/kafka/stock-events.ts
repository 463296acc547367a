import type { Producer } from 'kafkajs';
import { createCodecs, valueSubject, type AvroCodec } from '../../schemas/registry.js';
import type { StockEventRecord } from '../../schemas/records.js';
import { fromKafkaError } from '../core/errors.js';
import type { RuntimeConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { connectProducer, createKafka, ensureTopics } from './client.js';
import { cellarTopics, stockKey } from './topics.js';

/**
 * Publishes stock events to `topic` (`<prefix>.stock-events`): Avro `StockEvent` in the Schema Registry
 * wire format (subject `<topic>-value`, registered BACKWARD on first use), key `region|sku` so one SKU's
 * events keep their order, header `cellar-event-id`. A batch is acknowledged by every in-sync replica
 * before it resolves; resent after a failure, so consumers see an event at least once and deduplicate by id.
 */
export function stockEventPublisher(producer: Producer, codec: AvroCodec<StockEventRecord>, topic: string): (events: StockEventRecord[]) => Promise<void> {
  const subject = valueSubject(topic);
  return async (events) => {
    await codec.register(subject);
    const messages = events.map((e) => ({
      key: stockKey(e.region, e.sku),
      value: codec.encode(subject, {
        id: e.id, type: e.type, region: e.region, sku: e.sku, version: e.version, before: e.before, after: e.after, threshold: e.threshold, sourceTsMs: e.sourceTsMs,
      }),
      headers: { 'cellar-event-id': e.id },
    }));
    try {
      await producer.send({ topic, acks: -1, messages });
    } catch (err) {
      throw fromKafkaError(err, `producing stock events to ${topic}`);
    }
  };
}

/**
 * The topic publisher for a process without its own producer (the embedded runtime with
 * CELLAR_STOCK_EVENTS_KAFKA): connects on first use, so a broker that is down delays the events (the
 * follower retries) but never the runtime's start. `close()` disconnects (safe twice).
 */
export function lazyStockEventTopic(cfg: RuntimeConfig, log: Logger): { name: string; publish: (events: StockEventRecord[]) => Promise<void>; close: () => Promise<void> } {
  const name = cellarTopics(cfg).stockEvents;
  let producer: Producer | undefined;
  let publish: ((events: StockEventRecord[]) => Promise<void>) | undefined;
  return {
    name,
    publish: async (events) => {
      if (!publish) {
        const kafka = createKafka(cfg, log, 'stock-events');
        await ensureTopics(kafka, cfg);
        producer = await connectProducer(kafka, cfg);
        publish = stockEventPublisher(producer, createCodecs(cfg.schemaRegistryUrl).stockEvent, name);
      }
      await publish(events);
    },
    close: async () => {
      const p = producer;
      producer = undefined;
      publish = undefined;
      await p?.disconnect().catch(() => undefined);
    },
  };
}
