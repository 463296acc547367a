import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKafkaMock, type KafkaMockCluster } from '../../infra/local/kafka-mock.js';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';
import { startOpsServer } from '../../pipelines/core/http.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { connectProducer, createKafka, ensureTopics } from '../../pipelines/kafka/client.js';
import { startConsumerWorker, type ConsumerWorker } from '../../pipelines/kafka/worker.js';
import { memoryLogger } from '../api/api-support.js';
import { cellarEnv, eventually, rid } from '../support/services.js';

/**
 * A consumer that stops making progress (here: its first batch hangs, as on a query that never returns)
 * is seen from its lag, measured on a timer while no batch finishes; it reports not ready with the
 * reason, logs what is stuck, starts its consumer again, and every message is then handled.
 */
describe('a stalled consumer is detected and recovers', () => {
  const N = 300;
  const topic = rid('stall.');
  const metrics = new CellarMetrics(false);
  const mem = memoryLogger();
  const handled = new Set<string>();
  let release: () => void = () => undefined;
  let hung = 0;
  let worker: ConsumerWorker | undefined;
  let ops: { port: number; close(): Promise<void> } | undefined;
  let broker: KafkaMockCluster | undefined;

  beforeAll(async () => {
    // A broker of its own: when the hung batch is finally released, the abandoned member rejoins while its
    // successor holds the group, which trips an assertion in librdkafka's mock cluster (a real broker copes).
    broker = await startKafkaMock(1);
    const cfg = loadRuntimeConfig(cellarEnv({ CELLAR_KAFKA_BROKERS: broker.brokers.join(','), CELLAR_KAFKA_COMPAT: 'librdkafka-mock' }));
    const kafka = createKafka(cfg, mem.log, 'stall-test');
    await ensureTopics(kafka, cfg, [topic]);
    const producer = await connectProducer(kafka, cfg);
    await producer.send({ topic, acks: -1, messages: Array.from({ length: N }, (_, i) => ({ key: `k${i % 7}`, value: `v${i}` })) });
    await producer.disconnect();
    worker = await startConsumerWorker({
      kafka, groupId: rid('g-stall-'), topics: [topic], log: mem.log, metrics, sessionTimeoutMs: 6_000, stallMs: 3_000, lagIntervalMs: 500, maxBytesPerPartition: 2_048,
      handler: {
        handle: async (b) => {
          if (hung++ === 0) await new Promise<void>((r) => (release = r));
          for (const m of b.messages) handled.add(m.value!.toString());
        },
      },
    });
    ops = await startOpsServer(0, metrics, { live: () => true, ready: () => worker!.isReady(), reason: () => worker!.problem() });
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    release();
    await ops?.close();
    await broker?.stop();
  });

  it('measures the lag while no batch finishes, reports the stall on /readyz and in the log, and catches up', async () => {
    const lag = async () => (await metrics.consumerLag.get()).values.reduce((s, v) => s + v.value, 0);
    // No batch has finished: only the timer can have measured this.
    expect(await eventually(async () => (await lag()) > 0, 10_000, 100), 'cellar_consumer_lag measured while the first batch hangs').toBe(true);
    expect(handled.size).toBe(0);

    let readyz: { status: number; body: { reason?: string } } | undefined;
    const sawStall = await eventually(async () => {
      const r = await fetch(`http://127.0.0.1:${ops!.port}/readyz`);
      readyz = { status: r.status, body: (await r.json()) as { reason?: string } };
      return r.status === 503 && /no progress with lag|starting the consumer again/.test(readyz.body.reason ?? '');
    }, 20_000, 100);
    expect(sawStall, `/readyz during the stall: ${JSON.stringify(readyz)}\n${mem.lines.slice(-10).join('')}`).toBe(true);
    expect(mem.lines.some((l) => l.includes('consumer made no progress') && l.includes(topic)), 'the log names the stalled partitions').toBe(true);

    const caughtUp = await eventually(async () => handled.size === N && (await lag()) === 0 && worker!.isReady(), 60_000, 200);
    expect(caughtUp, `handled ${handled.size} of ${N}, lag ${await lag()}, problem ${worker!.problem()}\n${mem.lines.slice(-15).join('')}`).toBe(true);
    expect(await metrics.value('cellar_consumer_stalls_total')).toBeGreaterThanOrEqual(1);
    expect((await fetch(`http://127.0.0.1:${ops!.port}/readyz`)).status).toBe(200);
  }, 120_000);
});
