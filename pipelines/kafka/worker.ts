import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import { CellarError, fromKafkaError, isRetriable } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { retryInPlace, withRetry } from '../core/retry.js';
import { ProgressWatch } from './progress-watch.js';

/** One fetched batch of one partition. */
export interface PartitionBatch {
  topic: string;
  partition: number;
  messages: KafkaMessage[];
}

/** Given to handlers: retry I/O while keeping the group membership alive. */
export interface BatchContext {
  /** Retries `fn` on retriable errors (backoff with jitter), heartbeating between attempts. */
  retry<T>(what: string, fn: () => Promise<T>): Promise<T>;
  /**
   * Asks the worker to consume every partition of this topic assigned to this member again from the
   * earliest offset, instead of committing the batch (a sink's store lost its data).
   */
  rewind(): void;
  signal: AbortSignal;
}

/**
 * A stage's logic for one partition batch. `handle` must finish every output write (Kafka acks, database
 * commits) before it returns: the worker commits the batch's offsets right after.
 */
export interface BatchHandler {
  /** Called after every group join with this member's partitions (state owned elsewhere must be dropped). */
  onAssignment?(assigned: Array<{ topic: string; partition: number }>): void;
  handle(batch: PartitionBatch, ctx: BatchContext): Promise<void>;
  /** Called when `handle` failed for good: drop any in-memory state of that partition. */
  reset?(topic: string, partition: number): void;
}

export interface ConsumerWorkerOptions {
  kafka: Kafka;
  groupId: string;
  topics: string[];
  handler: BatchHandler;
  log: Logger;
  /** Start from the earliest offset when the group has no committed offset. Default true. */
  fromBeginning?: boolean;
  /** Session timeout in ms (heartbeats every third of it). Default 30 000. */
  sessionTimeoutMs?: number;
  /** Most bytes fetched per partition per request; bounds batch size. Default 1 MiB. */
  maxBytesPerPartition?: number;
  /** Where `cellar_consumer_lag` is recorded (per group, topic and partition this member consumes). */
  metrics?: CellarMetrics;
  /**
   * Lag with no committed progress while the member does no work, for this long, is a stall: the worker
   * reports not ready and starts its consumer again. Default 60 000 ms.
   */
  stallMs?: number;
  /** How often lag is measured, ms. Default 5 000. */
  lagIntervalMs?: number;
  /**
   * Batches of different partitions handled at once (one at a time per partition, in offset order).
   * Handlers must tolerate it: their partitions' keys are disjoint. Default 1.
   */
  partitionsConcurrently?: number;
  /** Longest a fetch waits at the broker for new messages, ms. Default 500 (Kafka's `fetch.max.wait.ms`). */
  maxWaitMs?: number;
}

/** A running stage worker. */
export interface ConsumerWorker {
  /** Resolves once `stop()` has left the group (a consumer kafkajs gave up on is relaunched, not ended). */
  done: Promise<void>;
  /** False while the worker retries an unavailable dependency or makes no progress. */
  isReady(): boolean;
  /** While not ready: why, in words for `/readyz`. */
  problem(): string | undefined;
  /** Finishes the batch in progress, commits, leaves the group. */
  stop(): Promise<void>;
  /**
   * Consumes this member's partitions of `topic` again from the earliest offset (committed, so the replay
   * survives a crash), outside any batch: a sink's store found empty while nothing flowed. Batches in
   * progress do not commit. While the member holds none of them (a rebalance), it waits until it does.
   */
  rewind(topic: string): Promise<void>;
  /** True while the member holds partitions of `topic`. */
  hasAssignment(topic: string): boolean;
}

/**
 * Runs a consumer-group member around a {@link BatchHandler}: offsets are committed only after the
 * handler returns (at-least-once), retriable failures are retried in place with backoff (which pauses
 * consumption of that partition and keeps heartbeating), and anything else restarts the consumer from
 * the last committed offset.
 */
