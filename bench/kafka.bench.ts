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
import { cellarTopics } from '../pipelines/kafka/topics.js';
import { WORKER_ROLES } from '../pipelines/runtime/kafka-runtime.js';
import { migrate } from '../pipelines/state/migrate.js';
import { SimulatedTable, type RawMessage } from '../pipelines/demo/simulated-table.js';
import { readRegionSnapshot } from '../sinks/redis/read.js';
import { redisKeys } from '../sinks/redis/config.js';
import { debeziumAvroWriter } from './debezium-avro-writer.js';
import { result, type BenchResult } from './harness.js';
import { cpuBetween, cpuByProcess, machineCpuMs, residentMiB } from './proc.js';

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
/**
 * Observations not yet taken by the aggregator, counting the raw changes the normalizer has still to turn into
 * them, before the publisher waits too. The test broker keeps about 5 MB of each partition, about 21,000
 * observations of about 240 bytes; four partitions keep about 84,000, and this leaves room for an uneven spread.
 */
const MAX_OBSERVATIONS_IN_FLIGHT = 40_000;

/** The suppliers' depots and their regions. */
const REGIONS: Record<string, string> = { d0: 'eu', d1: 'eu', d2: 'us', d3: 'us', d4: 'ap', d5: 'ap' };

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

/**
 * The Kafka runtime end to end through the broker: Debezium changes of supplier tables published to their
 * raw topics, normalized, aggregated and written to Postgres and Redis by the four worker processes
 * (`cellar run normalizer|aggregator|sink-postgres|sink-redis`), on private services (the librdkafka mock
 * broker, an in-process Schema Registry, embedded Postgres, redis-server). Two raw formats, one after the
 * other through the same workers: Debezium Avro through the Schema Registry (about 90 bytes a change) and
 * Debezium JSON with schemas (about 2.2 KB). Sustained changes/s from the first publish until both stores
 * hold the final totals, and where the time goes: each worker's CPU per change (µs), read from /proc. Then
 * a restart: the time until a change made while the workers were stopped is counted, and how much of it
 * followed the consumer groups' join.
 */
export async function kafkaBenchmarks(): Promise<BenchResult[]> {
  // CELLAR_BENCH_KAFKA_FORMATS=avro runs one of them (a profile of one format).
  const formats = (process.env.CELLAR_BENCH_KAFKA_FORMATS ?? 'avro,json').split(',').filter((f): f is Format => f === 'avro' || f === 'json');
  return runKafkaCases(formats.map((format) => ({ id: format, format, rows: ROWS })));
}

/**
 * The Kafka workers as work grows: the Avro case at 100k and 1M contributors (supplier rows; add 10M with
 * `CELLAR_BENCH_KAFKA_SCALE_SIZES=100000,1000000,10000000`), one after the other through the same four
 * workers with the default `CELLAR_STATE_CACHE_CONTRIBUTORS` (250k), SKUs growing with the rows as in the scale
 * suite (each held in six depots, two contributors to each region's total): sustained changes/s of updates spread
 * over every row, each worker's CPU per change and resident memory (now and at its peak), and the ratio of
 * the largest size's throughput to the smallest's; and the restart time at each size.
 */
export async function kafkaScaleBenchmarks(): Promise<BenchResult[]> {
  const sizes = (process.env.CELLAR_BENCH_KAFKA_SCALE_SIZES ?? '100000,1000000').split(',').map(Number).filter((n) => Number.isSafeInteger(n) && n > 0);
  // Contributors to each total (even; default 2): more makes the totals wide, as a distributor's that gather many suppliers' rows.
  const perKey = Number(process.env.CELLAR_BENCH_KAFKA_SCALE_CONTRIBUTORS_PER_KEY ?? 2);
  const wide = perKey === 2 ? '' : ` (${perKey} a key)`;
  const out = await runKafkaCases(sizes.map((rows) => ({ id: `s${rows}`, format: 'avro' as const, rows, perKey, label: `${rows.toLocaleString('en-US')} contributors${wide}` })));
  const rates = out.filter((r) => r.unit === 'changes/s');
  if (rates.length > 1) {
    const ratio = rates.at(-1)!.median / rates[0]!.median;
    out.push(result(`kafka runtime at scale: throughput at ${sizes.at(-1)!.toLocaleString('en-US')} ÷ at ${sizes[0]!.toLocaleString('en-US')} contributors`, 'ratio', [ratio], { target: 0.7, details: { sizes } }));
  }
  return out;
}

