import { logLevelOr } from '../core/process-env.js';
import { Partitioners, type Admin, type PartitionMetadata } from 'kafkajs';
import type pg from 'pg';
import type { RuntimeConfig } from '../core/config.js';
import { CellarError, ConfigError, fromKafkaError } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import { createPgPool, inTransaction, query } from '../core/pg.js';
import { createKafka, producerConfig } from '../kafka/client.js';
import { cellarTopics, groupId, stockKey } from '../kafka/topics.js';
import { DEPLOYMENT_STALE_MS, deploymentId } from '../state/deployments.js';
import { EMBEDDED_PARTITION } from '../runtime/embedded-group.js';

/** Most partitions `--partitions` accepts. */
const MAX_PARTITIONS = 10_000;
/** Keys per UPDATE statement when re-filing contributions (all in one transaction). */
const CHUNK = 10_000;
/** How long to wait for the brokers to report the added partitions, ms. */
const METADATA_WAIT_MS = 30_000;

/** The flags of `cellar repartition`, checked once. */
export interface RepartitionFlags {
  /** The partition count Cellar's keyed topics end with, and the aggregator's state is filed for. */
  partitions: number;
  /** Only say what would be done. */
  dryRun: boolean;
}

/** Parses the flags of `cellar repartition`; a bad flag is a {@link ConfigError} naming it (exit 2). */
export function parseRepartitionFlags(o: { partitions?: string; dryRun?: boolean }): RepartitionFlags {
  const raw = o.partitions?.trim();
  if (raw === undefined) throw new ConfigError(`--partitions <n> is required: the partition count the topics should have (1 to ${MAX_PARTITIONS})`);
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > MAX_PARTITIONS) throw new ConfigError(`--partitions ${JSON.stringify(o.partitions)}: expected a whole number of partitions from 1 to ${MAX_PARTITIONS}`);
  return { partitions: n, dryRun: Boolean(o.dryRun) };
}

/**
 * The partition Cellar's producers give a key on a topic of `partitions` partitions. It is the partitioner
 * of {@link producerConfig} (what every Cellar producer is created with; kafkajs' default when it names
 * none), called the way the producer calls it, so it cannot drift from where records really go.
 */
export function keyPartitioner(cfg: RuntimeConfig): (key: string, partitions: number) => number {
  const partitioner = (producerConfig(cfg).createPartitioner ?? Partitioners.DefaultPartitioner)();
  const metadata = new Map<number, PartitionMetadata[]>();
  return (key, partitions) => {
    let pm = metadata.get(partitions);
    if (!pm) {
      pm = Array.from({ length: partitions }, (_, i) => ({ partitionErrorCode: 0, partitionId: i, leader: 0, replicas: [0], isr: [0] }));
      metadata.set(partitions, pm);
    }
    return partitioner({ topic: 'cellar-repartition', partitionMetadata: pm, message: { key, value: null } });
  };
}

/** A keyed topic's partition count before and after. */
export interface TopicChange {
  topic: string;
  from: number;
  to: number;
}

/** What a repartition does (or, with `--dry-run`, would do). */
export interface RepartitionResult {
  partitions: number;
  topics: TopicChange[];
  /** Rows and distinct keys of the Kafka runtime in `cellar.stock_contributions`. */
  rows: number;
  keys: number;
  /** Of those, rows and keys filed under another partition than their key's with `partitions`. */
  movedRows: number;
  movedKeys: number;
  /** Rows of the embedded runtime (partition -1): not Kafka partitions, left as they are. */
  embeddedRows: number;
}

interface KeyRows {
  region: string;
  sku: string;
  partition: number;
  rows: number;
}

/** The contributions of the Kafka runtime, per key and partition. */
async function contributionKeys(db: pg.Pool | pg.PoolClient): Promise<{ keys: KeyRows[]; embeddedRows: number }> {
  const { rows } = await query<{ region: string; sku: string; partition: number; rows: number }>(db, 'reading cellar.stock_contributions',
    'SELECT region, sku, partition, count(*)::int AS rows FROM cellar.stock_contributions GROUP BY region, sku, partition');
  return {
    keys: rows.filter((r) => r.partition !== EMBEDDED_PARTITION),
    embeddedRows: rows.filter((r) => r.partition === EMBEDDED_PARTITION).reduce((n, r) => n + r.rows, 0),
  };
}

