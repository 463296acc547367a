import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createLogger } from '../../pipelines/core/logger.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { STAGES } from '../../pipelines/dlq/letter.js';
import { connectProducer, createKafka, ensureTopics } from '../../pipelines/kafka/client.js';
import { cellarTopics } from '../../pipelines/kafka/topics.js';
import { startWorker, type RunningWorker } from '../../pipelines/runtime/kafka-runtime.js';
import { REASONS } from '../../schemas/reasons.js';
import type { StockObservation } from '../../schemas/records.js';
import { createCodecs, valueSubject } from '../../schemas/registry.js';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import { testConfig } from '../support/kafka.js';
import { eventually, freshDatabase, rid, supplierDir } from '../support/services.js';
import { stockSupplier } from '../support/suppliers.js';

/** The columns every dead letter has, whichever stage and runtime wrote it. */
const LETTER = 'stage, reason, message, supplier_id, topic, partition, "offset", source_position, key, value';
type LetterRow = { stage: string; reason: string; message: string; supplier_id: string | null; topic: string | null; partition: number | null; offset: string | null; source_position: string | null; value: Buffer | null };

/** Every dead letter is of one shape: a known stage and reason, a message, the original bytes, and where it was. */
function expectOneShape(rows: LetterRow[]): void {
  for (const r of rows) {
    expect(STAGES, JSON.stringify(r)).toContain(r.stage);
    expect(Object.keys(REASONS), JSON.stringify(r)).toContain(r.reason);
    expect(r.message.length, JSON.stringify(r)).toBeGreaterThan(10);
    expect(r.value, `${r.stage}/${r.reason}: the original bytes`).not.toBeNull();
    // Where it was: a Kafka offset, or (embedded runtime) its source position.
    expect(r.topic !== null ? r.partition !== null && r.offset !== null : r.source_position !== null, `${r.stage}/${r.reason}: where it was`).toBe(true);
  }
}

const observation = (o: Partial<StockObservation>): StockObservation => ({
  supplierId: 'acme', warehouseId: 'd1', region: 'r1', sku: 'wine-a', supplierSku: 'A', vintage: null, bottleSizeMl: 750, bottles: 5,
  op: 'UPSERT', contributorId: 'acme/public.stock/id=1', sourceVersion: '00000000000000000100', sourceTsMs: 1, ingestTsMs: 1, traceId: 't', ...o,
});

/**
 * The embedded runtime and the Kafka runtime run the same stages: a `cellar.sku_map` change applies to the
 * embedded runtime without a restart, stale observations are counted at the aggregator in both, and every
 * stage of both writes dead letters of one shape with reasons from one list.
 */
