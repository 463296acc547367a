import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import type { ChangeSpec } from '../connectors/debezium/envelope.js';
import { startLocalStack, type LocalStack } from '../infra/local/stack.js';
import { spawnCellar } from '../infra/local/cellar-process.js';
import { freePort, stopChild, tempDir } from '../infra/local/process.js';
import { loadRuntimeConfig } from '../pipelines/core/config.js';
import { createLogger } from '../pipelines/core/logger.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { connectProducer, createKafka, ensureTopics } from '../pipelines/kafka/client.js';
import { WORKER_ROLES } from '../pipelines/runtime/kafka-runtime.js';
import { migrate } from '../pipelines/state/migrate.js';
import { SimulatedTable, type RawMessage } from '../pipelines/demo/simulated-table.js';
import { readRegionSnapshot } from '../sinks/redis/read.js';
import { debeziumAvroWriter } from './debezium-avro-writer.js';
import { result, type BenchResult } from './harness.js';

const SKUS = 2_000;
const DEPOTS = 6;
const ROWS = SKUS * DEPOTS;
const CHANGES = 60_000;
const COLUMNS = [{ name: 'id', type: 'int32' as const, optional: false }, { name: 'item_code', type: 'string' as const }, { name: 'depot', type: 'string' as const }, { name: 'qty', type: 'int32' as const }];
/**
 * The test broker keeps about 5 MB per partition and deletes older segments even when nobody read them:
 * the publisher keeps at most this many bytes of raw changes ahead of the normalizer (over 4 partitions;
 * a real cluster's retention is hours). What is measured is the pipeline's rate, not the publisher's.
 */
const MAX_IN_FLIGHT_BYTES = 8 << 20;

/** Raw topic format: Debezium Avro through the Schema Registry, or Debezium JSON with schemas. */
type Format = 'avro' | 'json';

/** Turns the simulated table's Debezium JSON into the Avro messages the connector would write with the Schema Registry. */
async function avroEncoder(registryUrl: string, table: SimulatedTable): Promise<(m: RawMessage) => { key: Buffer; value: Buffer }> {
  const write = await debeziumAvroWriter(registryUrl, table.info, table.columns);
  return (m) => {
    const p = (JSON.parse(m.value!) as { payload: { op: ChangeSpec['op']; before: Record<string, unknown> | null; after: Record<string, unknown> | null; source: { ts_ms: number; lsn: number; txId: number } } }).payload;
    return write({ op: p.op, before: p.before, after: p.after, tsMs: p.source.ts_ms, lsn: p.source.lsn, txId: p.source.txId });
  };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A worker's counters of how it batches: partition batches and their messages, produce requests and the sends they carried. */
interface Batching { batches: number; messages: number; requests: number; sends: number }

/** Reads {@link Batching} from a worker's /metrics (zeros where it has none yet). */
async function batching(port: number): Promise<Batching> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => '');
  const sum = (re: RegExp) => [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
  return {
    batches: sum(/^cellar_kafka_batch_messages_count\{[^}]*\} (\S+)$/gm),
    messages: sum(/^cellar_kafka_batch_messages_sum\{[^}]*\} (\S+)$/gm),
    requests: sum(/^cellar_kafka_produce_requests_total (\S+)$/gm),
    sends: sum(/^cellar_kafka_produce_sends_total (\S+)$/gm),
  };
}