/** Which keys are filed under another partition than the one `partitionOf` gives them. */
function movesOf(keys: KeyRows[], partitions: number, partitionOf: (key: string, partitions: number) => number) {
  const moves: Array<{ region: string; sku: string; to: number }> = [];
  const all = new Set<string>();
  const moved = new Set<string>();
  let rows = 0;
  let movedRows = 0;
  for (const k of keys) {
    const key = stockKey(k.region, k.sku);
    const to = partitionOf(key, partitions);
    all.add(key);
    rows += k.rows;
    if (k.partition === to) continue;
    movedRows += k.rows;
    if (!moved.has(key)) moves.push({ region: k.region, sku: k.sku, to });
    moved.add(key);
  }
  return { moves, rows, keys: all.size, movedRows, movedKeys: moved.size };
}

/** True when the broker does not implement the request (librdkafka's mock cluster has no DescribeGroups). */
function unsupported(err: unknown): boolean {
  for (let e = err as { name?: string; message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.name === 'KafkaJSServerDoesNotSupportApiKey' || /does not support the requested API/i.test(e.message ?? '')) return true;
  }
  return false;
}

/**
 * Why the aggregators or normalizers of this deployment look alive: members of their consumer groups
 * (DescribeGroups), or, where the broker cannot describe groups, a Kafka-runtime worker of this topic prefix
 * seen in `cellar.deployments` within {@link DEPLOYMENT_STALE_MS}.
 */
async function liveWorkers(admin: Admin, pool: pg.Pool, cfg: RuntimeConfig): Promise<string[]> {
  const groups = [groupId(cfg, 'aggregator'), groupId(cfg, 'normalizer')];
  if (cfg.kafkaCompat !== 'librdkafka-mock') {
    try {
      const { groups: described } = await admin.describeGroups(groups);
      return described.filter((g) => g.members.length > 0).map((g) =>
        `consumer group ${g.groupId} has ${g.members.length} member${g.members.length === 1 ? '' : 's'} (${g.members.slice(0, 3).map((m) => `${m.clientId} on ${m.clientHost}`).join(', ')}${g.members.length > 3 ? ', …' : ''}): stop those workers first`);
    } catch (err) {
      if (!unsupported(err)) throw fromKafkaError(err, `describing consumer groups ${groups.join(', ')}`);
    }
  }
  const id = deploymentId('kafka', cfg.topicPrefix);
  const { rows } = await query<{ host: string; pid: number; role: string; ago: number }>(pool, 'reading cellar.deployments',
    `SELECT host, pid, role, extract(epoch from now() - last_seen)::float8 AS ago FROM cellar.deployments
      WHERE id = $1 AND last_seen > now() - make_interval(secs => $2 / 1000.0)`, [id, DEPLOYMENT_STALE_MS]);
  return rows.map((r) =>
    `this broker cannot say which consumer groups have members (no DescribeGroups${cfg.kafkaCompat === 'librdkafka-mock' ? ': librdkafka\'s mock cluster' : ''}), and a Kafka-runtime worker of ${id} ` +
    `(its ${r.role} on ${r.host} pid ${r.pid}) was seen ${Math.round(Number(r.ago))} s ago in cellar.deployments: stop every worker of this topic prefix, then wait ${DEPLOYMENT_STALE_MS / 1000} s`);
}

/** Observations the aggregator group has not consumed yet, per partition (a group without offsets starts at the earliest). */
async function aggregatorLag(admin: Admin, cfg: RuntimeConfig): Promise<string[]> {
  const topic = cellarTopics(cfg).observations;
  const group = groupId(cfg, 'aggregator');
  const [ends, committed] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId: group, topics: [topic] })]);
  const at = new Map(committed.flatMap((t) => t.partitions.map((p) => [p.partition, Number(p.offset)] as const)));
  const lag = ends
    .map((e) => {
      const c = at.get(e.partition) ?? -1;
      return { partition: e.partition, lag: Math.max(0, Number(e.high) - Math.max(c, Number(e.low))) };
    })
    .filter((l) => l.lag > 0)
    .sort((a, b) => a.partition - b.partition);
  if (!lag.length) return [];
  return [`consumer group ${group} has not aggregated ${lag.reduce((n, l) => n + l.lag, 0)} observations yet (${lag.map((l) => `${topic}[${l.partition}] ${l.lag}`).join(', ')}): ` +
    'with the normalizers stopped, run the aggregators until this lag is 0, stop them, then run this command again'];
}