describe('the two runtimes run the same stages', () => {
  const R1 = rid('west');
  let supplier: { url: string; client: pg.Client };
  let e: EmbeddedUnderTest;

  beforeAll(async () => {
    supplier = await stockSupplier({ rows: 4, skus: 2, maxQty: 5 });
    await supplier.client.query("UPDATE public.stock SET sku = 'A-' || id, depot = 'd1'");
    const u = new URL(supplier.url);
    e = await startEmbeddedUnderTest({ acme: `id: acme
name: Acme
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: ${u.pathname.slice(1)}, user: postgres }
  topicPrefix: ${rid('acme')}
  tables: [{ name: public.stock }]
mapping:
  sku: sku
  warehouse: depot
  quantity: qty
  skus: { table: cellar.sku_map }
  regions: { d1: ${R1} }
` }, 'stages-alike', { env: { CELLAR_SKU_MAP_REFRESH_MS: '1000' } });
  }, 60_000);

  afterAll(async () => {
    await e?.stop();
    await supplier?.client.end();
  });

  const total = async (sku: string) => (await e.cellar.pool.query<{ bottles: string }>('SELECT bottles FROM cellar.regional_stock WHERE region = $1 AND sku = $2', [R1, sku])).rows[0]?.bottles;

  it('the embedded runtime applies a cellar.sku_map change without a restart', async () => {
    const unknown = async () => (await e.cellar.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM cellar.dead_letters WHERE reason = 'unknown_sku'")).rows[0]!.n;
    expect(await eventually(async () => (await unknown()) === 4, 30_000), 'the rows are unknown SKUs before the map has them').toBe(true);
    await e.cellar.pool.query("INSERT INTO cellar.sku_map (supplier_id, supplier_sku, sku) VALUES ('acme', 'A-1', 'wine-one'), ('acme', 'A-2', 'wine-two')");
    await new Promise((r) => setTimeout(r, 2_500)); // two refreshes
    await supplier.client.query('UPDATE public.stock SET qty = 40 + id WHERE id IN (1, 2)');
    expect(await eventually(async () => (await total('wine-one')) === '41' && (await total('wine-two')) === '42', 30_000), 'the mapped rows count').toBe(true);
    expect(e.failed()).toBeUndefined();
  }, 90_000);

  it('stale observations are counted at the aggregator, and refusals dead-lettered alike, in both runtimes', async () => {
    // Embedded: corrections below the normalizer take the aggregator path (see reconcile/direct-repair.ts).
    const cid = 'acme/public.stock/id=1';
    const v = (await e.cellar.pool.query<{ source_version: string }>('SELECT source_version FROM cellar.stock_contributions WHERE contributor_id = $1 AND NOT deleted', [cid])).rows[0]!.source_version;
    const stale = observation({ region: R1, sku: 'wine-one', contributorId: cid, sourceVersion: v, bottles: 999 });
    const huge = observation({ region: R1, sku: 'wine-two', contributorId: 'acme/public.stock/id=77', sourceVersion: `${v}9`, bottles: 9_007_199_254_740_980 });
    await e.cellar.pool.query('INSERT INTO cellar.repair_requests (supplier_id, observation) SELECT \'acme\', o FROM unnest($1::jsonb[]) AS o', [[JSON.stringify(stale), JSON.stringify(huge)]]);
    expect(await eventually(async () => (await e.metrics.value('cellar_stale_events_total', { stage: 'aggregator' })) === 1, 20_000), 'embedded: one stale observation at the aggregator').toBe(true);
    expect(await eventually(async () => (await e.metrics.value('cellar_dead_letters_total', { stage: 'aggregator', reason: 'quantity_out_of_range' })) === 1, 20_000)).toBe(true);
    expect(await total('wine-one')).toBe('41');

    // Kafka: the same observations on the observations topic, twice, to an aggregator worker.
    const db = await freshDatabase();
    const cfg = testConfig({ CELLAR_PG_URL: db.url, CELLAR_SUPPLIERS_DIR: supplierDir({}), CELLAR_HTTP_PORT: '-1' });
    const metrics = new CellarMetrics(false);
    const log = createLogger('stages-alike', 'error');
    const workers: RunningWorker[] = [];
    const kafka = createKafka(cfg, log, 'stages-alike');
    const producer = await connectProducer(kafka, cfg);
    try {
      const topics = cellarTopics(cfg);
      await ensureTopics(kafka, cfg);
      workers.push(await startWorker('aggregator', cfg, log, metrics), await startWorker('sink-postgres', cfg, log, metrics));
      const codecs = createCodecs(cfg.schemaRegistryUrl);
      await codecs.observation.register(valueSubject(topics.observations));
      const fresh = observation({ region: R1, sku: 'wine-one', contributorId: cid, sourceVersion: v, bottles: 41 });
      const enc = (o: StockObservation) => ({ key: `${o.region}|${o.sku}`, value: codecs.observation.encode(valueSubject(topics.observations), o) });
      // At the Kafka aggregator the key starts empty: a first huge contributor fits, the second is refused.
      const first = { ...huge, contributorId: 'acme/public.stock/id=76' };
      await producer.send({ topic: topics.observations, acks: -1, messages: [enc(fresh), enc(stale), enc(first), enc(huge), { key: 'x|y', value: null }] });
      await producer.send({ topic: topics.regionalStock, acks: -1, messages: [{ key: 'x|y', value: Buffer.from('not avro at all') }] });
      expect(await eventually(async () => (await metrics.value('cellar_stale_events_total', { stage: 'aggregator' })) === 1, 60_000), 'kafka: one stale observation at the aggregator').toBe(true);
      expect(await eventually(async () => (await metrics.value('cellar_dead_letters_total', { stage: 'aggregator', reason: 'quantity_out_of_range' })) === 1, 20_000)).toBe(true);
      expect(await eventually(async () => (await metrics.value('cellar_dead_letters_total', { stage: 'aggregator', reason: 'empty_record' })) === 1, 20_000)).toBe(true);
      expect(await eventually(async () => (await metrics.value('cellar_dead_letters_total', { stage: 'sink-postgres', reason: 'avro_decode' })) === 1, 20_000)).toBe(true);

      const kafkaLetters = (await db.pool.query<LetterRow>(`SELECT ${LETTER} FROM cellar.dead_letters`)).rows;
      const embeddedLetters = (await e.cellar.pool.query<LetterRow>(`SELECT ${LETTER} FROM cellar.dead_letters`)).rows;
      expect(new Set(kafkaLetters.map((r) => `${r.stage}/${r.reason}`))).toEqual(new Set(['aggregator/quantity_out_of_range', 'aggregator/empty_record', 'sink-postgres/avro_decode']));
      expect(new Set(embeddedLetters.map((r) => `${r.stage}/${r.reason}`))).toEqual(new Set(['normalizer/unknown_sku', 'aggregator/quantity_out_of_range']));
      expectOneShape([...kafkaLetters.filter((r) => r.reason !== 'empty_record'), ...embeddedLetters]);
      // The refusal reads the same in both runtimes.
      const msg = (rows: LetterRow[]) => rows.find((r) => r.reason === 'quantity_out_of_range')!.message;
      expect(msg(kafkaLetters).replace(/now -?\d+/, 'now N')).toBe(msg(embeddedLetters).replace(/now -?\d+/, 'now N'));
    } finally {
      for (const w of workers) await w.stop();
      await producer.disconnect();
      await db.pool.end();
    }
  }, 150_000);
});
