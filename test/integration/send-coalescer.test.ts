import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Kafka, Producer } from 'kafkajs';
import { loadRuntimeConfig, type RuntimeConfig } from '../../pipelines/core/config.js';
import { connectProducer, createKafka, ensureTopics } from '../../pipelines/kafka/client.js';
import { coalescingProducer } from '../../pipelines/kafka/producer.js';
import { memoryLogger } from '../api/api-support.js';
import { cellarEnv, rid } from '../support/services.js';

/** Every message of `topic` as the broker returns it: values per fetched record batch, in offset order per partition. */
async function readAll(kafka: Kafka, topic: string, expected: number): Promise<{ batches: string[][]; byPartition: Map<number, string[]> }> {
  const consumer = kafka.consumer({ groupId: rid('g-coalesce-'), maxWaitTimeInMs: 100 });
  const batches: string[][] = [];
  const byPartition = new Map<number, string[]>();
  let seen = 0;
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      eachBatch: async ({ batch }) => {
        const values = batch.messages.map((m) => m.value!.toString());
        batches.push(values);
        byPartition.set(batch.partition, [...(byPartition.get(batch.partition) ?? []), ...values]);
        seen += values.length;
        if (seen >= expected) resolve();
      },
    });
  });
  const timeout = new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`read ${seen} of ${expected} messages of ${topic} in 30 s`)), 30_000));
  try {
    await Promise.race([done, timeout]);
  } finally {
    await consumer.disconnect();
  }
  return { batches, byPartition };
}

/**
 * The stage workers' producer: sends made while another is in flight share one produce request. What a
 * consumer of the topic sees must not change (every message once, each sender's messages in order per
 * partition); a request that fails fails every send it carried, and later sends go on.
 */
describe('joined sends (SendCoalescer)', () => {
  const mem = memoryLogger();
  let cfg: RuntimeConfig;
  let kafka: Kafka;
  let raw: Producer;

  beforeAll(async () => {
    cfg = loadRuntimeConfig(cellarEnv({}));
    kafka = createKafka(cfg, mem.log, 'coalesce-test');
    raw = await connectProducer(kafka, cfg);
  }, 60_000);

  afterAll(async () => {
    await raw?.disconnect().catch(() => undefined);
  });

  it('delivers every message of concurrent senders once, in each sender\'s order, in fewer requests and larger batches', async () => {
    const topic = rid('coalesce.');
    const other = rid('coalesce-other.');
    await ensureTopics(kafka, cfg, [topic, other]);
    const producer = coalescingProducer(raw);
    const senders = 6;
    const rounds = 5;
    const perSend = 24;
    // Each sender sends its rounds one after the other (as a stage's partition batches do); senders overlap.
    await Promise.all(Array.from({ length: senders }, async (_, s) => {
      for (let r = 0; r < rounds; r++) {
        const messages = Array.from({ length: perSend }, (_, i) => ({ key: `k${i % 8}`, value: `s${s}-${String(r * perSend + i).padStart(4, '0')}` }));
        const meta = await producer.send({ topic: s === senders - 1 ? other : topic, acks: -1, messages });
        expect(meta.length).toBeGreaterThan(0);
      }
    }));
    const { requests, sends } = producer.coalescer.stats;
    expect(sends).toBe(senders * rounds);
    expect(requests).toBeLessThan(sends);

    const expected = (senders - 1) * rounds * perSend;
    const { batches, byPartition } = await readAll(kafka, topic, expected);
    const all = [...byPartition.values()].flat();
    expect(all.length).toBe(expected);
    expect(new Set(all).size).toBe(expected);
    for (const [partition, values] of byPartition) {
      for (let s = 0; s < senders - 1; s++) {
        const mine = values.filter((v) => v.startsWith(`s${s}-`));
        expect(mine, `sender ${s} on partition ${partition}`).toEqual([...mine].sort());
      }
    }
    // Joined requests reach the consumer as record batches holding several senders' messages.
    expect(batches.some((b) => new Set(b.map((v) => v.split('-')[0])).size > 1)).toBe(true);
    const others = await readAll(kafka, other, rounds * perSend);
    expect([...others.byPartition.values()].flat().length).toBe(rounds * perSend);
  }, 90_000);

  it('fails every send a failed request carried, and sends after it go through', async () => {
    const topic = rid('coalesce-fail.');
    await ensureTopics(kafka, cfg, [topic]);
    const own = await connectProducer(kafka, cfg);
    const producer = coalescingProducer(own);
    const first = producer.send({ topic, acks: -1, messages: [{ key: 'a', value: 'first' }] });
    // Queued behind the first: they go out together once it is done, by which time the producer is gone.
    const joined = [producer.send({ topic, acks: -1, messages: [{ key: 'b', value: 'lost-1' }] }), producer.send({ topic, acks: -1, messages: [{ key: 'c', value: 'lost-2' }] })];
    const outcome = Promise.allSettled(joined);
    await first;
    await own.disconnect();
    const settled = await outcome;
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect(String((settled[0] as PromiseRejectedResult).reason)).toMatch(/disconnect/i);
    expect(producer.coalescer.stats).toEqual({ requests: 2, sends: 3 });
    await own.connect();
    await producer.send({ topic, acks: -1, messages: [{ key: 'd', value: 'after' }] });
    const { byPartition } = await readAll(kafka, topic, 2);
    expect([...byPartition.values()].flat().sort()).toEqual(['after', 'first']);
    await own.disconnect();
  }, 90_000);
});