/** Waits until the brokers report `to` partitions for each topic. */
async function waitForPartitions(admin: Admin, changes: TopicChange[]): Promise<void> {
  const deadline = Date.now() + METADATA_WAIT_MS;
  for (;;) {
    const md = await admin.fetchTopicMetadata({ topics: changes.map((c) => c.topic) });
    const short = changes.filter((c) => (md.topics.find((t) => t.name === c.topic)?.partitions.length ?? 0) < c.to);
    if (!short.length) return;
    if (Date.now() > deadline) throw new CellarError('kafka_error', `the brokers still report fewer partitions than asked for ${short.map((c) => c.topic).join(', ')} after ${METADATA_WAIT_MS / 1000} s`, { retriable: true });
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Lines saying what was (or would be) done. */
export function formatRepartition(r: RepartitionResult, dryRun: boolean): string[] {
  const width = Math.max(...r.topics.map((t) => t.topic.length), 'cellar.stock_contributions'.length);
  const num = (n: number) => n.toLocaleString('en-US');
  const lines = r.topics.map((t) => `  ${t.topic.padEnd(width)}  ${t.from} → ${t.to} partitions${t.from === t.to ? ' (unchanged)' : dryRun ? ` (would add ${t.to - t.from})` : ` (added ${t.to - t.from})`}`);
  lines.push(`  ${'cellar.stock_contributions'.padEnd(width)}  ${num(r.movedRows)} of ${num(r.rows)} rows (${num(r.movedKeys)} of ${num(r.keys)} keys) ${dryRun ? 'would be re-filed' : 're-filed'} under their key's partition of ${r.partitions}`);
  if (r.embeddedRows) lines.push(`  (${num(r.embeddedRows)} rows of the embedded runtime, partition ${EMBEDDED_PARTITION}, are not Kafka partitions and are left as they are)`);
  return lines;
}

/**
 * `cellar repartition`: raises the partitions of Cellar's keyed topics (`<prefix>.observations`,
 * `<prefix>.regional-stock`) to `flags.partitions` (never lowers them) and re-files the aggregator's state
 * (`cellar.stock_contributions.partition`) under the partition each key `region|sku` maps to with that count,
 * in one transaction that commits only once the brokers report the new partitions. Refuses (exit 2, nothing
 * changed) while aggregators or normalizers of this deployment run, while the aggregators have not consumed
 * every observation, and on a broker that cannot add partitions. Returns the exit code; `print` gets the output.
 */
export async function repartition(cfg: RuntimeConfig, flags: RepartitionFlags, print: (line: string) => void, printError: (line: string) => void): Promise<number> {
  const t = cellarTopics(cfg);
  const keyed = [t.observations, t.regionalStock];
  const partitionOf = keyPartitioner(cfg);
  const admin = createKafka(cfg, createLogger('repartition', logLevelOr('warn')), 'repartition').admin();
  const pool = createPgPool(cfg.pgUrl, { max: 2, applicationName: 'cellar-repartition' });
  const refuse = (reasons: string[], dry: boolean) => {
    printError(`cellar repartition: ${dry ? 'would be refused' : 'refused, nothing changed'}:`);
    for (const r of reasons) printError(`  - ${r}`);
    return 2;
  };
  try {
    await admin.connect().catch((err: unknown) => Promise.reject(fromKafkaError(err, 'connecting to Kafka')));
    const existing = new Set(await admin.listTopics().catch((err: unknown) => Promise.reject(fromKafkaError(err, 'listing topics'))));
    const missing = keyed.filter((topic) => !existing.has(topic));
    if (missing.length) return refuse([`${missing.join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist (CELLAR_TOPIC_PREFIX=${cfg.topicPrefix}): Cellar's workers create their topics with CELLAR_TOPIC_PARTITIONS partitions when they first start, so set that instead`], flags.dryRun);
    const md = await admin.fetchTopicMetadata({ topics: keyed }).catch((err: unknown) => Promise.reject(fromKafkaError(err, 'reading topic metadata')));
    const topics: TopicChange[] = keyed.map((topic) => {
      const from = md.topics.find((x) => x.name === topic)?.partitions.length ?? 0;
      return { topic, from, to: Math.max(from, flags.partitions) };
    });
    const lower = topics.filter((c) => c.from > flags.partitions);
    if (lower.length) {
      return refuse(lower.map((c) => `${c.topic} has ${c.from} partitions and --partitions asks for ${flags.partitions}: Kafka cannot remove partitions, so the count can only grow (ask for ${c.from} or more)`), flags.dryRun);
    }
    const grow = topics.filter((c) => c.to > c.from);
    const { keys, embeddedRows } = await contributionKeys(pool);
    const plan = movesOf(keys, flags.partitions, partitionOf);
    const result: RepartitionResult = { partitions: flags.partitions, topics, rows: plan.rows, keys: plan.keys, movedRows: plan.movedRows, movedKeys: plan.movedKeys, embeddedRows };
    if (!grow.length && !plan.movedRows) {
      for (const l of formatRepartition(result, flags.dryRun)) print(l);
      print(`Nothing to do: ${keyed.join(' and ')} have ${flags.partitions} partitions and every contribution is filed under its key's partition.`);
      return 0;
    }
    const blockers: string[] = [];
    if (grow.length && cfg.kafkaCompat === 'librdkafka-mock') {
      blockers.push(`this broker is librdkafka's mock cluster (CELLAR_KAFKA_COMPAT=librdkafka-mock), which has no CreatePartitions API: it cannot add partitions to ${grow.map((c) => c.topic).join(', ')} ` +
        `(its topics keep the partitions they were created with; on a real cluster, CELLAR_KAFKA_COMPAT=standard, this command adds them). --partitions ${Math.max(...topics.map((c) => c.from))} only re-files the contributions for the partitions the topics have`);
    }
    blockers.push(...(await liveWorkers(admin, pool, cfg)));
    blockers.push(...(await aggregatorLag(admin, cfg).catch((err: unknown) => Promise.reject(fromKafkaError(err, 'reading the aggregators\' lag')))));
    if (flags.dryRun) {
      print(`cellar repartition --partitions ${flags.partitions} --dry-run (nothing changed):`);
      for (const l of formatRepartition(result, true)) print(l);
      if (blockers.length) return refuse(blockers, true);
      print('Without --dry-run the command does the above, in one transaction that commits once the brokers report the new partitions.');
      return 0;
    }
    if (blockers.length) return refuse(blockers, false);

    const done = await inTransaction(pool, 're-filing cellar.stock_contributions', async (tx) => {
      await tx.query(`SET LOCAL lock_timeout = '10s'`);
      // Nobody writes contributions meanwhile; readers (reconciliation, the API) go on.
      await tx.query('LOCK TABLE cellar.stock_contributions IN SHARE ROW EXCLUSIVE MODE');
      const now = await contributionKeys(tx);
      const m = movesOf(now.keys, flags.partitions, partitionOf);
      let moved = 0;
      for (let i = 0; i < m.moves.length; i += CHUNK) {
        const chunk = m.moves.slice(i, i + CHUNK);
        const r = await tx.query(
          `UPDATE cellar.stock_contributions t SET partition = u.p
             FROM unnest($1::text[], $2::text[], $3::int[]) AS u(region, sku, p)
            WHERE t.region = u.region AND t.sku = u.sku AND t.partition <> $4 AND t.partition <> u.p`,
          [chunk.map((x) => x.region), chunk.map((x) => x.sku), chunk.map((x) => x.to), EMBEDDED_PARTITION]);
        moved += r.rowCount ?? 0;
      }
      if (grow.length) {
        try {
          await admin.createPartitions({ timeout: METADATA_WAIT_MS, topicPartitions: grow.map((c) => ({ topic: c.topic, count: c.to })) });
          await waitForPartitions(admin, grow);
        } catch (err) {
          const e = fromKafkaError(err, `adding partitions to ${grow.map((c) => c.topic).join(', ')}`);
          throw new CellarError(e.code, `${e.message} (the contributions were not re-filed; run the command again once fixed: it starts from the partitions the topics have then)`, { cause: err, retriable: e.retriable });
        }
      }
      return { ...m, movedRows: moved, embeddedRows: now.embeddedRows };
    });
    print(`cellar repartition --partitions ${flags.partitions}:`);
    for (const l of formatRepartition({ ...result, rows: done.rows, keys: done.keys, movedRows: done.movedRows, movedKeys: done.movedKeys, embeddedRows: done.embeddedRows }, false)) print(l);
    print(`Done. Start the aggregators, then the normalizers${grow.length ? ` (restart running sinks too: they see the new partitions of ${t.regionalStock} only at their next metadata refresh, within 5 minutes)` : ''}; ` +
      `set CELLAR_TOPIC_PARTITIONS=${flags.partitions} so topics created from now on match.`);
    return 0;
  } finally {
    await admin.disconnect().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }
}
