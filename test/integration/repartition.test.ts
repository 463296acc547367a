import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Admin, Kafka } from 'kafkajs';
import type pg from 'pg';
import type { RuntimeConfig } from '../../pipelines/core/config.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { connectProducer, createKafka, ensureTopics } from '../../pipelines/kafka/client.js';
import { cellarTopics, stockKey } from '../../pipelines/kafka/topics.js';
import { keyPartitioner } from '../../pipelines/cli/repartition.js';
import { EMBEDDED_PARTITION } from '../../pipelines/runtime/embedded-runtime.js';
import { startWorker } from '../../pipelines/runtime/kafka-runtime.js';
import { ContributionStore } from '../../pipelines/state/contributions.js';
import type { Contribution } from '../../pipelines/aggregate/aggregator.js';
import { runCellar } from '../support/cli.js';
import { testConfig } from '../support/kafka.js';
import { artifactDir, cellarEnv, freshDatabase, services } from '../support/services.js';

const log = createLogger('repartition-test', 'error');
const logDir = artifactDir('repartition');
/** librdkafka's mock cluster (the default test broker) cannot add partitions; a real cluster can. */
const mock = services().kafkaCompat === 'librdkafka-mock';

const KEYS = Array.from({ length: 60 }, (_, i) => ({ region: `r${i % 3}`, sku: `sku-${i}` }));

/** A Cellar deployment of its own: database, topic prefix (topics of 4 partitions), consumer groups. */
async function deployment(): Promise<{ cfg: RuntimeConfig; db: { url: string; pool: pg.Pool }; kafka: Kafka; admin: Admin; cli: (args: string[]) => ReturnType<typeof runCellar>; close(): Promise<void> }> {
  const db = await freshDatabase();
  const cfg = testConfig({ CELLAR_PG_URL: db.url, CELLAR_TOPIC_PARTITIONS: '4', CELLAR_TOPIC_REPLICATION: '-1', CELLAR_HTTP_PORT: '-1' });
  const kafka = createKafka(cfg, log, 'repartition-test');
  await ensureTopics(kafka, cfg);
  const admin = kafka.admin();
  await admin.connect();
  const env = cellarEnv({ CELLAR_PG_URL: db.url, CELLAR_TOPIC_PREFIX: cfg.topicPrefix, CELLAR_GROUP_PREFIX: cfg.groupPrefix, CELLAR_LOG_LEVEL: 'warn' });
  return {
    cfg, db, kafka, admin,
    cli: (args) => runCellar(['repartition', ...args], env, logDir),
    close: async () => {
      await admin.disconnect();
      await db.pool.end();
    },
  };
}

/** Two contributors per key filed under `partitionOf(key)`, and three rows of the embedded runtime. */
async function seed(pool: pg.Pool, partitionOf: (key: string) => number): Promise<void> {
  const store = new ContributionStore(pool);
  const row = (k: { region: string; sku: string }, contributorId: string): Contribution => ({
    ...k, contributorId, supplierId: 'acme', warehouseId: 'w1', bottleSizeMl: 750, bottles: 6, sourceVersion: '0001', sourceTsMs: Date.now(), deleted: false, keyVersion: 1,
  });
  for (const k of KEYS) await store.save([row(k, `acme:${k.sku}:a`), row(k, `acme:${k.sku}:b`)], partitionOf(stockKey(k.region, k.sku)));
  await store.save(KEYS.slice(0, 3).map((k) => row(k, `embedded:${k.sku}`)), EMBEDDED_PARTITION);
}

/** Partition of every contribution row, `region|sku|contributor` → partition. */
async function filed(pool: pg.Pool): Promise<Map<string, number>> {
  const { rows } = await pool.query<{ region: string; sku: string; contributor_id: string; partition: number }>('SELECT region, sku, contributor_id, partition FROM cellar.stock_contributions');
  return new Map(rows.map((r) => [`${r.region}|${r.sku}|${r.contributor_id}`, r.partition]));
}

/** Partition counts of the deployment's keyed topics as the broker reports them. */
async function partitionCounts(admin: Admin, cfg: RuntimeConfig): Promise<number[]> {
  const t = cellarTopics(cfg);
  const md = await admin.fetchTopicMetadata({ topics: [t.observations, t.regionalStock] });
  return [t.observations, t.regionalStock].map((name) => md.topics.find((x) => x.name === name)!.partitions.length);
}

/**
 * Where a Cellar producer really puts each key on a topic of `partitions` partitions: one record per key
 * sent to a topic of that size, and the partition the broker acknowledged it on.
 */
