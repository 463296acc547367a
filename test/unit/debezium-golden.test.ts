import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { decimalToString, type Decimal } from '../../pipelines/normalize/decimal.js';
import { decodeDebeziumJson, type ChangeEvent } from '../../pipelines/normalize/debezium.js';
import { DebeziumAvroDecoder, decodeRawChange } from '../../pipelines/normalize/debezium-avro.js';
import { rid, services } from '../support/services.js';

const dir = (name: string) => fileURLToPath(new URL(`../fixtures/${name}/`, import.meta.url));
interface Fixture {
  file: string;
  description: string;
  key: unknown;
  value: unknown;
  keySchema?: unknown;
  valueSchema?: unknown;
  expected?: Record<string, unknown> | null;
}
const load = (name: string): Fixture[] =>
  readdirSync(dir(name))
    .filter((f) => f.endsWith('.json'))
    .map((f) => ({ file: f, ...(JSON.parse(readFileSync(dir(name) + f, 'utf8')) as Omit<Fixture, 'file'>) }));

/** Decimals compare by their exact text; everything else as is. */
function plain(v: unknown): unknown {
  if (v && typeof v === 'object' && 'unscaled' in v) return { decimal: decimalToString(v as Decimal) };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function checkExpected(e: ChangeEvent | null, expected: Record<string, unknown> | null): void {
  if (expected === null) return void expect(e).toBeNull();
  expect(e).not.toBeNull();
  const got = plain(e) as Record<string, unknown>;
  for (const [k, v] of Object.entries(expected)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) expect(got[k], k).toMatchObject(v as object);
    else expect(got[k], k).toEqual(v);
  }
}

describe('golden Debezium fixtures, JSON converter', () => {
  for (const f of load('debezium').filter((x) => 'expected' in x)) {
    it(`${f.file}: ${String(f.description)}`, () => {
      const key = f.key === null ? null : Buffer.from(JSON.stringify(f.key));
      const value = f.value === null ? null : Buffer.from(JSON.stringify(f.value));
      checkExpected(decodeDebeziumJson(key, value), f.expected ?? null);
    });
  }
});

function fromFixture(v: unknown): unknown {
  if (v && typeof v === 'object' && '$bytes' in v) return Buffer.from((v as { $bytes: string }).$bytes, 'base64');
  if (Array.isArray(v)) return v.map(fromFixture);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromFixture(x)]));
  return v;
}

describe('golden Debezium fixtures, Avro converter through the Schema Registry', () => {
  for (const f of load('debezium-avro')) {
    it(`${f.file}: ${String(f.description)}`, async () => {
      const registry = new SchemaRegistry({ host: services().schemaRegistryUrl });
      const topic = rid('raw');
      const wire = async (schema: unknown, subject: string, value: unknown) => {
        const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject });
        const body = avro.Type.forSchema(schema as avro.Schema, { wrapUnions: 'auto' }).toBuffer(fromFixture(value));
        const head = Buffer.alloc(5);
        head.writeInt32BE(id, 1);
        return Buffer.concat([head, body]);
      };
      const key = await wire(f.keySchema, `${topic}-key`, f.key);
      const value = await wire(f.valueSchema, `${topic}-value`, f.value);
      const decoder = new DebeziumAvroDecoder(services().schemaRegistryUrl);
      checkExpected(await decodeRawChange(key, value, decoder), f.expected ?? null);
      // A second message with the same schemas decodes synchronously from the cache.
      expect(decodeRawChange(key, value, decoder)).not.toBeInstanceOf(Promise);
    });
  }

  it('rejects a wire-format message whose schema id is unknown', async () => {
    const decoder = new DebeziumAvroDecoder(services().schemaRegistryUrl);
    const value = Buffer.from([0, 0x7f, 0, 0, 1, 2, 3]);
    await expect(decodeRawChange(null, value, decoder)).rejects.toMatchObject({ reason: 'avro_decode' });
  });
});

describe('schema evolution at the source', () => {
  it('keeps decoding when a supplier adds a column (new writer schema id mid-stream)', async () => {
    const { debeziumAvroSchema, debeziumAvroValue } = await import('../../connectors/debezium/envelope.js');
    const { compileMapping } = await import('../../pipelines/normalize/mapping.js');
    const { northSupplier } = await import('../support/fixtures.js');
    const registry = new SchemaRegistry({ host: services().schemaRegistryUrl });
    const info = { connector: 'postgresql' as const, name: rid('n'), db: 'inv', schema: 'public', table: 'stock' };
    const v1 = [{ name: 'id', type: 'int32' as const, optional: false }, { name: 'item_code', type: 'string' as const }, { name: 'depot', type: 'string' as const }, { name: 'qty', type: 'int32' as const }];
    const v2 = [...v1, { name: 'shelf', type: 'string' as const }];
    const decoder = new DebeziumAvroDecoder(services().schemaRegistryUrl);
    const mapping = compileMapping(northSupplier());
    const bottles: number[] = [];
    for (const [cols, after] of [[v1, { id: 1, item_code: 'x', depot: 'bdx-1', qty: 5 }], [v2, { id: 1, item_code: 'x', depot: 'bdx-1', qty: 7, shelf: 'A3' }]] as const) {
      const schema = debeziumAvroSchema(info, [...cols]);
      const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject: `${info.name}.public.stock-value` });
      const body = avro.Type.forSchema(schema as avro.Schema, { wrapUnions: 'auto' }).toBuffer(debeziumAvroValue(info, [...cols], { op: 'u', before: null, after, tsMs: 1, lsn: 10 }));
      const head = Buffer.alloc(5);
      head.writeInt32BE(id, 1);
      const e = await decodeRawChange(null, Buffer.concat([head, body]), decoder);
      bottles.push(mapping.place(e!.after!).bottles);
    }
    expect(bottles).toEqual([5, 7]);
  });
});