/** One contestant table of {@link runKafkaCases}: its raw format and how many rows (contributors) it has. */
interface KafkaCase {
  id: string;
  format: Format;
  rows: number;
  label?: string;
  /** Contributors to each region's total (default 2: a SKU in each of the six depots once). */
  perKey?: number;
}

async function runKafkaCases(cases: KafkaCase[]): Promise<BenchResult[]> {
  const stack: LocalStack = await startLocalStack({ envPrefix: 'CELLAR_BENCH_', docker: 'never' });
  const workers = new Map<string, ChildProcess>();
  let kafkaAdmin: { disconnect(): Promise<void> } | undefined;
  const work = tempDir('bench-kafka');
  const pool = createPgPool(stack.pgUrl, { max: 2 });
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  try {
    const tables = new Map(cases.map((c) => [c.id, new SimulatedTable({ connector: 'postgresql', name: `bench_${c.id}`, db: 'inv', schema: 'public', table: 'stock' }, COLUMNS, ['id'])]));
    const suppliers = join(work, 'suppliers');
    mkdirSync(suppliers, { recursive: true });
    for (const { id: f } of cases) {
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
  regions: { ${Object.entries(REGIONS).map(([d, r]) => `${d}: ${r}`).join(', ')} }
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
    const encoders = new Map<string, (m: RawMessage) => { key: Buffer | string | null; value: Buffer | string | null }>();
    for (const c of cases) encoders.set(c.id, c.format === 'avro' ? await avroEncoder(stack.schemaRegistryUrl, tables.get(c.id)!) : (m) => ({ key: m.key, value: m.value }));
    const ports = new Map<string, number>();
    let starts = 0;
    const logOf = (role: string) => join(work, `${role}${starts ? `-${starts}` : ''}.log`);
    // A restarted worker logs at info, so its log says when it joined its consumer group ('joined consumer group').
    const spawnWorker = (role: string) => workers.set(role, spawnCellar(['run', role], { ...env, CELLAR_HTTP_PORT: String(ports.get(role)), ...(starts ? { CELLAR_LOG_LEVEL: 'info' } : {}) }, logOf(role)));
    /** When the worker started last joined its consumer group (epoch ms), from its log. */
    const joinedAt = (role: string): number => {
      const line = readFileSync(logOf(role), 'utf8').split('\n').find((l) => l.includes('"joined consumer group"'));
      const time = line ? (JSON.parse(line) as { time: string | number }).time : undefined;
      return time === undefined ? NaN : typeof time === 'number' ? time : Date.parse(time);
    };
    for (const role of WORKER_ROLES) {
      ports.set(role, await freePort());
      spawnWorker(role);
    }
    const batchingAll = async () => Object.fromEntries(await Promise.all([...ports].map(async ([role, port]) => [role, await batching(port)] as const)));
    const admin = kafka.admin();
    kafkaAdmin = admin;
    await admin.connect();
    /** Messages of `topic` not yet committed by the consumer group of `role`. */
    const lag = async (role: string, topic: string) => {
      const [ends, committed] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId: `${cfg.groupPrefix}-${role}`, topics: [topic] })]);
      const at = new Map(committed[0]?.partitions.map((p) => [p.partition, Number(p.offset)]) ?? []);
      return ends.reduce((n, e) => n + Number(e.high) - Math.max(Number(e.low), at.get(e.partition) ?? -1), 0);
    };
    const observations = cellarTopics(cfg).observations;
    /**
     * Whether the publisher must wait: raw changes the normalizer has not taken, or observations the
     * aggregator has not (it falls behind the normalizer when most keys must be read from Postgres), near
     * what the test broker keeps.
     */
    const behind = async (topic: string, maxInFlight: number, chunk: number) => {
      const raw = await lag('normalizer', topic);
      return raw > maxInFlight - chunk || raw + (await lag('aggregator', observations)) > MAX_OBSERVATIONS_IN_FLIGHT - chunk;
    };
    const publish = async (topic: string, messages: Array<{ key: Buffer | string | null; value: Buffer | string | null }>) => {
      const bytes = messages.reduce((n, m) => n + (m.value?.length ?? 0) + (m.key?.length ?? 0), 0) / Math.max(1, messages.length);
      const maxInFlight = Math.floor(MAX_IN_FLIGHT_BYTES / bytes);
      const chunk = Math.max(250, Math.min(5_000, Math.floor(maxInFlight / 8)));
      for (let i = 0; i < messages.length; i += chunk) {
        while (await behind(topic, maxInFlight, chunk)) await sleep(20);
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
    /** Error lines (level ≥ 50) of the workers' logs, each with its worker, the last `max` of them. */
    const workerErrors = (max = 5) =>
      WORKER_ROLES.flatMap((role) => {
        let text = '';
        try {
          text = readFileSync(join(work, `${role}.log`), 'utf8');
        } catch {
          return [];
        }
        return text.split('\n').filter((l) => /"level":(50|60)/.test(l)).map((l) => `${role}: ${l.slice(0, 400)}`);
      }).slice(-max);
    const { regionalStock } = cellarTopics(cfg);
    /**
     * Whether every group has committed all it was given: the raw topic by the normalizer, observations by the
     * aggregator, totals by both sinks. Read in that order, so each topic's end already holds what the group
     * before produced (workers commit only after their outputs are acknowledged and written).
     */
    const drained = async (rawTopic: string) =>
      (await lag('normalizer', rawTopic)) === 0 && (await lag('aggregator', observations)) === 0 &&
      (await lag('sink-postgres', regionalStock)) === 0 && (await lag('sink-redis', regionalStock)) === 0;
    /**
     * Waits until the workers have taken every change (cheap: consumer-group offsets), then checks Postgres'
     * and Redis' totals against the table's; returns when the workers were done, ms. Summing 500k totals
     * every few ms would cost the machine more CPU than the workers it measures, so the totals are read only
     * once offsets say they are final; should they differ, they are polled until they agree (and that time counts).
     */
    const caughtUp = async (timeoutMs: number, rawTopic: string, want: number, onDone: () => void = () => undefined): Promise<number> => {
      const deadline = Date.now() + timeoutMs;
      let doneAt: number | undefined;
      let polling = false;
      for (let i = 0; ; i++) {
        if (!polling && (await drained(rawTopic))) {
          doneAt = Date.now();
          onDone();
        }
        if (polling || doneAt !== undefined) {
          const s = await sums(want);
          if (s.pg === want && s.redis === want) {
            if (polling) onDone();
            return polling ? Date.now() : doneAt!;
          }
          polling = true;
        }
        // Changes skipped by the test broker's retention never arrive: fail at once, with the workers' words.
        const lost = i % 20 === 0 ? workerErrors().filter((l) => l.includes('no longer has the next message')) : [];
        if (lost.length) throw new Error(`Kafka runtime lost changes to the test broker's retention (expected a total of ${want}); the publisher's pacing let a group fall too far behind:\n${lost.join('\n')}`);
        if (Date.now() > deadline) {
          const s = await sums(want);
          const q = async (sql: string) => JSON.stringify((await pool.query(sql).catch((e: Error) => ({ rows: [e.message] }))).rows);
          const lags = JSON.stringify({ normalizer: await lag('normalizer', rawTopic), aggregator: await lag('aggregator', observations), sinkPostgres: await lag('sink-postgres', regionalStock), sinkRedis: await lag('sink-redis', regionalStock) });
          throw new Error(`Kafka runtime not caught up after ${timeoutMs} ms: Postgres ${s.pg}, Redis ${s.redis}, expected ${want}; messages not committed by group ${lags}; contributions ${await q('SELECT count(*), sum(bottles) FROM cellar.stock_contributions')}; dead letters ${await q('SELECT reason, count(*) FROM cellar.dead_letters GROUP BY 1')}; workers' last errors: ${JSON.stringify(workerErrors())} (logs in ${work})`);
        }
        await sleep(polling ? 200 : 20);
      }
    };
    const out: BenchResult[] = [];
    for (const { id: caseId, format, rows: rowCount, label: sizeLabel, perKey = 2 } of cases) {
      const table = tables.get(caseId)!;
      const encode = encoders.get(caseId)!;
      // SKUs grow with the rows, as in the scale suite: each SKU held in the six depots, two in each region
      // (perKey / 2 rows of it in each depot when totals are wider).
      const skus = Math.max(perKey === 2 ? SKUS : 1, Math.ceil(rowCount / ((DEPOTS * perKey) / 2)));
      // The snapshot in chunks: a million Debezium JSON messages would not fit in memory at once.
      const snapshotStart = Date.now();
      for (let from = 0; from < rowCount; from += 20_000) {
        const rows: RawMessage[] = [];
        for (let id = from; id < Math.min(rowCount, from + 20_000); id++) rows.push(...table.insert({ id, item_code: `${caseId}-wine-${id % skus}`, depot: `d${id % DEPOTS}`, qty: 100 }));
        await publish(table.topic, rows.map(encode));
      }
      // Warm-up: the snapshot, groups joined, schemas registered.
      const snapshotDone = await caughtUp(Number(process.env.CELLAR_BENCH_WARMUP_MS ?? Math.max(300_000, rowCount)), table.topic, expectedSum());
      const snapshotRate = rowCount / ((snapshotDone - snapshotStart) / 1000);

      const throughput: number[] = [];
      const publishRate: number[] = [];
      const cpu: Array<Record<string, number>> = [];
      const perBatch: Array<Record<string, number>> = [];
      const perRequest: Array<Record<string, number>> = [];
      const others: Array<Record<string, number>> = [];
      const busy: number[] = [];
      let sent = { bytes: 0, maxInFlight: 0 };
      for (let run = 0; run < 3; run++) {
        const batch: RawMessage[] = [];
        for (let i = 0; i < CHANGES; i++) {
          const id = (run * CHANGES + i * 7) % rowCount;
          batch.push(...table.update({ id }, { qty: (table.rows.get(String(id))!.qty as number) + 1 }));
        }
        const messages = batch.map(encode);
        // Summed before the clock starts: at 10M rows that takes a second of the bench's CPU.
        const want = expectedSum();
        const batching0 = await batchingAll();
        const procs0 = cpuByProcess();
        const machine0 = machineCpuMs();
        const t0 = Date.now();
        sent = await publish(table.topic, messages);
        publishRate.push(CHANGES / ((Date.now() - t0) / 1000));
        let procs1 = procs0;
        let machine1 = machine0;
        const t1 = await caughtUp(300_000, table.topic, want, () => {
          procs1 = cpuByProcess();
          machine1 = machineCpuMs();
        });
        throughput.push(CHANGES / ((t1 - t0) / 1000));
        busy.push(Math.round((100 * (machine1.busy - machine0.busy)) / Math.max(1, machine1.total - machine0.total)));
        // Everything else on the machine: Cellar's Postgres, Redis, the test broker, this bench (publisher, checks).
        const named = new Map<number, string>([...workers].map(([role, c]) => [c.pid!, role] as const));
        named.set(process.pid, 'bench');
        const used = cpuBetween(procs0, procs1, named);
        const perChange = (ms: number) => Math.round((ms * 1000) / CHANGES);
        cpu.push(Object.fromEntries([...workers.keys()].map((role) => [role, perChange(used[role] ?? 0)])));
        for (const role of workers.keys()) delete used[role];
        others.push(Object.fromEntries(Object.entries(used).filter(([, ms]) => (ms * 1000) / CHANGES >= 1).map(([name, ms]) => [name, perChange(ms)])));
        const batching1 = await batchingAll();
        const ratio = (a: number, b: number) => (b > 0 ? Math.round((10 * a) / b) / 10 : 0);
        perBatch.push(Object.fromEntries(Object.entries(batching1).map(([role, b]) => [role, ratio(b.messages - batching0[role]!.messages, b.batches - batching0[role]!.batches)])));
        perRequest.push(Object.fromEntries(Object.entries(batching1).map(([role, b]) => [role, ratio(b.sends - batching0[role]!.sends, b.requests - batching0[role]!.requests)])));
      }
      const label = (format === 'avro' ? 'Debezium Avro' : 'Debezium JSON with schemas') + (sizeLabel ? `, ${sizeLabel}` : '');
      const memory = Object.fromEntries([...workers].map(([role, c]) => [role, residentMiB(c.pid)]));

      /**
       * Restart, as after a deploy (every worker stopped with SIGTERM) and after a crash (the aggregator killed
       * with SIGKILL: its group waits for the session timeout before its partitions move): one row changed
       * while stopped, the worker(s) started again; ms from their start until its total is in Postgres and Redis.
       */
      const restart = async (roles: readonly string[], signal: 'SIGTERM' | 'SIGKILL'): Promise<{ ms: number; joinedMs: number }> => {
        await Promise.all(roles.map((role) => stopChild(workers.get(role)!, signal, 30_000)));
        const row = table.rows.get('0')!;
        await producer.send({ topic: table.topic, acks: -1, messages: table.update({ id: 0 }, { qty: (row.qty as number) + 1 }).map(encode) });
        const sku = row.item_code as string;
        const region = REGIONS[row.depot as string]!;
        let want = 0;
        for (const r of table.rows.values()) if (r.item_code === sku && REGIONS[r.depot as string] === region) want += r.qty as number;
        starts++;
        const t0 = Date.now();
        for (const role of roles) spawnWorker(role);
        for (;;) {
          const { rows } = await pool.query<{ b: string }>('SELECT bottles::text AS b FROM cellar.regional_stock WHERE region = $1 AND sku = $2', [region, sku]).catch(() => ({ rows: [] }));
          if (Number(rows[0]?.b) === want && Number(await redis.hget(redisKeys('cellar', region).stock, sku).catch(() => null)) === want) {
            return { ms: Date.now() - t0, joinedMs: Math.max(...roles.map(joinedAt)) - t0 };
          }
          if (Date.now() - t0 > 300_000) throw new Error(`Kafka runtime: a change made while ${roles.join(', ')} stopped (${signal}) was not counted 300 s after the start (${region}|${sku}: want ${want}, Postgres ${rows[0]?.b}); workers' last errors: ${JSON.stringify(workerErrors())} (logs in ${work})`);
          await sleep(20);
        }
      };
      const restartMs = { allStopped: await restart(WORKER_ROLES, 'SIGTERM'), aggregatorKilled: await restart(['aggregator'], 'SIGKILL') };
      out.push(result(`kafka runtime: sustained changes/s, raw topic (${label}) → Postgres + Redis (4 worker processes)`, 'changes/s', throughput, {
        target: 30_000,
        details: { rows: rowCount, snapshotRowsPerS: Math.round(snapshotRate), residentMiBByWorker: memory, changesPerRun: CHANGES, rawMessageBytes: sent.bytes, maxInFlight: sent.maxInFlight, publishChangesPerS: publishRate.map(Math.round), cpuMicrosPerChangeByWorker: cpu, cpuMicrosPerChangeElsewhere: others, machineBusyPercent: busy, messagesPerBatchByWorker: perBatch, sendsPerProduceRequestByWorker: perRequest, broker: stack.kafkaCompat },
      }));
      // The consumer groups' rebalances are the broker's: the test broker holds a group whose members left for
      // the session timeout less 1 s, where Kafka waits group.initial.rebalance.delay.ms (3 s by default).
      const { allStopped: a, aggregatorKilled: k } = restartMs;
      out.push(result(`kafka runtime: restart until a change made while stopped is counted (${label}): every worker stopped / the aggregator killed`, 'ms', [a.ms, k.ms], { higherIsBetter: false, details: { sessionTimeoutMs: cfg.kafkaSessionTimeoutMs, restartMs } }));
      out.push(result(`kafka runtime: the same, from the restarted workers' consumer group join (${label}): every worker stopped / the aggregator killed`, 'ms', [a.ms - a.joinedMs, k.ms - k.joinedMs], {
        higherIsBetter: false,
        details: { joinedMs: [a.joinedMs, k.joinedMs], residentMiBByWorkerAfter: Object.fromEntries([...workers].map(([role, c]) => [role, residentMiB(c.pid)])) },
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
