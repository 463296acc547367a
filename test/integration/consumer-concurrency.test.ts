import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Admin, Kafka } from 'kafkajs';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';
import { connectProducer, createKafka, ensureTopics } from '../../pipelines/kafka/client.js';
import { startConsumerWorker, type ConsumerWorker, type PartitionBatch } from '../../pipelines/kafka/worker.js';
import { memoryLogger } from '../api/api-support.js';
import { cellarEnv, eventually, rid } from '../support/services.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A worker handling batches of several partitions at once (CELLAR_KAFKA_PARTITIONS_CONCURRENTLY): each
 * partition stays in offset order with one batch at a time, and a rewind (a sink's store lost its data)
 * asked by one partition's batch while another partition's batch is still running is not undone by that
 * batch's commit: the replay's offsets stay committed until the replay has handled them.
 */
describe('a consumer worker with partitions handled concurrently', () => {
  const topic = rid('conc.');
  const groupId = rid('g-conc-');
  const mem = memoryLogger();
  let kafka: Kafka;
  let admin: Admin;
  let worker: ConsumerWorker | undefined;
  const seen = new Map<number, number[]>();
  const running = new Set<number>();
  let overlap = 0;
  const problems: string[] = [];
  let rewound = false;
  let gateOfHeld: () => void = () => undefined;
  let heldPartition = -1;
  let heldBatchEnd = -1;
  let replayGate: Promise<void> | undefined;
  let openReplay: () => void = () => undefined;
  let total = 0;

  beforeAll(async () => {
    const cfg = loadRuntimeConfig(cellarEnv({}));
    kafka = createKafka(cfg, mem.log, 'conc-test');
    await ensureTopics(kafka, cfg, [topic]);
    admin = kafka.admin();
    await admin.connect();
    const producer = await connectProducer(kafka, cfg);
    // Several sends: the test broker hands out one produce request per partition per fetch, so each
    // partition gets several batches.
    for (let s = 0; s < 6; s++) {
      await producer.send({ topic, acks: -1, messages: Array.from({ length: 40 }, (_, i) => ({ key: `k${(s * 40 + i) % 23}`, value: `v${s * 40 + i}` })) });
    }
    total = 240;
    await producer.disconnect();
  }, 60_000);

  afterAll(async () => {
    openReplay();
    gateOfHeld();
    await worker?.stop();
    await admin?.disconnect();
  });

  const committed = async (partition: number) => {
    const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return Number(t?.partitions.find((p) => p.partition === partition)?.offset ?? -1);
  };

  it('keeps each partition in order, overlaps partitions, and a concurrent rewind keeps the replay committed', async () => {
    worker = await startConsumerWorker({
      kafka, groupId, topics: [topic], log: mem.log, partitionsConcurrently: 4, maxWaitMs: 100, sessionTimeoutMs: 10_000,
      handler: {
        handle: async (b: PartitionBatch, ctx) => {
          if (running.has(b.partition)) problems.push(`two batches of partition ${b.partition} at once`);
          running.add(b.partition);
          if (running.size > 1) overlap++;
          try {
            const offsets = b.messages.map((m) => Number(m.offset));
            const first = offsets[0]!;
            if (first === 0 && rewound && b.partition === heldPartition) await replayGate;
            const prev = seen.get(b.partition) ?? [];
            const last = prev.length ? prev[prev.length - 1]! : -1;
            // In order: the next batch follows the last one handled, or starts again from the beginning (the replay).
            if (first !== last + 1 && !(rewound && first === 0)) problems.push(`partition ${b.partition}: batch from ${first} after ${last}`);
            seen.set(b.partition, [...prev, ...offsets]);
            if (!rewound && heldPartition < 0 && prev.length === 0) {
              // The first batch of the first partition seen waits while another partition's batch rewinds.
              heldPartition = b.partition;
              heldBatchEnd = offsets[offsets.length - 1]!;
              await new Promise<void>((r) => (gateOfHeld = r));
              return;
            }
            if (!rewound && heldPartition >= 0 && b.partition !== heldPartition) {
              rewound = true;
              replayGate = new Promise<void>((r) => (openReplay = r));
              ctx.rewind();
              return;
            }
            await sleep(Math.random() * 20);
          } finally {
            running.delete(b.partition);
          }
        },
      },
    });

    expect(await eventually(async () => rewound, 30_000, 50), `a second partition's batch arrived while the first was held\n${mem.lines.slice(-10).join('')}`).toBe(true);
    // The rewind committed the earliest offsets; the held batch now finishes and must not commit past them.
    await eventually(async () => (await committed(heldPartition)) === 0, 10_000, 50);
    gateOfHeld();
    await sleep(1_500);
    const afterHeld = await committed(heldPartition);
    expect(afterHeld, `partition ${heldPartition}: the batch that ran across the rewind committed ${heldBatchEnd + 1} over the replay's 0`).toBe(0);
    openReplay();

    const ends = await admin.fetchTopicOffsets(topic);
    const done = await eventually(async () => {
      for (const e of ends) if ((await committed(e.partition)) !== Number(e.high)) return false;
      return true;
    }, 30_000, 100);
    const handled = new Set([...seen].flatMap(([p, os]) => os.map((o) => `${p}:${o}`)));
    expect(done, `committed ${JSON.stringify(await Promise.all(ends.map(async (e) => [e.partition, await committed(e.partition), e.high])))}\n${mem.lines.slice(-10).join('')}`).toBe(true);
    expect(handled.size).toBe(total);
    expect(problems).toEqual([]);
    expect(overlap, 'batches of different partitions ran at once').toBeGreaterThan(0);
    // The replay handled the held partition again from its first offset.
    expect(seen.get(heldPartition)!.filter((o) => o === 0).length).toBeGreaterThanOrEqual(2);
  }, 90_000);
});
