import { debeziumJsonMessage, type ColumnDef, type SourceInfo } from '../connectors/debezium/envelope.js';
import { parseSupplier } from '../connectors/registry/loader.js';
import { startLocalSchemaRegistry } from '../infra/local/schema-registry.js';
import { decodeRawChange, DebeziumAvroDecoder } from '../pipelines/normalize/debezium-avro.js';
import { compileMapping } from '../pipelines/normalize/mapping.js';
import { contributorIdOf, normalizeChange, type Route } from '../pipelines/normalize/normalize.js';
import { debeziumAvroWriter } from './debezium-avro-writer.js';
import { repeat, result, type BenchResult } from './harness.js';

const N = 100_000;
const SKUS = 2_000;
const info: SourceInfo = { connector: 'postgresql', name: 'north', db: 'inventory', schema: 'public', table: 'stock' };
const columns: ColumnDef[] = [
  { name: 'id', type: 'int32', optional: false },
  { name: 'item_code', type: 'string' },
  { name: 'depot', type: 'string' },
  { name: 'qty', type: 'decimal', scale: 2 },
  { name: 'uom', type: 'string' },
  { name: 'updated_at', type: 'int64' },
];
const supplier = parseSupplier(
  `id: north-cellars
name: North
source: { kind: postgres, connection: { host: h }, topicPrefix: north, tables: [{ name: public.stock }] }
mapping:
  sku: item_code
  warehouse: depot
  quantity: qty
  unit: { field: uom, values: { CS12: case12, BT: bottles } }
  skus: { inline: { ${Array.from({ length: SKUS }, (_, i) => `NC-${i}: wine-${i}`).join(', ')} } }
  regions: { d1: eu-west, d2: eu-west, d3: us-east, d4: us-east, d5: ap-south, d6: ap-south }
`,
  'bench.yaml',
);

function changes() {
  return Array.from({ length: N }, (_, i) => ({
    op: (i % 10 === 0 ? 'c' : 'u') as 'c' | 'u',
    before: null,
    after: { id: i % 20_000, item_code: `NC-${i % SKUS}`, depot: `d${(i % 6) + 1}`, qty: `${i % 50}.00`, uom: i % 3 ? 'CS12' : 'BT', updated_at: 1_732_000_000_000 + i },
    tsMs: 1_732_000_000_000 + i,
    lsn: 24_000_000 + i * 16,
    txId: 1000 + i,
  }));
}

/** decode + normalize of pre-built messages on one core; returns events/s. */
async function throughput(messages: Array<{ key: Buffer; value: Buffer }>, decoder?: DebeziumAvroDecoder): Promise<number> {
  const mapping = compileMapping(supplier);
  const routes = new Map<string, Route>();
  let out = 0;
  const t0 = process.hrtime.bigint();
  for (const m of messages) {
    const quick = decodeRawChange(m.key, m.value, decoder);
    const change = (quick instanceof Promise ? await quick : quick)!;
    const id = contributorIdOf(supplier.id, change);
    const r = normalizeChange(change, mapping, id, routes.get(id), 0);
    if (r.kind === 'changed') {
      routes.set(id, r.route);
      out += r.observations.length;
    }
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (out < messages.length) throw new Error(`only ${out} observations for ${messages.length} events`);
  return messages.length / secs;
}

export async function normalizeBenchmarks(): Promise<BenchResult[]> {
  const all = changes();
  const json = all.map((c) => {
    const m = debeziumJsonMessage(info, columns, ['id'], c);
    return { key: Buffer.from(m.key!), value: Buffer.from(m.value) };
  });
  const sr = await startLocalSchemaRegistry();
  try {
    const avroMessage = await debeziumAvroWriter(sr.url, info, columns);
    // The writer schemas are fetched now, while the registry connection is fresh: building the messages
    // takes seconds, and a kept-alive connection the registry closed meanwhile fails with ECONNRESET.
    const decoder = new DebeziumAvroDecoder(sr.url);
    const first = avroMessage(all[0]!);
    await decoder.decode(first.key, first.value);
    const avroMsgs = all.map(avroMessage);
    const only = process.env.CELLAR_BENCH_ONLY;
    const avroRuns = only === 'json' ? [0] : await repeat(() => throughput(avroMsgs, decoder), 5, 1);
    const jsonRuns = only === 'avro' ? [0] : await repeat(() => throughput(json), 5, 1);
    const bytes = (ms: Array<{ value: Buffer }>) => Math.round(ms.reduce((s, m) => s + m.value.length, 0) / ms.length);
    return [
      result('normalize: Debezium Avro (decode + map + route)', 'events/s', avroRuns, { target: 250_000, details: { events: N, meanValueBytes: bytes(avroMsgs) } }),
      result('normalize: Debezium JSON with schemas', 'events/s', jsonRuns, { target: 150_000, details: { events: N, meanValueBytes: bytes(json) } }),
    ];
  } finally {
    await sr.close();
  }
}