async function placedBy(d: Awaited<ReturnType<typeof deployment>>, partitions: number): Promise<Map<string, number>> {
  const topic = `${d.cfg.topicPrefix}.placement-${partitions}`;
  if (mock) await d.admin.fetchTopicMetadata({ topics: [topic] }); // the mock cluster creates it, always with 4 partitions
  else await d.admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: -1 }], waitForLeaders: true });
  expect((await d.admin.fetchTopicMetadata({ topics: [topic] })).topics[0]!.partitions.length).toBe(partitions);
  const producer = await connectProducer(d.kafka, d.cfg);
  try {
    const out = new Map<string, number>();
    for (const k of KEYS) {
      const key = stockKey(k.region, k.sku);
      const [meta] = await producer.send({ topic, acks: -1, messages: [{ key, value: 'x' }] });
      out.set(key, meta!.partition);
    }
    return out;
  } finally {
    await producer.disconnect();
  }
}

const rowsOf = (m: Map<string, number>, embedded: boolean) => [...m].filter(([k]) => k.includes('|embedded:') === embedded);

describe('cellar repartition', () => {
  let d: Awaited<ReturnType<typeof deployment>>;
  /** Where the producers put each key with 4 partitions, as the broker acknowledged it. */
  let placed4: Map<string, number>;
  let seeded: Map<string, number>;

  beforeAll(async () => {
    d = await deployment();
    placed4 = await placedBy(d, 4);
    // The aggregator's state as a deployment leaves it when its topics had 2 partitions and someone added
    // two with kafka-topics.sh --alter: each key filed under its partition of 2.
    const old = keyPartitioner(d.cfg);
    await seed(d.db.pool, (key) => old(key, 2));
    seeded = await filed(d.db.pool);
  }, 90_000);
  afterAll(async () => {
    await d?.close();
  });

  it('files every contribution under the partition its key\'s records land on (dry run first)', async () => {
    const t = cellarTopics(d.cfg);
    const off = rowsOf(seeded, false).filter(([k]) => seeded.get(k) !== placed4.get(k.split('|').slice(0, 2).join('|')));
    expect(off.length).toBeGreaterThan(0);
    const offKeys = new Set(off.map(([k]) => k.split('|').slice(0, 2).join('|'))).size;

    const dry = await d.cli(['--partitions', '4', '--dry-run']);
    expect(dry.code, dry.out).toBe(0);
    expect(dry.out).toMatch(new RegExp(`${t.observations.replace(/\./g, '\\.')}\\s+4 → 4 partitions \\(unchanged\\)`));
    expect(dry.out).toMatch(new RegExp(`${t.regionalStock.replace(/\./g, '\\.')}\\s+4 → 4 partitions \\(unchanged\\)`));
    expect(dry.out).toContain(`${off.length} of 120 rows (${offKeys} of 60 keys) would be re-filed under their key's partition of 4`);
    expect(dry.out).toContain('3 rows of the embedded runtime, partition -1, are not Kafka partitions and are left as they are');
    expect(await filed(d.db.pool)).toEqual(seeded);

    const run = await d.cli(['--partitions', '4']);
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain(`${off.length} of 120 rows (${offKeys} of 60 keys) re-filed under their key's partition of 4`);
    expect(run.out).toContain('Done. Start the aggregators, then the normalizers');
    const now = await filed(d.db.pool);
    for (const [k, p] of rowsOf(now, false)) expect(p, k).toBe(placed4.get(k.split('|').slice(0, 2).join('|')));
    for (const [k, p] of rowsOf(now, true)) expect(p, k).toBe(EMBEDDED_PARTITION);
    expect(await partitionCounts(d.admin, d.cfg)).toEqual([4, 4]);

    const again = await d.cli(['--partitions', '4']);
    expect(again.code, again.out).toBe(0);
    expect(again.out).toContain(`Nothing to do: ${t.observations} and ${t.regionalStock} have 4 partitions`);
  }, 90_000);

  it('never lowers the partition count', async () => {
    const before = await filed(d.db.pool);
    const r = await d.cli(['--partitions', '2']);
    expect(r.code, r.out).toBe(2);
    expect(r.out).toContain(`${cellarTopics(d.cfg).observations} has 4 partitions and --partitions asks for 2: Kafka cannot remove partitions`);
    expect(await filed(d.db.pool)).toEqual(before);
    expect(await partitionCounts(d.admin, d.cfg)).toEqual([4, 4]);
  }, 60_000);

  it('names a bad --partitions', async () => {
    const r = await d.cli(['--partitions', 'many']);
    expect(r.code).toBe(2);
    expect(r.out).toContain('--partitions "many": expected a whole number of partitions from 1 to 10000');
    const none = await d.cli([]);
    expect(none.code).toBe(2);
    expect(none.out).toContain('--partitions <n> is required');
  }, 60_000);

  it.runIf(mock)('on the mock cluster: plans adding partitions, then says it cannot add them and changes nothing', async () => {
    const t = cellarTopics(d.cfg);
    const before = await filed(d.db.pool);
    const to8 = keyPartitioner(d.cfg);
    const moving = rowsOf(before, false).filter(([k, p]) => to8(k.split('|').slice(0, 2).join('|'), 8) !== p).length;
    expect(moving).toBeGreaterThan(0);

    const dry = await d.cli(['--partitions', '8', '--dry-run']);
    expect(dry.code, dry.out).toBe(2);
    expect(dry.out).toMatch(new RegExp(`${t.observations.replace(/\./g, '\\.')}\\s+4 → 8 partitions \\(would add 4\\)`));
    expect(dry.out).toMatch(new RegExp(`${t.regionalStock.replace(/\./g, '\\.')}\\s+4 → 8 partitions \\(would add 4\\)`));
    expect(dry.out).toMatch(new RegExp(`${moving} of 120 rows \\(\\d+ of 60 keys\\) would be re-filed under their key's partition of 8`));
    expect(dry.out).toContain('would be refused');
    expect(dry.out).toContain('librdkafka\'s mock cluster (CELLAR_KAFKA_COMPAT=librdkafka-mock), which has no CreatePartitions API');

    const run = await d.cli(['--partitions', '8']);
    expect(run.code, run.out).toBe(2);
    expect(run.out).toContain('refused, nothing changed');
    expect(run.out).toContain('has no CreatePartitions API');
    expect(await filed(d.db.pool)).toEqual(before);
    expect(await partitionCounts(d.admin, d.cfg)).toEqual([4, 4]);
  }, 60_000);

  it.runIf(!mock)('on a real cluster: adds the partitions and files every contribution where the producers now put its key', async () => {
    const run = await d.cli(['--partitions', '8']);
    expect(run.code, run.out).toBe(0);
    expect(run.out).toMatch(/4 → 8 partitions \(added 4\)/);
    expect(await partitionCounts(d.admin, d.cfg)).toEqual([8, 8]);
    const placed8 = await placedBy(d, 8);
    for (const [k, p] of rowsOf(await filed(d.db.pool), false)) expect(p, k).toBe(placed8.get(k.split('|').slice(0, 2).join('|')));
  }, 90_000);
});

