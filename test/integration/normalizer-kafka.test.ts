import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { debeziumJsonMessage, type ColumnDef, type SourceInfo } from '../../connectors/debezium/envelope.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { replayDeadLetters } from '../../pipelines/state/dead-letters.js';
import { connectProducer, createKafka, ensureTopics } from '../../pipelines/kafka/client.js';
import { cellarTopics } from '../../pipelines/kafka/topics.js';
import { startWorker, type RunningWorker } from '../../pipelines/runtime/kafka-runtime.js';
import { createCodecs } from '../../schemas/registry.js';
import type { DeadLetter, StockObservation } from '../../schemas/records.js';
import { collect, testConfig } from '../support/kafka.js';
import { eventually, freshDatabase, rid, supplierDir } from '../support/services.js';

const columns: ColumnDef[] = [
  { name: 'id', type: 'int32', optional: false },
  { name: 'item_code', type: 'string' },
  { name: 'depot', type: 'string' },
  { name: 'qty', type: 'decimal', scale: 1 },
  { name: 'uom', type: 'string' },
];

describe('normalizer on Kafka: observations, dead letters with reasons, replay', () => {
  const prefix = rid('raw');
  const info: SourceInfo = { connector: 'postgresql', name: prefix, db: 'inv', schema: 'public', table: 'stock' };
  const topic = `${prefix}.public.stock`;
  const supplierYaml = (extraSkus = '') => `id: acme
name: Acme
source: { kind: postgres, connection: { host: h }, topicPrefix: ${prefix}, tables: [{ name: public.stock }] }
mapping:
  sku: item_code
  warehouse: depot
  quantity: qty
  unit: { field: uom, values: { CS: case12 } }
  skus: { inline: { A-1: wine-a, A-2: wine-b${extraSkus} } }
  regions: { d1: r1, d2: r2 }
`;
  let lsn = 1_000;
  const valid = (id: number, over: Record<string, unknown> = {}) =>
    debeziumJsonMessage(info, columns, ['id'], { op: 'c', before: null, after: { id, item_code: 'A-1', depot: 'd1', qty: '2', uom: 'CS', ...over }, tsMs: 1, lsn: (lsn += 10) });
  /** A valid message whose parsed value is then changed by `edit`. */
  const edited = (id: number, edit: (v: { payload: Record<string, unknown> } & Record<string, unknown>) => void, over: Record<string, unknown> = {}) => {
    const m = valid(id, over);
    const v = JSON.parse(m.value);
    edit(v);
    return { key: m.key, value: JSON.stringify(v) };
  };

  /** The corpus: each message with the reason it must be dead-lettered for. */
  function corpus(): Array<{ key: string | Buffer | null; value: string | Buffer; reason: string }> {
    const c: Array<{ key: string | Buffer | null; value: string | Buffer; reason: string }> = [];
    let n = 10_000;
    const add = (reason: string, m: { key: string | Buffer | null; value: string | Buffer }) => c.push({ ...m, reason });
    for (const v of ['not json {', '{"schema":', 'null x', '{"a":1,}']) add('malformed_json', { key: null, value: `${v} #${n++}` });
    add('malformed_json', { key: null, value: Buffer.from([0xff, 0xfe, 0x01, 0x02, n++ & 255, 9, 9]) });
    for (const v of ['{}', '[1,2]', `{"payload":{"n":${n++}}}`, `{"id":${n++},"item_code":"A-1","depot":"d1","qty":2}`, `"plain ${n++}"`]) add('not_debezium_envelope', { key: null, value: v });
    for (const op of ['x', 'create', 'upsert']) add('unsupported_op', edited(n++, (v) => void (v.payload.op = op)));
    add('bad_version', edited(n++, (v) => void delete (v.payload.source as Record<string, unknown>).lsn));
    add('bad_version', edited(n++, (v) => void ((v.payload.source as Record<string, unknown>).connector = 'oracle')));
    add('bad_version', edited(n++, (v) => void ((v.payload.source as Record<string, unknown>).lsn = 'abc')));
    for (let i = 0; i < 3; i++) add('missing_key', { ...valid(n++), key: null });
    for (let i = 0; i < 3; i++) add('unknown_table', edited(n++, (v) => void ((v.payload.source as Record<string, unknown>).table = `other${i}`)));
    for (let i = 0; i < 6; i++) add('unknown_sku', valid(n++, { item_code: `ZZZ-${i}` }));
    for (let i = 0; i < 4; i++) add('unknown_warehouse', valid(n++, { depot: `d${9 + i}` }));
    add('missing_field', valid(n++, { item_code: null }));
    add('missing_field', valid(n++, { qty: null }));
    add('missing_field', valid(n++, { depot: null }));
    add('missing_field', valid(n++, { uom: null }));
    add('wrong_type', edited(n++, (v) => void ((v.payload.after as Record<string, unknown>).qty = true)));
    add('wrong_type', edited(n++, (v) => void ((v.payload.after as Record<string, unknown>).item_code = { nested: true })));
    add('wrong_type', edited(n++, (v) => void ((v.payload.after as Record<string, unknown>).depot = [1])));
    for (const q of ['2.5', '0.5', '7.1']) add('non_integral_quantity', valid(n++, { qty: q, uom: 'btl' }));
    for (const q of ['-3', '-1', '-12']) add('negative_quantity', valid(n++, { qty: q }));
    for (const u of ['pallet', 'drum', 'keg']) add('unknown_unit', valid(n++, { uom: u }));
    add('bad_decimal', edited(n++, (v) => void ((v.payload.after as Record<string, unknown>).qty = '!!!')));
    add('bad_decimal', edited(n++, (v) => void ((v.payload.after as Record<string, unknown>).qty = '%%%%')));
    add('avro_decode', { key: null, value: Buffer.from([0, 0, 1, 0x86, 0xa0, 1, 2, 3, n++ & 255]) });
    add('avro_decode', { key: null, value: Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, 9, n++ & 255]) });
    return c;
  }

  let db: { url: string; pool: pg.Pool };
  let dir: string;
  let worker: RunningWorker | undefined;
  let cfg: ReturnType<typeof testConfig>;
  const start = async () => {
    const metrics = new CellarMetrics(false);
    worker = await startWorker('normalizer', cfg, createLogger('normalizer', 'warn'), metrics);
    return metrics;
  };

  beforeAll(async () => {
    db = await freshDatabase();
    dir = supplierDir({ acme: supplierYaml() });
    cfg = testConfig({ CELLAR_PG_URL: db.url, CELLAR_SUPPLIERS_DIR: dir });
  });
  afterAll(async () => {
    await worker?.stop();
    await db?.pool.end();
  });

  it('normalizes valid events, dead-letters every bad one with its reason, keeps running, and replays after a fix', async () => {
    const codecs = createCodecs(cfg.schemaRegistryUrl);
    const t = cellarTopics(cfg);
    const kafka = createKafka(cfg, createLogger('test', 'warn'), 'test');
    await ensureTopics(kafka, cfg, [topic]);
    const producer = await connectProducer(kafka, cfg);
    const metrics = await start();
    const observations = await collect<StockObservation>(cfg, t.observations, (v) => codecs.observation.decode(v));
    const letters = await collect<DeadLetter>(cfg, t.dlq, (v) => codecs.deadLetter.decode(v));
    try {
      const bad = corpus();
      expect(bad.length).toBeGreaterThanOrEqual(50);
      const before = Array.from({ length: 20 }, (_, i) => valid(i + 1));
      const after = Array.from({ length: 20 }, (_, i) => valid(i + 101, { item_code: 'A-2', depot: 'd2' }));
      // One message per send, so the bad ones are spread over the partitions between good ones.
      for (const m of [...before, ...bad, ...after]) await producer.send({ topic, acks: -1, messages: [{ key: m.key, value: m.value }] });

      const count = async () => Number((await db.pool.query('SELECT count(*) AS n FROM cellar.dead_letters')).rows[0].n);
      expect(await eventually(async () => (await count()) === bad.length && observations.out.length === 40, 60_000)).toBe(true);
      expect(worker!.worker.isReady()).toBe(true);

      const { rows } = await db.pool.query<{ reason: string; value: Buffer; stage: string; supplier_id: string | null; topic: string }>(
        'SELECT reason, value, stage, supplier_id, topic FROM cellar.dead_letters',
      );
      const byValue = new Map(rows.map((r) => [r.value.toString('hex'), r]));
      for (const b of bad) {
        const row = byValue.get(Buffer.from(b.value).toString('hex'));
        expect(row, `dead letter for ${String(b.value).slice(0, 60)}`).toBeDefined();
        expect(row!.reason, String(b.value).slice(0, 120)).toBe(b.reason);
        expect(row!.stage).toBe('normalizer');
        expect(row!.topic).toBe(topic);
      }
      const expectedByReason = new Map<string, number>();
      for (const b of bad) expectedByReason.set(b.reason, (expectedByReason.get(b.reason) ?? 0) + 1);
      for (const [reason, n] of expectedByReason) expect(await metrics.value('cellar_dead_letters_total', { stage: 'normalizer', reason }), reason).toBe(n);
      expect(await eventually(async () => letters.out.length === bad.length, 20_000)).toBe(true);
      expect(new Set(letters.out.map((l) => l.reason))).toEqual(new Set(expectedByReason.keys()));
      expect(observations.out.filter((o) => o.region === 'r2' && o.sku === 'wine-b')).toHaveLength(20);

      // Fix the mapping, restart, replay the unknown SKUs: they flow through.
      await worker!.stop();
      writeFileSync(join(dir, 'acme.yaml'), supplierYaml(', ZZZ-0: wine-z, ZZZ-1: wine-z, ZZZ-2: wine-z, ZZZ-3: wine-z, ZZZ-4: wine-z, ZZZ-5: wine-z'));
      const metrics2 = await start();
      const first = await replayDeadLetters(db.pool, async () => producer, { reason: 'unknown_sku' });
      expect(first.replayed).toHaveLength(6);
      expect(await eventually(async () => observations.out.length === 46, 60_000)).toBe(true);
      expect(observations.out.filter((o) => o.sku === 'wine-z').map((o) => o.bottles)).toEqual([24, 24, 24, 24, 24, 24]);

      // Replaying again changes nothing: the routes know those versions.
      const second = await replayDeadLetters(db.pool, async () => producer, { reason: 'unknown_sku' });
      expect(second.replayed).toHaveLength(6);
      expect(await eventually(async () => (await metrics2.value('cellar_stale_events_total', { stage: 'normalizer' })) === 6, 30_000)).toBe(true);
      expect(observations.out.length).toBe(46);
      expect(await count()).toBe(bad.length);
      const { rows: replayed } = await db.pool.query(`SELECT replay_count FROM cellar.dead_letters WHERE reason = 'unknown_sku'`);
      expect(replayed.map((r) => r.replay_count)).toEqual([2, 2, 2, 2, 2, 2]);
    } finally {
      await observations.stop();
      await letters.stop();
      await producer.disconnect();
    }
  }, 180_000);

  it('holds a counted row whose newer change is refused, and releases it on a valid change or a delete', async () => {
    const kafka = createKafka(cfg, createLogger('test', 'warn'), 'test');
    const producer = await connectProducer(kafka, cfg);
    const held = async () => (await db.pool.query<{ contributor_id: string; reason: string; region: string }>('SELECT contributor_id, reason, region FROM cellar.held_contributors ORDER BY 1')).rows;
    const send = (m: { key: string | Buffer | null; value: string | Buffer }) => producer.send({ topic, acks: -1, messages: [{ key: m.key, value: m.value }] });
    const change = (id: number, op: 'u' | 'd', after: Record<string, unknown> | null) =>
      debeziumJsonMessage(info, columns, ['id'], { op, before: op === 'd' ? { id, item_code: 'A-1', depot: 'd1', qty: '2', uom: 'CS' } : null, after: after && { id, item_code: 'A-1', depot: 'd1', qty: '2', uom: 'CS', ...after }, tsMs: 1, lsn: (lsn += 10) });
    try {
      for (const id of [500, 501]) await send(valid(id));
      for (const id of [500, 501]) await send(change(id, 'u', { depot: 'd9' }));
      expect(await eventually(async () => (await held()).length === 2, 60_000), JSON.stringify(await held())).toBe(true);
      expect(await held()).toEqual([500, 501].map((id) => ({ contributor_id: `acme/public.stock/id=${id}`, reason: 'unknown_warehouse', region: 'r1' })));
      await send(change(500, 'u', { depot: 'd2' }));
      await send(change(501, 'd', null));
      expect(await eventually(async () => (await held()).length === 0, 60_000), JSON.stringify(await held())).toBe(true);
    } finally {
      await producer.disconnect();
    }
  }, 120_000);
});