export async function startConsumerWorker(opts: ConsumerWorkerOptions): Promise<ConsumerWorker> {
  const { kafka, groupId, topics, handler, log } = opts;
  const abort = new AbortController();
  let ready = true;
  let retrying: string | undefined;
  let stopping = false;
  let relaunching = false;
  /** When the member last did work: a batch began, a retry, a commit (the stall watch's clock). */
  let lastActivity = Date.now();
  let assigned: Array<{ topic: string; partition: number }> = [];
  /** Rewinds begun so far (a batch that overlapped one does not commit). */
  let rewinds = 0;
  let consumer: Consumer;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const eachBatch = async ({ batch, heartbeat, isRunning, isStale, resolveOffset }: EachBatchPayload) => {
    if (!isRunning() || isStale() || batch.messages.length === 0) return;
    lastActivity = Date.now();
    opts.metrics?.kafkaBatchMessages.observe({ group: groupId }, batch.messages.length);
    const rewindsAtStart = rewinds;
    let rewind = false;
    const ctx: BatchContext = {
      signal: abort.signal,
      rewind: () => {
        rewind = true;
      },
      retry: retryInPlace(log, {
        signal: abort.signal,
        onRetry: (what, err) => {
          ready = false;
          retrying = `${what}: ${(err as Error)?.message ?? String(err)}`;
          lastActivity = Date.now();
          heartbeat().catch(() => undefined);
        },
        onSuccess: () => {
          ready = true;
          retrying = undefined;
        },
      }),
    };
    try {
      await handler.handle({ topic: batch.topic, partition: batch.partition, messages: batch.messages }, ctx);
    } catch (err) {
      handler.reset?.(batch.topic, batch.partition);
      log.error({ err, topic: batch.topic, partition: batch.partition, retriable: isRetriable(err) }, 'batch failed; restarting from last committed offset');
      throw err;
    }
    if (rewind) {
      rewinds++;
      await ctx.retry('rewinding to the earliest offsets', () => rewindToEarliest(kafka, consumer, batch.topic, assigned, log));
      return;
    }
    // Another partition's batch rewound (or a seek or rebalance came) while this one ran: its offset is not
    // committed, so the replay is not skipped should the process die before it is done.
    if (isStale() || rewinds !== rewindsAtStart) return;
    resolveOffset(batch.lastOffset());
    const next = (BigInt(batch.lastOffset()) + 1n).toString();
    const lag = BigInt(batch.highWatermark) - BigInt(next);
    opts.metrics?.consumerLag.set({ group: groupId, topic: batch.topic, partition: String(batch.partition) }, Number(lag > 0n ? lag : 0n));
    await ctx.retry('committing offsets', async () => {
      try {
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }]);
      } catch (err) {
        throw fromKafkaError(err, 'committing offsets');
      }
    });
    lastActivity = Date.now();
    await heartbeat().catch(() => undefined);
  };

  const watch = new ProgressWatch({
    kafka, groupId, log, metrics: opts.metrics, stallMs: opts.stallMs ?? 60_000, intervalMs: opts.lagIntervalMs,
    assigned: () => (relaunching ? [] : assigned),
    lastActivity: () => lastActivity,
    onStall: (stalled, idleMs) => {
      if (stopping || relaunching) return;
      log.error({ groupId, stalled, idleSeconds: Math.round(idleMs / 1000) },
        `consumer made no progress for ${Math.round(idleMs / 1000)} s with ${stalled.reduce((n, s) => n + s.lag, 0)} messages waiting on ${stalled.map((s) => `${s.topic}[${s.partition}]`).join(', ')}: starting it again`);
      opts.metrics?.consumerStalls.inc({ group: groupId });
      void relaunch();
    },
  });

  /** Creates, connects and runs a consumer; kafkajs gives up on some errors, then a fresh one is launched. */
  const launch = async (): Promise<void> => {
    const c = kafka.consumer({
      groupId,
      maxWaitTimeInMs: opts.maxWaitMs ?? 500,
      sessionTimeout: opts.sessionTimeoutMs ?? 30_000,
      rebalanceTimeout: 60_000,
      heartbeatInterval: Math.max(500, Math.floor((opts.sessionTimeoutMs ?? 30_000) / 10)),
      maxBytesPerPartition: opts.maxBytesPerPartition ?? 1 << 20,
      // A failed batch restarts the consumer from the last committed offset, whatever the error: stopping
      // would leave the partition unconsumed. Per-record problems never get here (they are dead-lettered).
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000, restartOnFailure: async () => true },
    });
    consumer = c;
    c.on(c.events.GROUP_JOIN, (e) => {
      const now = Object.entries(e.payload.memberAssignment).flatMap(([topic, parts]) => parts.map((partition) => ({ topic, partition })));
      for (const a of assigned) if (!now.some((n) => n.topic === a.topic && n.partition === a.partition)) opts.metrics?.consumerLag.remove({ group: groupId, topic: a.topic, partition: String(a.partition) });
      assigned = now;
      watch.reset();
      lastActivity = Date.now();
      log.info({ groupId, assigned: assigned.length }, 'joined consumer group');
      handler.onAssignment?.(assigned);
    });
    c.on(c.events.CRASH, (e) => {
      log.error({ err: e.payload.error, restart: e.payload.restart }, 'consumer crashed');
      // kafkajs does not restart after some errors (e.g. a protocol error during a rebalance): start anew.
      if (!e.payload.restart && !stopping) void relaunch();
    });
    try {
      await c.connect();
      for (const topic of topics) await c.subscribe({ topic, fromBeginning: opts.fromBeginning ?? true });
    } catch (err) {
      await c.disconnect().catch(() => undefined);
      throw fromKafkaError(err, `starting consumer group ${groupId}`);
    }
    await c.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: opts.partitionsConcurrently ?? 1, eachBatch });
  };

  const relaunch = async (): Promise<void> => {
    if (relaunching) return;
    relaunching = true;
    ready = false;
    // A consumer stuck in a batch may never finish leaving: the new member takes over after the session timeout.
    await Promise.race([consumer.disconnect().catch(() => undefined), new Promise((r) => setTimeout(r, 10_000).unref())]);
    handler.onAssignment?.([]);
    assigned = [];
    await withRetry(async () => {
      if (stopping) return;
      await launch();
    }, { minDelayMs: 1_000, maxDelayMs: 10_000, signal: abort.signal, shouldRetry: () => !stopping, onRetry: (err) => log.warn({ err: (err as Error).message }, 'relaunching consumer') }).catch(() => undefined);
    relaunching = false;
    lastActivity = Date.now();
    if (!stopping) {
      ready = true;
      log.warn({ groupId }, 'consumer relaunched');
    }
  };

  await launch();
  watch.start();
  let stoppingPromise: Promise<void> | undefined;
  return {
    done,
    isReady: () => ready && !watch.problem(),
    problem: () => (relaunching ? 'starting the consumer again' : retrying ? `retrying ${retrying}` : watch.problem()),
    rewind: async (topic) => {
      rewinds++;
      await withRetry(async () => {
        if (relaunching || !assigned.some((a) => a.topic === topic)) throw new CellarError('rewind_unassigned', `rewinding ${topic}: this member holds none of its partitions yet`, { retriable: true });
        await rewindToEarliest(kafka, consumer, topic, assigned, log);
      }, { signal: abort.signal, shouldRetry: (err) => !stopping && isRetriable(err) });
    },
    hasAssignment: (topic) => !relaunching && assigned.some((a) => a.topic === topic),
    stop: () =>
      (stoppingPromise ??= (async () => {
        stopping = true;
        abort.abort();
        await watch.stop();
        await consumer.disconnect().catch((err) => log.warn({ err }, 'error leaving consumer group'));
        resolveDone();
      })()),
  };
}

/**
 * Seeks this member's partitions of `topic` to their earliest offsets and commits those, so the replay
 * also survives a crash. Used when a sink's store lost its data: the compacted input topic holds every
 * key's latest record, and version guards make the replay exact.
 */
async function rewindToEarliest(
  kafka: Kafka,
  consumer: Consumer,
  topic: string,
  assigned: Array<{ topic: string; partition: number }>,
  log: Logger,
): Promise<void> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic);
    const mine = new Set(assigned.filter((a) => a.topic === topic).map((a) => a.partition));
    const targets = offsets.filter((o) => mine.has(o.partition)).map((o) => ({ topic, partition: o.partition, offset: o.low }));
    await consumer.commitOffsets(targets);
    for (const t of targets) consumer.seek(t);
    log.warn({ topic, partitions: targets.map((t) => t.partition) }, 'store lost its data: replaying the topic from the earliest offsets');
  } catch (err) {
    throw fromKafkaError(err, `rewinding ${topic}`);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
