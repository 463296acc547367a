import type { DeadLetter, RegionalStock } from '../../schemas/records.js';
import type { CanonicalCodecs } from '../../schemas/registry.js';
import type { StockSink } from '../../sinks/types.js';
import { CellarError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import type { DeadLetterWriter } from '../dlq/writer.js';
import { deadLetter, replayOfHeaders, type Stage } from '../dlq/letter.js';
import type { BatchContext, BatchHandler, ConsumerWorker, PartitionBatch } from '../kafka/worker.js';

/**
 * Feeds a {@link StockSink} from the regional-stock topic. Each batch is one `writeBatch`, retried while
 * the store is unreachable (consumption of that partition waits meanwhile); versions make redelivery
 * harmless. A record that cannot be decoded is dead-lettered and never blocks the partition.
 */
export class SinkHandler implements BatchHandler {
  constructor(
    private readonly name: 'postgres' | 'redis',
    private readonly sink: StockSink,
    private readonly codecs: CanonicalCodecs,
    private readonly dlq: DeadLetterWriter,
    private readonly log: Logger,
    private readonly metrics: CellarMetrics,
  ) {}

  private get stage(): Stage {
    return `sink-${this.name}`;
  }

  async handle(batch: PartitionBatch, ctx: BatchContext): Promise<void> {
    const records: RegionalStock[] = [];
    const letters: DeadLetter[] = [];
    for (const m of batch.messages) {
      if (!m.value) continue;
      try {
        records.push(await this.codecs.regionalStock.decode(m.value));
      } catch (err) {
        if (err instanceof CellarError && err.retriable) throw err;
        letters.push(deadLetter(this.stage, 'avro_decode', (err as Error).message, { topic: batch.topic, partition: batch.partition, offset: m.offset, key: m.key, value: m.value, replayOf: replayOfHeaders(m.headers) }));
      }
    }
    const t0 = process.hrtime.bigint();
    const res = await ctx.retry('writing sink batch', () => this.sink.writeBatch(records));
    if (res.reset) {
      this.log.warn({ sink: this.name }, 'the store lost its data since the last write; replaying from the earliest offsets');
      ctx.rewind();
      return;
    }
    this.metrics.sinkBatch.observe({ sink: this.name }, Number(process.hrtime.bigint() - t0) / 1e9);
    const now = Date.now();
    for (const r of records) if (r.sourceTsMs > 0) this.metrics.freshness.observe({ sink: this.name }, Math.max(0, now - r.sourceTsMs) / 1000);
    if (letters.length) await ctx.retry('writing dead letters', () => this.dlq.write(letters));
    this.metrics.recordStage(this.stage, { in: batch.messages.length, out: res.applied, letters });
    if (letters.length) {
      this.log.error({ count: letters.length, topic: batch.topic, partition: batch.partition }, 'undecodable regional-stock records dead-lettered');
    }
  }
}

/** How often a sink worker asks its store whether it lost its data while no change flowed, ms. */
export const STORE_CHECK_MS = 5_000;

/**
 * Asks a sink's store every `everyMs` whether it lost its data since the sink last wrote (a Redis that
 * restarted empty at night, while no change flowed): then the worker replays its input topic from the
 * beginning, as after a `reset` batch. Without it the store would stay empty until the next change came.
 * A store that does not answer is asked again at the next tick. Returns a function that stops the checks.
 */
export function watchStoreLoss(o: { sink: StockSink; name: string; topic: string; worker: () => ConsumerWorker; log: Logger; everyMs?: number }): () => Promise<void> {
  if (!o.sink.lostData) return async () => undefined;
  let stopped = false;
  let checking: Promise<void> = Promise.resolve();
  const check = async () => {
    try {
      // A member without partitions (a rebalance) must not take the loss: the partitions it then gets
      // would not be replayed by it, and the member they come from may already have adopted the new epoch.
      if (!o.worker().hasAssignment(o.topic)) return;
      if (!(await o.sink.lostData!())) return;
      o.log.warn({ sink: o.name, topic: o.topic }, 'the store lost its data while no change flowed; replaying from the earliest offsets');
      await o.worker().rewind(o.topic);
    } catch (err) {
      o.log.debug({ err, sink: o.name }, 'could not check the store for lost data; checking again later');
    }
  };
  const timer = setInterval(() => {
    if (!stopped) checking = checking.then(check);
  }, o.everyMs ?? STORE_CHECK_MS);
  timer.unref();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await checking;
  };
}