describe('cellar repartition refuses', () => {
  const open: Array<{ close(): Promise<void> }> = [];
  afterAll(async () => {
    for (const o of open) await o.close();
  });

  it('while an aggregator of the deployment runs', async () => {
    const d = await deployment();
    open.push(d);
    await seed(d.db.pool, () => 0);
    const before = await filed(d.db.pool);
    const worker = await startWorker('aggregator', d.cfg, log, new CellarMetrics(false));
    try {
      const r = await d.cli(['--partitions', '4']);
      expect(r.code, r.out).toBe(2);
      expect(r.out).toContain('refused, nothing changed');
      expect(r.out).toMatch(mock ? /no DescribeGroups: librdkafka's mock cluster.*its aggregator on .* pid \d+\) was seen \d+ s ago in cellar\.deployments/ : /consumer group \S+-aggregator has 1 member/);
      expect(await filed(d.db.pool)).toEqual(before);
    } finally {
      await worker.stop();
    }
  }, 90_000);

  it('while observations wait for the aggregators', async () => {
    const d = await deployment();
    open.push(d);
    await seed(d.db.pool, () => 0);
    const before = await filed(d.db.pool);
    const producer = await connectProducer(d.kafka, d.cfg);
    await producer.send({ topic: cellarTopics(d.cfg).observations, acks: -1, messages: KEYS.slice(0, 3).map((k) => ({ key: stockKey(k.region, k.sku), value: 'x' })) });
    await producer.disconnect();
    const dry = await d.cli(['--partitions', '4', '--dry-run']);
    expect(dry.code, dry.out).toBe(2);
    expect(dry.out).toContain('would be refused');
    const r = await d.cli(['--partitions', '4']);
    expect(r.code, r.out).toBe(2);
    expect(r.out).toMatch(/consumer group \S+-aggregator has not aggregated 3 observations yet/);
    expect(await filed(d.db.pool)).toEqual(before);
  }, 90_000);
});
