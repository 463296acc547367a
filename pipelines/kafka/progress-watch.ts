import type { Admin, Kafka } from 'kafkajs';
import { fromKafkaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';

/** A partition of this member that has lag and made no progress. */
export interface StalledPartition {
  topic: string;
  partition: number;
  /** Messages between the group's committed offset and the high watermark. */
  lag: number;
  /** The group's committed offset ('-1' when none). */
  committed: string;
}

export interface ProgressWatchOptions {
  kafka: Kafka;
  groupId: string;
  log: Logger;
  metrics?: CellarMetrics;
  /** How often lag is measured, ms. Default 5 000. */
  intervalMs?: number;
  /** Lag with no committed progress and no work for this long is a stall, ms. */
  stallMs: number;
  /** The partitions this member holds now. */
  assigned(): Array<{ topic: string; partition: number }>;
  /** When the member last did work (a batch began, a retry, a commit), ms since the epoch. */
  lastActivity(): number;
  /** Called once per stall (the clock starts again after it). */
  onStall(stalled: StalledPartition[], idleMs: number): void;
}

/**
 * Measures a consumer member's lag on a timer (not only after a batch, which a stalled consumer never
 * finishes) from the broker's high watermarks and the group's committed offsets, publishes it as
 * `cellar_consumer_lag`, and reports a stall: partitions of this member with lag whose committed offset
 * did not move while the member did no work for `stallMs`.
 */
export class ProgressWatch {
  private admin: Admin | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** Per `topic:partition`: the committed offset last seen, and since when it has not moved. */
  private readonly seen = new Map<string, { committed: string; since: number }>();
  /** Partitions found stalled and not moved since (cleared by progress or a new assignment). */
  private readonly stuck = new Map<string, StalledPartition>();

  constructor(private readonly opts: ProgressWatchOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.opts.intervalMs ?? 5_000);
    this.timer.unref();
  }

  /** Forgets progress clocks (after a group join: time without the partitions is not a stall). */
  reset(): void {
    this.seen.clear();
    this.stuck.clear();
  }

  /** Why the member is not making progress, or undefined. */
  problem(): string | undefined {
    if (!this.stuck.size) return undefined;
    return `no progress with lag on ${[...this.stuck.values()].map((s) => `${s.topic}[${s.partition}] (lag ${s.lag})`).join(', ')}`;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.admin?.disconnect().catch(() => undefined);
    this.admin = undefined;
  }

  /** One measurement; errors (the broker away) are logged at debug and tried again on the next tick. */
  async tick(now = Date.now()): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await this.measure(now);
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, 'measuring consumer lag failed');
      await this.admin?.disconnect().catch(() => undefined);
      this.admin = undefined;
    } finally {
      this.running = false;
    }
  }

  private async measure(now: number): Promise<void> {
    const { groupId, metrics } = this.opts;
    const assigned = this.opts.assigned();
    if (!assigned.length) return;
    const topics = [...new Set(assigned.map((a) => a.topic))];
    let ends: Map<string, { high: string; low: string }>;
    let committed: Map<string, string>;
    try {
      if (!this.admin) {
        const admin = this.opts.kafka.admin();
        await admin.connect();
        this.admin = admin;
      }
      const admin = this.admin;
      ends = new Map((await Promise.all(topics.map(async (t) => (await admin.fetchTopicOffsets(t)).map((o) => [`${t}:${o.partition}`, { high: o.high, low: o.low }] as const)))).flat());
      committed = new Map((await admin.fetchOffsets({ groupId, topics })).flatMap((t) => t.partitions.map((p) => [`${t.topic}:${p.partition}`, p.offset] as const)));
    } catch (err) {
      throw fromKafkaError(err, `measuring the lag of group ${groupId}`);
    }
    const idleMs = now - this.opts.lastActivity();
    const stalled: StalledPartition[] = [];
    for (const a of this.opts.assigned()) {
      const id = `${a.topic}:${a.partition}`;
      const end = ends.get(id);
      if (!end) continue;
      const at = committed.get(id) ?? '-1';
      const from = BigInt(at) < 0n ? BigInt(end.low) : BigInt(at);
      const lag = Number(BigInt(end.high) > from ? BigInt(end.high) - from : 0n);
      metrics?.consumerLag.set({ group: groupId, topic: a.topic, partition: String(a.partition) }, lag);
      const prev = this.seen.get(id);
      if (!prev || prev.committed !== at || lag === 0) {
        this.seen.set(id, { committed: at, since: now });
        this.stuck.delete(id);
        continue;
      }
      if (this.stuck.has(id)) this.stuck.set(id, { topic: a.topic, partition: a.partition, lag, committed: at });
      if (now - prev.since >= this.opts.stallMs && idleMs >= this.opts.stallMs) stalled.push({ topic: a.topic, partition: a.partition, lag, committed: at });
    }
    for (const id of this.stuck.keys()) if (!assigned.some((a) => `${a.topic}:${a.partition}` === id)) this.stuck.delete(id);
    if (stalled.length) {
      for (const s of stalled) {
        this.seen.set(`${s.topic}:${s.partition}`, { committed: s.committed, since: now });
        this.stuck.set(`${s.topic}:${s.partition}`, s);
      }
      this.opts.onStall(stalled, idleMs);
    }
  }
}