/** User + system CPU time of a process from /proc, ms (Linux). */
function cpuMs(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/**
 * The Kafka runtime end to end through the broker: Debezium JSON changes of one supplier table published
 * to its raw topic, normalized, aggregated and written to Postgres and Redis by the four worker processes
 * (`cellar run normalizer|aggregator|sink-postgres|sink-redis`), on private services (the librdkafka mock
 * broker, an in-process Schema Registry, embedded Postgres, redis-server). Sustained changes/s from the
 * first publish until both stores hold the final totals, and where the time goes: each worker's CPU per
 * change (µs), read from /proc.
 */
/**
 * The Kafka runtime end to end through the broker: Debezium changes of supplier tables published to their
 * raw topics, normalized, aggregated and written to Postgres and Redis by the four worker processes
 * (`cellar run normalizer|aggregator|sink-postgres|sink-redis`), on private services (the librdkafka mock
 * broker, an in-process Schema Registry, embedded Postgres, redis-server). Two raw formats, one after the
 * other through the same workers: Debezium Avro through the Schema Registry (about 90 bytes a change) and
 * Debezium JSON with schemas (about 2.2 KB). Sustained changes/s from the first publish until both stores
 * hold the final totals, and where the time goes: each worker's CPU per change (µs), read from /proc.
 */
export async function kafkaBenchmarks(): Promise<BenchResult[]> {
  const stack: LocalStack = await startLocalStack({ envPrefix: 'CELLAR_BENCH_', docker: 'never' });
  const workers = new Map<string, ChildProcess>();
  let kafkaAdmin: { disconnect(): Promise<void> } | undefined;
  const work = tempDir('bench-kafka');
  const pool = createPgPool(stack.pgUrl, { max: 2 });
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  try {
    // CELLAR_BENCH_KAFKA_FORMATS=avro runs one of them (a profile of one format).
    const formats = (process.env.CELLAR_BENCH_KAFKA_FORMATS ?? 'avro,json').split(',').filter((f): f is Format => f === 'avro' || f === 'json');
    const tables = new Map(formats.map((f) => [f, new SimulatedTable({ connector: 'postgresql', name: `bench_${f}`, db: 'inv', schema: 'public', table: 'stock' }, COLUMNS, ['id'])]));
    const suppliers = join(work, 'suppliers');
    mkdirSync(suppliers, { recursive: true });
    for (const f of formats) {
      writeFileSync(join(suppliers, `bench-${f}.yaml`), `id: bench-${f}
name: Bench ${f}
source:
  kind: postgres
  connection: { host: bench.internal, database: inv, user: cdc }
  topicPrefix: bench_${f}
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: qty
  regions: { d0: eu, d1: eu, d2: us, d3: us, d4: ap, d5: ap }
`);
    }
    const env: Record<string, string> = {
      CELLAR_KAFKA_BROKERS: stack.kafkaBrokers.join(','), CELLAR_KAFKA_COMPAT: stack.kafkaCompat, CELLAR_SCHEMA_REGISTRY_URL: stack.schemaRegistryUrl,
      CELLAR_PG_URL: stack.pgUrl, CELLAR_REDIS_URL: stack.redisUrl, CELLAR_SUPPLIERS_DIR: suppliers, CELLAR_LOG_LEVEL: process.env.CELLAR_BENCH_LOG_LEVEL ?? 'warn',
    };
    const cfg = loadRuntimeConfig({ ...process.env, ...env });
    await migrate(pool);
    const kafka = createKafka(cfg, createLogger('bench-kafka', 'warn'), 'bench');
    await ensureTopics(kafka, cfg, [...tables.values()].map((t) => t.topic));
    const producer = await connectProducer(kafka, cfg);
    const encoders = new Map<Format, (m: RawMessage) => { key: Buffer | string | null; value: Buffer | string | null }>([
      ['avro', await avroEncoder(stack.schemaRegistryUrl, tables.get('avro')!)],
      ['json', (m) => ({ key: m.key, value: m.value })],
    ]);
    const ports = new Map<string, number>();
    for (const role of WORKER_ROLES) {
      ports.set(role, await freePort());
      workers.set(role, spawnCellar(['run', role], { ...env, CELLAR_HTTP_PORT: String(ports.get(role)) }, join(work, `${role}.log`)));
    }
    const batchingAll = async () => Object.fromEntries(await Promise.all([...ports].map(async ([role, port]) => [role, await batching(port)] as const)));
    const admin = kafka.admin();
    kafkaAdmin = admin;
    await admin.connect();
    /** Raw messages published to `topic` and not yet committed by the normalizer group. */
    const normalizerLag = async (topic: string) => {
      const [ends, committed] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId: `${cfg.groupPrefix}-normalizer`, topics: [topic] })]);
      const at = new Map(committed[0]?.partitions.map((p) => [p.partition, Number(p.offset)]) ?? []);
      return ends.reduce((n, e) => n + Number(e.high) - Math.max(Number(e.low), at.get(e.partition) ?? -1), 0);
    };
    const publish = async (topic: string, messages: Array<{ key: Buffer | string | null; value: Buffer | string | null }>) => {
      const bytes = messages.reduce((n, m) => n + (m.value?.length ?? 0) + (m.key?.length ?? 0), 0) / Math.max(1, messages.length);
      const maxInFlight = Math.floor(MAX_IN_FLIGHT_BYTES / bytes);
      const chunk = Math.max(250, Math.min(5_000, Math.floor(maxInFlight / 8)));
      for (let i = 0; i < messages.length; i += chunk) {
        while ((await normalizerLag(topic)) > maxInFlight - chunk) await sleep(20);
        await producer.send({ topic, acks: -1, messages: messages.slice(i, i + chunk) });
      }
      return { bytes: Math.round(bytes), maxInFlight };
    };
    const expectedSum = () => [...tables.values()].reduce((n, t) => n + [...t.rows.values()].reduce((m, r) => m + (r.qty as number), 0), 0);
    /** Postgres' total, and Redis' only once Postgres is there (reading every key costs the machine CPU the workers need). */
    const sums = async (want: number) => {
      const { rows } = await pool.query<{ s: string | null }>('SELECT sum(bottles)::text AS s FROM cellar.regional_stock').catch(() => ({ rows: [{ s: null }] }));
      const pg = Number(rows[0]?.s ?? 0);
      let r = 0;
      if (pg === want) for (const region of ['eu', 'us', 'ap']) for (const v of (await readRegionSnapshot(redis, region).catch(() => new Map<string, number>())).values()) r += v;
      return { pg, redis: r };
    };
    const caughtUp = async (timeoutMs: number) => {
      const want = expectedSum();
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = await sums(want);
        if (s.pg === want && s.redis === want) return;
        if (Date.now() > deadline) {
          const q = async (sql: string) => JSON.stringify((await pool.query(sql).catch((e: Error) => ({ rows: [e.message] }))).rows);
          throw new Error(`Kafka runtime not caught up after ${timeoutMs} ms: Postgres ${s.pg}, Redis ${s.redis}, expected ${want}; contributions ${await q('SELECT count(*), sum(bottles) FROM cellar.stock_contributions')}; dead letters ${await q('SELECT reason, count(*) FROM cellar.dead_letters GROUP BY 1')} (logs in ${work})`);
        }
        await sleep(50);
      }
    };
    const out: BenchResult[] = [];
    for (const format of formats) {
      const table = tables.get(format)!;
      const encode = encoders.get(format)!;
      const prefix = format === 'avro' ? 'a' : 'j';
      const rows: RawMessage[] = [];
      for (let id = 0; id < ROWS; id++) rows.push(...table.insert({ id, item_code: `${prefix}-wine-${id % SKUS}`, depot: `d${id % DEPOTS}`, qty: 100 }));
      await publish(table.topic, rows.map(encode));
      await caughtUp(Number(process.env.CELLAR_BENCH_WARMUP_MS ?? 300_000)); // warm-up: the snapshot, groups joined, schemas registered

      const throughput: number[] = [];
      const publishRate: number[] = [];
      const cpu: Array<Record<string, number>> = [];
      const perBatch: Array<Record<string, number>> = [];
      const perRequest: Array<Record<string, number>> = [];
      let sent = { bytes: 0, maxInFlight: 0 };
      for (let run = 0; run < 3; run++) {
        const batch: RawMessage[] = [];
        for (let i = 0; i < CHANGES; i++) {
          const id = (run * CHANGES + i * 7) % ROWS;
          batch.push(...table.update({ id }, { qty: (table.rows.get(String(id))!.qty as number) + 1 }));
        }
        const messages = batch.map(encode);
        const cpu0 = Object.fromEntries([...workers].map(([role, c]) => [role, cpuMs(c.pid)]));
        const batching0 = await batchingAll();
        const t0 = Date.now();
        sent = await publish(table.topic, messages);
        publishRate.push(CHANGES / ((Date.now() - t0) / 1000));
        await caughtUp(300_000);
        throughput.push(CHANGES / ((Date.now() - t0) / 1000));
        cpu.push(Object.fromEntries([...workers].map(([role, c]) => [role, Math.round(((cpuMs(c.pid) - cpu0[role]!) * 1000) / CHANGES)])));
        const batching1 = await batchingAll();
        const ratio = (a: number, b: number) => (b > 0 ? Math.round((10 * a) / b) / 10 : 0);
        perBatch.push(Object.fromEntries(Object.entries(batching1).map(([role, b]) => [role, ratio(b.messages - batching0[role]!.messages, b.batches - batching0[role]!.batches)])));
        perRequest.push(Object.fromEntries(Object.entries(batching1).map(([role, b]) => [role, ratio(b.sends - batching0[role]!.sends, b.requests - batching0[role]!.requests)])));
      }
      const label = format === 'avro' ? 'Debezium Avro' : 'Debezium JSON with schemas';
      out.push(result(`kafka runtime: sustained changes/s, raw topic (${label}) → Postgres + Redis (4 worker processes)`, 'changes/s', throughput, {
        target: 30_000,
        details: { rows: ROWS, changesPerRun: CHANGES, rawMessageBytes: sent.bytes, maxInFlight: sent.maxInFlight, publishChangesPerS: publishRate.map(Math.round), cpuMicrosPerChangeByWorker: cpu, messagesPerBatchByWorker: perBatch, sendsPerProduceRequestByWorker: perRequest, broker: stack.kafkaCompat },
      }));
    }
    return out;
  } finally {
    await kafkaAdmin?.disconnect().catch(() => undefined);
    await Promise.all([...workers.values()].map((c) => stopChild(c, 'SIGTERM', 15_000).catch(() => undefined)));
    redis.disconnect();
    await pool.end().catch(() => undefined);
    await stack.stop();
  }
}
