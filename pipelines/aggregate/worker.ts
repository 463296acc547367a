import type { KafkaMessage, Producer } from 'kafkajs';
import { valueSubject, type CanonicalCodecs } from '../../schemas/registry.js';
import type { DeadLetter, StockObservation } from '../../schemas/records.js';
import { CellarError, fromKafkaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import type { DeadLetterWriter } from '../dlq/writer.js';
import type { BatchContext, BatchHandler, PartitionBatch } from '../kafka/worker.js';
import { stockKey } from '../kafka/topics.js';
import { RegionalAggregator } from './aggregator.js';
import { aggregateObservations } from './stage.js';
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
 * output topic. State is one {@link RegionalAggregator} per owned partition, restored from
 * `cellar.stock_contributions` on first use after every group join. Per batch: apply in offset order,
 * produce the changed totals (acks=all), then persist the changed contributions; the worker commits
 * offsets last. Replaying from any committed offset re-applies observations the restored state already
 * has, which the version guard turns into no-ops, or re-emits identical records (same version, same total).
 */
export class AggregatorHandler implements BatchHandler {
  private readonly partitions = new Map<number, RegionalAggregator>();

  constructor(
    private readonly store: ContributionStore,
    private readonly producer: Producer,
    private readonly codecs: CanonicalCodecs,
    private readonly outputTopic: string,
    private readonly dlq: DeadLetterWriter,
    private readonly log: Logger,
    private readonly metrics: CellarMetrics,
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

  private async state(partition: number, ctx: BatchContext): Promise<RegionalAggregator> {
    let agg = this.partitions.get(partition);
    if (!agg) {
      const rows = await ctx.retry(`restoring partition ${partition}`, () => this.store.load(partition));
      agg = new RegionalAggregator();
      agg.restore(rows);
      this.partitions.set(partition, agg);
      this.log.info({ partition, contributions: rows.length }, 'restored aggregator state');
    }
    return agg;
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
    const agg = await this.state(batch.partition, ctx);
    const letters: DeadLetter[] = [];
    const observations: Array<{ o: StockObservation; m: KafkaMessage }> = [];
    for (const m of batch.messages) {
      const o = await ctx.retry('decoding observation', () => this.decode(batch, m, letters));
      if (o) observations.push({ o, m });
    }
    const { stale, letters: refused } = aggregateObservations(agg, observations, (x) => x.o, (x) => ({ topic: batch.topic, partition: batch.partition, offset: x.m.offset, key: x.m.key, value: x.m.value }));
    letters.push(...refused);
    const { totals, contributions } = agg.drain(Date.now());
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
    await ctx.retry('persisting contributions', () => this.store.save(contributions, batch.partition));
    await ctx.retry('writing dead letters', () => this.dlq.write(letters));
    this.metrics.recordStage('aggregator', { in: batch.messages.length, out: totals.length, stale, letters });
  }
}
