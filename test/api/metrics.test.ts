import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';
import { startOpsServer } from '../../pipelines/core/http.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { connectProducer, createKafka, ensureTopics } from '../../pipelines/kafka/client.js';
import { startConsumerWorker, type ConsumerWorker } from '../../pipelines/kafka/worker.js';
import { insertDeadLetters } from '../../pipelines/state/dead-letters.js';
import { cellarEnv, eventually, freshDatabase, rid } from '../support/services.js';
import { call, keysByRole, memoryLogger, startTestApi, type TestApi } from './api-support.js';
import { services } from '../support/services.js';

/**
 * A Kafka worker's `cellar_consumer_lag` on its /metrics, and the read API's pipeline health built from
 * it (scraped from CELLAR_API_SCRAPE_URLS) with throughput per stage, freshness and dead letters by reason.
 */
describe('consumer lag and pipeline health', () => {
  let db: { url: string; pool: pg.Pool };
  let worker: ConsumerWorker | undefined;
  let ops: { port: number; close(): Promise<void> } | undefined;
  let api: TestApi;
  const metrics = new CellarMetrics(false);
  const topic = rid('lag.');
  const group = rid('g-');
  const lagSeen: number[] = [];

  beforeAll(async () => {
    db = await freshDatabase();
    const cfg = loadRuntimeConfig(cellarEnv({ CELLAR_PG_URL: db.url }));
    const log = memoryLogger().log;
    const kafka = createKafka(cfg, log, 'lag-test');
    await ensureTopics(kafka, cfg, [topic]);
    const producer = await connectProducer(kafka, cfg);
    for (let i = 0; i < 10; i++) {
      await producer.send({ topic, acks: -1, messages: Array.from({ length: 200 }, (_, j) => ({ key: `k${j % 4}`, value: 'x'.repeat(200) + String(i * 200 + j) })) });
    }
    await producer.disconnect();
    ops = await startOpsServer(0, metrics, { live: () => true, ready: () => true });
    worker = await startConsumerWorker({
      kafka,
      groupId: group,
      topics: [topic],
      log,
      metrics,
      maxBytesPerPartition: 4_096, // small batches, so the lag goes down step by step
      sessionTimeoutMs: 6_000,
      handler: {
        handle: async (b) => {
          metrics.eventsIn.inc({ stage: 'test-stage' }, b.messages.length);
          metrics.freshness.observe({ sink: 'test' }, 0.03);
          const { values } = await metrics.consumerLag.get();
          lagSeen.push(values.reduce((s, v) => s + v.value, 0));
          await new Promise((r) => setTimeout(r, 5));
        },
      },
    });
    await insertDeadLetters(db.pool, [
      { stage: 'normalizer', reason: 'unknown_sku', message: 'm', supplierId: 'acme', topic: 't', partition: 0, offset: '1', sourcePosition: null, key: null, value: Buffer.from('v'), tsMs: Date.now() },
      { stage: 'normalizer', reason: 'unknown_sku', message: 'm', supplierId: 'acme', topic: 't', partition: 0, offset: '2', sourcePosition: null, key: null, value: Buffer.from('v'), tsMs: Date.now() },
      { stage: 'normalizer', reason: 'non_integral_quantity', message: 'm', supplierId: 'acme', topic: 't', partition: 0, offset: '3', sourcePosition: null, key: null, value: Buffer.from('v'), tsMs: Date.now() },
    ]);
    // The table of schemas/postgres/0005 (created here too in case the migration is not in this tree).
    await db.pool.query(`CREATE TABLE IF NOT EXISTS cellar.reconciliation_runs (id bigserial PRIMARY KEY, supplier_id text NOT NULL, started_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz, rows_compared bigint NOT NULL DEFAULT 0, drifted_keys integer NOT NULL DEFAULT 0, repaired integer NOT NULL DEFAULT 0, outcome text NOT NULL DEFAULT 'running')`);
    await db.pool.query(`INSERT INTO cellar.reconciliation_runs (supplier_id, started_at, finished_at, rows_compared, drifted_keys, repaired, outcome) VALUES ('acme', now() - interval '1 minute', now(), 1200, 3, 3, 'repaired')`);
    api = await startTestApi({ pgUrl: db.url, redisUrl: services().redisUrl, scrapeUrls: [`http://127.0.0.1:${ops.port}/metrics`] });
  });

  afterAll(async () => {
    await worker?.stop();
    await ops?.close();
    await api?.close();
    await db?.pool.end();
  });

  it('records the lag per partition on the worker\'s /metrics, falling to 0 once caught up', async () => {
    expect(await eventually(async () => (await metrics.value('cellar_events_in_total', { stage: 'test-stage' })) === 2_000, 60_000)).toBe(true);
    expect(Math.max(...lagSeen)).toBeGreaterThan(0);
    expect(await eventually(async () => (await metrics.consumerLag.get()).values.every((v) => v.value === 0), 5_000, 50)).toBe(true);
    const text = await (await fetch(`http://127.0.0.1:${ops!.port}/metrics`)).text();
    expect(text).toMatch(new RegExp(`cellar_consumer_lag\\{group="${group}",topic="${topic.replace('.', '\\.')}",partition="\\d+"\\} 0`));
  });

  it('serves pipeline health from the scraped worker and Postgres', async () => {
    const reader = (await keysByRole(db.pool, rid('k'))).reader;
    let h: any;
    expect(
      await eventually(async () => {
        h = (await call(`${api.url}/v1/pipeline`, reader)).body;
        return h.stages?.some((s: { stage: string; inTotal: number }) => s.stage === 'test-stage' && s.inTotal === 2_000);
      }, 15_000),
    ).toBe(true);
    expect(h.consumerLag).toEqual([{ group, topic, lag: 0 }]);
    expect(h.sources).toEqual(expect.arrayContaining([{ source: `127.0.0.1:${ops!.port}`, ok: true }]));
    expect(h.deadLetters).toEqual([
      { stage: 'normalizer', reason: 'unknown_sku', count: 2, pending: 2, replayed: 0, resolved: 0 },
      { stage: 'normalizer', reason: 'non_integral_quantity', count: 1, pending: 1, replayed: 0, resolved: 0 },
    ]);
    expect(h.reconciliation).toMatchObject({ supplier_id: 'acme', rows_compared: 1200, drifted_keys: 3, repaired: 3, outcome: 'repaired' });
    expect(h.freshness.p50Ms === null || (h.freshness.p50Ms > 25 && h.freshness.p50Ms <= 50)).toBe(true);
    expect(h.stores).toEqual({ redis: true, postgres: true });
  });
});
