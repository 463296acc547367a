import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { stopChild } from '../../infra/local/process.js';
import { loadRuntimeConfig, type RuntimeConfig } from '../../pipelines/core/config.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { connectProducer, createKafka, ensureTopics } from '../../pipelines/kafka/client.js';
import { cellarTopics, groupId } from '../../pipelines/kafka/topics.js';
import type { RawMessage } from '../../pipelines/demo/simulated-table.js';
import { readRegionalStock } from '../../sinks/postgres/read.js';
import { readRegionSnapshot } from '../../sinks/redis/read.js';
import { cellarEnv, rid, supplierDir } from './services.js';

/** Totals keyed `region|sku`. */
export type Totals = Map<string, { bottles: number; contributors: number }>;

/** A Kafka-runtime pipeline of real `cellar run` processes on random topics, groups and database. */
export class PipelineUnderTest {
  readonly env: Record<string, string>;
  readonly cfg: RuntimeConfig;
  readonly workers = new Map<string, ChildProcess>();
  private readonly redis: Redis;
  private producer: Awaited<ReturnType<typeof connectProducer>> | undefined;
  private readonly logNames = new Set<string>();

  constructor(
    readonly pgUrl: string,
    readonly pool: pg.Pool,
    suppliers: Record<string, string>,
    readonly logDir: string,
    /** Extra environment for every worker (e.g. CELLAR_REDIS_URL of a private Redis). */
    extraEnv: Record<string, string> = {},
  ) {
    const dir = supplierDir(suppliers);
    const id = rid('p');
    this.env = cellarEnv({ CELLAR_PG_URL: pgUrl, CELLAR_SUPPLIERS_DIR: dir, CELLAR_TOPIC_PREFIX: `${id}.cellar`, CELLAR_GROUP_PREFIX: id, ...extraEnv });
    this.cfg = loadRuntimeConfig({ ...process.env, ...this.env });
    this.redis = new Redis(this.cfg.redisUrl, { maxRetriesPerRequest: 1 });
    this.redis.on('error', () => undefined);
  }

  /**
   * Starts `cellar run <role>` as its own process. `name` tells instances of one role apart (a second
   * aggregator); `env` adds variables for this process only (e.g. CELLAR_HTTP_PORT).
   */
  start(role: string, name = role, env: Record<string, string> = {}): ChildProcess {
    const child = spawnCellar(['run', role], { ...this.env, ...env }, join(this.logDir, `${name}.log`));
    this.workers.set(name, child);
    this.logNames.add(name);
    return child;
  }

  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.workers.get(name);
    if (c) await stopChild(c, signal, 15_000);
    this.workers.delete(name);
  }

  /** Everything a worker has logged so far (across its restarts: they append to one file). */
  logOf(name: string): string {
    const file = join(this.logDir, `${name}.log`);
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /** Each worker's state and the last lines of its log: why a wait did not converge. */
  explain(lines = 12): string {
    const names = new Set([...this.logNames, ...this.workers.keys()]);
    return [...names].map((name) => {
      const c = this.workers.get(name);
      const state = !c ? 'stopped by the test' : c.exitCode !== null ? `exited with ${c.exitCode}` : c.signalCode ? `ended by ${c.signalCode}` : `running, pid ${c.pid}`;
      const file = join(this.logDir, `${name}.log`);
      const tail = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).slice(-lines) : [];
      return `--- ${name} (${state}); last ${tail.length} log lines of ${file}:\n${tail.join('\n')}`;
    }).join('\n');
  }

  /**
   * Waits until Postgres and Redis hold exactly `expected`; returns the remaining differences, followed on
   * a timeout by each worker's state and log tail ({@link explain}).
   */
  async converged(expected: Totals, regions: string[], timeoutMs = 120_000): Promise<string[]> {
    let diff: string[] = ['not checked'];
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        diff = diffTotals(expected, await this.postgresTotals(), await this.redisTotals(regions));
        if (diff.length === 0) return diff;
      } catch (err) {
        diff = [`store unavailable: ${(err as Error).message}`];
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    return [...diff, `not converged after ${timeoutMs} ms; the workers:\n${this.explain()}`];
  }

  /**
   * Whether each role's consumer group has committed every message of its input topics: the normalizer of
   * `rawTopics`, the aggregator of the observations topic. Totals can be right while repeats are still
   * on their way; this says nothing is.
   */
  async consumed(rawTopics: string[]): Promise<boolean> {
    const admin = createKafka(this.cfg, createLogger('test', 'warn'), 'test-admin').admin();
    await admin.connect();
    try {
      for (const [role, topics] of [['normalizer', rawTopics], ['aggregator', [cellarTopics(this.cfg).observations]]] as const) {
        for (const topic of topics) {
          const [ends, committed] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId: groupId(this.cfg, role), topics: [topic] })]);
          const at = new Map(committed.flatMap((t) => t.partitions).map((x) => [x.partition, Number(x.offset)]));
          if (ends.some((e) => Number(e.high) > Math.max(0, at.get(e.partition) ?? 0))) return false;
        }
      }
      return true;
    } finally {
      await admin.disconnect();
    }
  }

  async publish(messages: RawMessage[], rawTopics: string[] = []): Promise<void> {
    if (!this.producer) {
      const kafka = createKafka(this.cfg, createLogger('test', 'warn'), 'test');
      await ensureTopics(kafka, this.cfg, rawTopics);
      this.producer = await connectProducer(kafka, this.cfg);
    }
    for (let i = 0; i < messages.length; i += 200) {
      const chunk = messages.slice(i, i + 200);
      const byTopic = new Map<string, RawMessage[]>();
      for (const m of chunk) byTopic.set(m.topic, [...(byTopic.get(m.topic) ?? []), m]);
      // One topic at a time keeps the per-key order Kafka guarantees within a partition.
      for (const [topic, ms] of byTopic) await this.producer.send({ topic, acks: -1, messages: ms.map((m) => ({ key: m.key, value: m.value })) });
    }
  }

  /** Totals in Postgres, `region|sku` → bottles/contributors. */
  async postgresTotals(): Promise<Totals> {
    const rows = await readRegionalStock(this.pool);
    return new Map(rows.map((r) => [`${r.region}|${r.sku}`, { bottles: r.bottles, contributors: r.contributors }]));
  }

  /** Bottles per `region|sku` in Redis, for the given regions. */
  async redisTotals(regions: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const region of regions) for (const [sku, b] of await readRegionSnapshot(this.redis, region)) out.set(`${region}|${sku}`, b);
    return out;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.workers.keys()].map((r) => this.kill(r, 'SIGTERM')));
    await this.producer?.disconnect().catch(() => undefined);
    this.redis.disconnect();
  }
}

/** Differences between expected and actual totals (keys missing on either side count as 0). */
export function diffTotals(expected: Totals, pgActual: Totals, redisActual: Map<string, number>): string[] {
  const keys = new Set([...expected.keys(), ...pgActual.keys(), ...redisActual.keys()]);
  const out: string[] = [];
  for (const k of [...keys].sort()) {
    const e = expected.get(k) ?? { bottles: 0, contributors: 0 };
    const p = pgActual.get(k) ?? { bottles: 0, contributors: 0 };
    const r = redisActual.get(k) ?? 0;
    if (e.bottles !== p.bottles || e.contributors !== p.contributors || e.bottles !== r) {
      out.push(`${k}: expected ${e.bottles} (${e.contributors} rows), postgres ${p.bottles} (${p.contributors} rows), redis ${r}`);
    }
  }
  return out;
}
