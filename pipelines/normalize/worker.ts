import type { KafkaMessage, Producer } from 'kafkajs';
import type { Supplier } from '../../connectors/registry/loader.js';
import { valueSubject, type CanonicalCodecs } from '../../schemas/registry.js';
import type { DeadLetter, StockObservation } from '../../schemas/records.js';
import { CellarError, fromKafkaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import type { DeadLetterWriter } from '../dlq/writer.js';
import type { BatchContext, BatchHandler, PartitionBatch } from '../kafka/worker.js';
import { stockKey } from '../kafka/topics.js';
import type { ChangeEvent } from './debezium.js';
import { decodeRawChange, type DebeziumAvroDecoder } from './debezium-avro.js';
import { compileMapping, type CompiledMapping } from './mapping.js';
import { contributorIdOf, normalizeChange, normalizeTruncate, type Route } from './normalize.js';
import { Rejection } from './reasons.js';
import type { RouteStore } from './route-store.js';

/** What the normalizer knows about one raw topic. */
export interface RawTopic {
  topic: string;
  supplier: Supplier;
  mapping: CompiledMapping;
  table: string;
  keyColumns?: string[];
}

/** Raw Debezium topics of every captured table: `<topicPrefix>.<schema|db>.<table>`. */
export function rawTopics(suppliers: Supplier[], skuTables?: Map<string, Map<string, string>>): RawTopic[] {
  return suppliers.flatMap((supplier) => {
    const mapping = compileMapping(supplier, skuTables?.get(supplier.id));
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
  ) {
    this.byTopic = new Map(topics.map((t) => [t.topic, t]));
  }

  async init(): Promise<void> {
    await this.codecs.observation.register(valueSubject(this.observationsTopic));
    await this.dlq.init();
  }

  private deadLetter(batch: PartitionBatch, m: KafkaMessage, reason: string, message: string, supplierId: string | null, position: string | null): DeadLetter {
    return {
      stage: 'normalizer', reason, message, supplierId,
      topic: batch.topic, partition: batch.partition, offset: m.offset, sourcePosition: position,
      key: m.key ?? null, value: m.value ?? null, tsMs: Date.now(),
    };
  }

  /** A dead letter for a message that threw: its Rejection reason, or `unexpected_error` for a defect. */
  private poison(batch: PartitionBatch, m: KafkaMessage, err: unknown, supplierId: string | null, position: string | null): DeadLetter {
    if (err instanceof Rejection) return this.deadLetter(batch, m, err.reason, err.message, supplierId, position);
    this.log.error({ err, topic: batch.topic, partition: batch.partition, offset: m.offset }, 'unexpected error on one record; dead-lettered');
    return this.deadLetter(batch, m, 'unexpected_error', `${(err as Error)?.name ?? 'Error'}: ${(err as Error)?.message ?? String(err)}`, supplierId, position);
  }

  async handle(batch: PartitionBatch, ctx: BatchContext): Promise<void> {
    const raw = this.byTopic.get(batch.topic);
    const letters: DeadLetter[] = [];
    const decoded: Array<{ m: KafkaMessage; change: ChangeEvent; contributorId: string }> = [];
    const truncates: Array<{ m: KafkaMessage; change: ChangeEvent }> = [];
    this.metrics.eventsIn.inc({ stage: 'normalizer' }, batch.messages.length);
    for (const m of batch.messages) {
      if (!raw) {
        letters.push(this.deadLetter(batch, m, 'unknown_supplier', `no supplier captures topic ${batch.topic}`, null, null));
        continue;
      }
      try {
        const quick = decodeRawChange(m.key, m.value, this.avro);
        let pending: Promise<ChangeEvent | null> | undefined = quick instanceof Promise ? quick : undefined;
        // Only a schema fetch is asynchronous; its first attempt is `quick`, later ones start anew.
        const change = pending
          ? await ctx.retry('decoding raw change', () => {
              const p = pending ?? (decodeRawChange(m.key, m.value, this.avro) as Promise<ChangeEvent | null>);
              pending = undefined;
              return p;
            })
          : (quick as ChangeEvent | null);
        if (!change || change.op === 'm') continue; // tombstones and logical messages carry no stock
        if (change.table !== raw.table) throw new Rejection('unknown_table', `change on ${change.table} arrived on ${batch.topic}, which carries ${raw.table}`);
        if (change.op === 't') truncates.push({ m, change });
        else decoded.push({ m, change, contributorId: contributorIdOf(raw.supplier.id, change, raw.keyColumns) });
      } catch (err) {
        if (err instanceof CellarError && err.retriable) throw err;
        letters.push(this.poison(batch, m, err, raw.supplier.id, null));
      }
    }

    const known = await ctx.retry('reading routes', () => this.routes.get([...new Set(decoded.map((d) => d.contributorId))]));
    const observations: StockObservation[] = [];
    const changedRoutes: Route[] = [];
    const now = Date.now();
    // Truncates and row changes are applied in offset order so a truncate only removes rows seen before it.
    const work = [...decoded.map((d) => ({ ...d, truncate: false })), ...truncates.map((t) => ({ ...t, contributorId: '', truncate: true }))].sort((a, b) =>
      BigInt(a.m.offset) < BigInt(b.m.offset) ? -1 : 1,
    );
    for (const item of work) {
      if (item.truncate) {
        const live = await ctx.retry('reading routes of truncated table', () => this.routes.liveOfTable(raw!.supplier.id, item.change.table));
        const current = live.map((r) => known.get(r.contributorId) ?? r);
        for (const r of known.values()) if (!r.deleted && r.sourceTable === item.change.table && !current.includes(r)) current.push(r);
        const out = normalizeTruncate(item.change, current, now);
        observations.push(...out.observations);
        for (const r of out.routes) known.set(r.contributorId, r);
        changedRoutes.push(...out.routes);
        continue;
      }
      let outcome: ReturnType<typeof normalizeChange>;
      try {
        outcome = normalizeChange(item.change, raw!.mapping, item.contributorId, known.get(item.contributorId), now);
      } catch (err) {
        letters.push(this.poison(batch, item.m, err, raw!.supplier.id, item.change.position));
        continue;
      }
      if (outcome.kind === 'stale') this.metrics.staleEvents.inc({ stage: 'normalizer' });
      else if (outcome.kind === 'rejected') {
        letters.push(this.deadLetter(batch, item.m, outcome.reason, outcome.message, raw!.supplier.id, item.change.position));
      } else {
        observations.push(...outcome.observations);
        known.set(item.contributorId, outcome.route);
        changedRoutes.push(outcome.route);
      }
    }

    const subject = valueSubject(this.observationsTopic);
    const messages = observations.map((o) => ({
      key: stockKey(o.region, o.sku),
      value: this.codecs.observation.encode(subject, o),
      headers: { 'cellar-trace-id': o.traceId },
    }));
    if (messages.length) {
      await ctx.retry('producing observations', async () => {
        try {
          await this.producer.send({ topic: this.observationsTopic, acks: -1, messages });
        } catch (err) {
          throw fromKafkaError(err, 'producing observations');
        }
      });
    }
    await ctx.retry('writing dead letters', () => this.dlq.write(letters));
    await ctx.retry('saving routes', () => this.routes.save(changedRoutes));
    this.metrics.eventsOut.inc({ stage: 'normalizer' }, observations.length);
    for (const l of letters) this.metrics.deadLetters.inc({ stage: 'normalizer', reason: l.reason });
    if (letters.length) this.log.warn({ deadLetters: letters.length, reasons: [...new Set(letters.map((l) => l.reason))] }, 'dead-lettered records');
  }
}

/** Plain-text description of a raw topic list for logs. */
export function describeTopics(topics: RawTopic[]): string[] {
  return topics.map((t) => `${t.topic} → ${t.supplier.id}`);
}
