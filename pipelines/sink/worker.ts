import type { RegionalStock } from '../../schemas/records.js';
import type { CanonicalCodecs } from '../../schemas/registry.js';
import type { StockSink } from '../../sinks/types.js';
import { CellarError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { BatchContext, BatchHandler, PartitionBatch } from '../kafka/worker.js';

/** Counters a sink worker exposes. */
export interface SinkStats {
  in: number;
  applied: number;
  skipped: number;
  undecodable: number;
}

/**
 * Feeds a {@link StockSink} from the regional-stock topic. Each batch is one `writeBatch`, retried while
 * the store is unreachable (consumption of that partition waits meanwhile); versions make redelivery
 * harmless. A record that cannot be decoded is logged and counted, never blocks the partition.
 */
export class SinkHandler implements BatchHandler {
  readonly stats: SinkStats = { in: 0, applied: 0, skipped: 0, undecodable: 0 };

  constructor(
    private readonly sink: StockSink,
    private readonly codecs: CanonicalCodecs,
    private readonly log: Logger,
  ) {}

  async handle(batch: PartitionBatch, ctx: BatchContext): Promise<void> {
    const records: RegionalStock[] = [];
    for (const m of batch.messages) {
      if (!m.value) continue;
      try {
        records.push(await this.codecs.regionalStock.decode(m.value));
      } catch (err) {
        if (err instanceof CellarError && err.retriable) throw err;
        this.stats.undecodable++;
        this.log.error({ err: (err as Error).message, topic: batch.topic, partition: batch.partition, offset: m.offset }, 'undecodable regional-stock record skipped');
      }
    }
    this.stats.in += batch.messages.length;
    const res = await ctx.retry('writing sink batch', () => this.sink.writeBatch(records));
    this.stats.applied += res.applied;
    this.stats.skipped += res.skipped;
  }
}
