import type { KafkaMessage, Producer } from 'kafkajs';
import { deriveEvents, NO_THRESHOLDS, type Thresholds } from '../events/derive.js';
import { valueSubject, type CanonicalCodecs } from '../../schemas/registry.js';
import type { DeadLetter, StockObservation } from '../../schemas/records.js';
import { CellarError, fromKafkaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import type { DeadLetterWriter } from '../dlq/writer.js';
import type { BatchContext, BatchHandler, PartitionBatch } from '../kafka/worker.js';
import { stockKey } from '../kafka/topics.js';
import { RegionalAggregator } from './aggregator.js';
import { aggregateObservations, holdKeys } from './stage.js';
import { deadLetter, replayOfHeaders } from '../dlq/letter.js';
import type { ReasonCode } from '../../schemas/reasons.js';
import type { ContributionStore } from '../state/contributions.js';

function validObservation(o: StockObservation): string | undefined {
  if (!o.region || !o.sku || !o.contributorId || !o.sourceVersion) return 'region, sku, contributorId and sourceVersion must be non-empty';
  if (!Number.isSafeInteger(o.bottles)) return `bottles ${o.bottles} is not a safe integer`;
  return undefined;
}

/**
 * The aggregate stage on Kafka: observations (key `region|sku`) → RegionalStock totals on the compacted
 * output topic. State is one {@link RegionalAggregator} per owned partition; each key's contributions are
 * read from `cellar.stock_contributions` when a batch first needs it after a group join (a key of many
 * contributors as its sums and the contributors the batch changes: {@link holdKeys}), and the least
 * recently used keys are dropped beyond `maxContributions` (memory stays bounded; restarts read nothing up front). Per batch: apply in offset order,
 * produce the changed totals (acks=all), then persist the changed contributions; the worker commits
 * offsets last. Replaying from any committed offset re-applies observations the restored state already
 * has, which the version guard turns into no-ops, or re-emits identical records (same version, same total).
 */
export class AggregatorHandler implements BatchHandler {
  private readonly partitions = new Map<number, RegionalAggregator>();
  /** Partitions with a batch in progress: their loaded keys must stay until it is persisted. */
  private readonly busy = new Set<number>();

  constructor(
    private readonly store: ContributionStore,
    private readonly producer: Producer,
    private readonly codecs: CanonicalCodecs,
    private readonly outputTopic: string,
    private readonly dlq: DeadLetterWriter,
    private readonly log: Logger,
    private readonly metrics: CellarMetrics,
    /** Contributions kept in memory over all partitions (CELLAR_STATE_CACHE_CONTRIBUTORS). */
    private readonly maxContributions = 250_000,
    /**
     * The low-stock rules: every effective change is written to `cellar.stock_history` and the stock events
     * it makes to `cellar.stock_events`; null keeps neither (CELLAR_HISTORY_RETENTION_DAYS=0).
     */
    private readonly thresholds: (() => Thresholds) | null = () => NO_THRESHOLDS,
  ) {}

  async init(): Promise<void> {
    await this.codecs.regionalStock.register(valueSubject(this.outputTopic));
    await this.dlq.init();
  }

  onAssignment(): void {
    // Partitions may have been processed by another member since we last held them.
    this.partitions.clear();
  }

  reset(_topic: string, partition: number): void {
    this.partitions.delete(partition);
  }

  /** The partition's aggregator; its keys are loaded from `cellar.stock_contributions` when first used (holdKeys). */
  private state(partition: number): RegionalAggregator {
    let agg = this.partitions.get(partition);
    if (!agg) {
      agg = new RegionalAggregator({ history: this.thresholds !== null });
      this.partitions.set(partition, agg);
    }
    return agg;
  }

  /**
   * Drops least recently used keys beyond the bound, from each partition in proportion to what it holds;
   * never from a partition whose batch is in progress (its keys were loaded for that batch).
   */
  private evict(): void {
    let total = 0;
    for (const a of this.partitions.values()) total += a.size;
    if (total <= this.maxContributions) return;
    let dropped = 0;
    for (const [p, a] of this.partitions) if (!this.busy.has(p)) dropped += a.evict(Math.floor((this.maxContributions * a.size) / total));
    this.log.debug({ dropped, held: total }, 'aggregate state: least recently used keys dropped from memory');
  }

  private async decode(batch: PartitionBatch, m: KafkaMessage, letters: DeadLetter[]): Promise<StockObservation | undefined> {
    const fail = (reason: ReasonCode, message: string) => {
      letters.push(deadLetter('aggregator', reason, message, { topic: batch.topic, partition: batch.partition, offset: m.offset, key: m.key, value: m.value, replayOf: replayOfHeaders(m.headers) }));
      return undefined;
    };
    if (!m.value) return fail('empty_record', 'an observation without a value (a tombstone on the observations topic)');
    try {
      const o = await this.codecs.observation.decode(m.value);
      const invalid = validObservation(o);
      return invalid ? fail('wrong_type', invalid) : o;
    } catch (err) {
      if (err instanceof CellarError && err.retriable) throw err;
      return fail('avro_decode', (err as Error).message);
    }
  }

  async handle(batch: PartitionBatch, ctx: BatchContext): Promise<void> {
    this.busy.add(batch.partition);
    try {
      await this.handleOwn(batch, ctx);
    } finally {
      this.busy.delete(batch.partition);
    }
    // Every change of this partition is persisted now: keys dropped from it are read back as they were.
    this.evict();
  }

  private async handleOwn(batch: PartitionBatch, ctx: BatchContext): Promise<void> {
    const agg = this.state(batch.partition);
    const letters: DeadLetter[] = [];
    const observations: Array<{ o: StockObservation; m: KafkaMessage }> = [];
    for (const m of batch.messages) {
      const o = await ctx.retry('decoding observation', () => this.decode(batch, m, letters));
      if (o) observations.push({ o, m });
    }
    await holdKeys(agg, observations.map((x) => x.o),
      (keys) => ctx.retry(`loading aggregator keys of partition ${batch.partition}`, () => this.store.loadKeys(batch.partition, keys)),
      (wants) => ctx.retry(`loading aggregator contributions of partition ${batch.partition}`, () => this.store.loadEntries(batch.partition, wants)));
    const { stale, letters: refused } = aggregateObservations(agg, observations, (x) => x.o, (x) => ({ topic: batch.topic, partition: batch.partition, offset: x.m.offset, key: x.m.key, value: x.m.value }));
    letters.push(...refused);
    const { totals, contributions, history } = agg.drain(Date.now());
    const subject = valueSubject(this.outputTopic);
    if (totals.length) {
      const messages = totals.map((t) => ({ key: stockKey(t.region, t.sku), value: this.codecs.regionalStock.encode(subject, t) }));
      await ctx.retry('producing regional stock', async () => {
        try {
          await this.producer.send({ topic: this.outputTopic, acks: -1, messages });
        } catch (err) {
          throw fromKafkaError(err, 'producing regional stock');
        }
      });
    }
    const events = this.thresholds ? deriveEvents(history, this.thresholds()) : [];
    await ctx.retry('persisting contributions', () => this.store.saveWithHistory(contributions, batch.partition, history, events));
    await ctx.retry('writing dead letters', () => this.dlq.write(letters));
    this.metrics.recordStage('aggregator', { in: batch.messages.length, out: totals.length, stale, letters });
  }
}
