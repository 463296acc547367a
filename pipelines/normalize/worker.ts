import type { KafkaMessage, Producer } from 'kafkajs';
import type { Supplier } from '../../connectors/registry/loader.js';
import { valueSubject, type CanonicalCodecs } from '../../schemas/registry.js';
import type { DeadLetter, StockObservation } from '../../schemas/records.js';
import { fromKafkaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import type { DeadLetterWriter } from '../dlq/writer.js';
import type { BatchContext, BatchHandler, PartitionBatch } from '../kafka/worker.js';
import { stockKey } from '../kafka/topics.js';
import type { DebeziumAvroDecoder } from './debezium-avro.js';
import { normalizeBatch, sweepTruncated } from './batch.js';
import { deadLetter, replayOfHeaders } from '../dlq/letter.js';
import type { ReasonCode } from './reasons.js';
import { compileMapping, type CompiledMapping } from './mapping.js';
import type { RouteStore } from '../state/routes.js';
import type { MappingInputsStore } from './sku-map-store.js';
import type { SupplierActivityBoard } from '../state/supplier-activity.js';

/** What the normalizer knows about one raw topic. */
export interface RawTopic {
  topic: string;
  supplier: Supplier;
  mapping: CompiledMapping;
  table: string;
  keyColumns?: string[];
}

/** Raw Debezium topics of every captured table: `<topicPrefix>.<schema|db>.<table>`. */
export function rawTopics(suppliers: Supplier[], inputs?: MappingInputsStore): RawTopic[] {
  return suppliers.flatMap((supplier) => {
    const mapping = inputs ? inputs.compile(supplier) : compileMapping(supplier);
    return supplier.source.tables.map((t) => ({ topic: `${supplier.topicPrefix}.${t.name}`, supplier, mapping, table: t.name, keyColumns: t.key }));
  });
}

/**
 * The normalize stage on Kafka: raw Debezium messages → StockObservation (key `region|sku`) or dead
 * letters. Per batch: decode, read the routes of the batch's contributors (one query), normalize in order,
 * produce observations and dead letters (acks=all), then save the new routes. Offsets are committed by
 * the worker afterwards, so a crash anywhere replays the batch and the routes make the replay a no-op.
 */
export class NormalizerHandler implements BatchHandler {
  private readonly byTopic: Map<string, RawTopic>;
  /**
   * Batches of different partitions are normalized one at a time (their writes overlap): the bottle sizes
   * one batch pins must be persisted, or the batch normalized again, before its observations leave, and a
   * flush takes every pending pin of the process.
   */
  private normalizing: Promise<unknown> = Promise.resolve();

  constructor(
    topics: RawTopic[],
    private readonly routes: RouteStore,
    private readonly producer: Producer,
    private readonly codecs: CanonicalCodecs,
    private readonly observationsTopic: string,
    private readonly dlq: DeadLetterWriter,
    private readonly log: Logger,
    private readonly metrics: CellarMetrics,
    private readonly avro?: DebeziumAvroDecoder,
    private readonly flushPins?: () => Promise<number>,
    /** Told what each batch received from its supplier (`cellar status`'s last change of Debezium suppliers). */
    private readonly activity?: SupplierActivityBoard,
  ) {
    this.byTopic = new Map(topics.map((t) => [t.topic, t]));
  }

  async init(): Promise<void> {
    await this.codecs.observation.register(valueSubject(this.observationsTopic));
    await this.dlq.init();
  }

  private deadLetter(batch: PartitionBatch, m: KafkaMessage, reason: ReasonCode, message: string, supplierId: string | null, position: string | null): DeadLetter {
    return deadLetter('normalizer', reason, message, { supplierId, topic: batch.topic, partition: batch.partition, offset: m.offset, sourcePosition: position, key: m.key, value: m.value, replayOf: replayOfHeaders(m.headers) });
  }

  /** Produces observations (key `region|sku`, acks=all), retried in place. */
  private async produce(observations: StockObservation[], ctx: BatchContext): Promise<void> {
    if (!observations.length) return;
    const subject = valueSubject(this.observationsTopic);
    const messages = observations.map((o) => ({ key: stockKey(o.region, o.sku), value: this.codecs.observation.encode(subject, o), headers: { 'cellar-trace-id': o.traceId } }));
    await ctx.retry('producing observations', async () => {
      try {
        await this.producer.send({ topic: this.observationsTopic, acks: -1, messages });
      } catch (err) {
        throw fromKafkaError(err, 'producing observations');
      }
    });
  }

  async handle(batch: PartitionBatch, ctx: BatchContext): Promise<void> {
    const raw = this.byTopic.get(batch.topic);
    if (!raw) {
      const letters = batch.messages.map((m) => this.deadLetter(batch, m, 'unknown_supplier', `no supplier captures topic ${batch.topic}`, null, null));
      await ctx.retry('writing dead letters', () => this.dlq.write(letters));
      this.metrics.recordStage('normalizer', { in: batch.messages.length, letters });
      return;
    }
    const run = () => normalizeBatch(
      batch.messages.map((m) => ({ key: m.key, value: m.value, ref: m })),
      { supplierId: raw.supplier.id, mapping: raw.mapping, table: raw.table, keyColumns: raw.keyColumns },
      {
        routes: (ids) => this.routes.get(ids),
        liveOfTable: (sup, table, before) => this.routes.liveOfTable(sup, table, before),
        retry: ctx.retry,
        avro: this.avro,
        truncates: this.routes,
        flushPins: this.flushPins,
        onDefect: (err) => this.log.error({ err, topic: batch.topic, partition: batch.partition }, 'unexpected error on one record; dead-lettered'),
      },
    );
    const turn = this.normalizing.then(run, run);
    this.normalizing = turn.catch(() => undefined);
    const result = await turn;
    const observations = result.observations;
    const changedRoutes = result.routes;
    const letters = result.rejected.map((r) => this.deadLetter(batch, r.ref, r.reason, r.message, raw.supplier.id, r.position));

    await this.produce(observations, ctx);
    await ctx.retry('writing dead letters', () => this.dlq.write(letters));
    await ctx.retry('saving routes', () => this.routes.save(changedRoutes));
    await ctx.retry('saving held contributors', () => this.routes.held.apply(result.holds, result.releases));
    // A truncate of this table normalized on another partition while this batch ran may not have seen
    // the routes just saved: those older than it are removed now, at its version.
    const swept = await sweepTruncated(changedRoutes, raw.supplier.id, raw.table, { truncates: this.routes, retry: ctx.retry });
    if (swept.observations.length) {
      await this.produce(swept.observations, ctx);
      await ctx.retry('saving routes', () => this.routes.save(swept.routes));
      await ctx.retry('saving held contributors', () => this.routes.held.apply([], swept.routes.map((r) => ({ contributorId: r.contributorId, version: r.sourceVersion }))));
      this.log.info({ table: raw.table, removed: swept.routes.length }, 'removed rows a truncate on another partition overtook');
    }
    this.metrics.recordStage('normalizer', { in: batch.messages.length, out: observations.length + swept.observations.length, stale: result.stale, letters });
    let newest = 0;
    for (const o of observations) if (o.sourceTsMs > newest) newest = o.sourceTsMs;
    this.activity?.note(raw.supplier.id, batch.messages.length, newest);
    if (letters.length) this.log.warn({ deadLetters: letters.length, reasons: [...new Set(letters.map((l) => l.reason))] }, 'dead-lettered records');
  }
}

/** Plain-text description of a raw topic list for logs. */
export function describeTopics(topics: RawTopic[]): string[] {
  return topics.map((t) => `${t.topic} → ${t.supplier.id}`);
}
