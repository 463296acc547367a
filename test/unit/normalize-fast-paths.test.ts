import avro from 'avsc';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { debeziumAvroSchema, debeziumAvroValue, debeziumJsonMessage, type ChangeSpec, type ColumnDef, type SourceInfo } from '../../connectors/debezium/envelope.js';
import { decodeDebeziumJson, sourceVersionOf, type ChangeEvent } from '../../pipelines/normalize/debezium.js';
import { DebeziumAvroDecoder } from '../../pipelines/normalize/debezium-avro.js';
import { bigIntOf, bytesToBigInt, scaleToInteger, scaleToSafeInteger, type Decimal } from '../../pipelines/normalize/decimal.js';
import { MAX_ROW_BOTTLES, toBottles } from '../../pipelines/normalize/mapping.js';
import { contributorIdOf } from '../../pipelines/normalize/normalize.js';
import { SkuTable } from '../../pipelines/normalize/sku-table.js';
import { UNITS, type Unit } from '../../connectors/registry/schema.js';
import { rejectionOf } from '../support/fixtures.js';
import { rid, services } from '../support/services.js';

const PG: SourceInfo = { connector: 'postgresql', name: 'north', db: 'inventory', schema: 'public', table: 'stock' };
const cols = (scale: number): ColumnDef[] => [
  { name: 'id', type: 'int32', optional: false },
  { name: 'item_code', type: 'string' },
  { name: 'depot', type: 'string' },
  { name: 'qty', type: 'decimal', scale },
  { name: 'updated_at', type: 'int64' },
];
const COLS = cols(2);
let lsn = 1000;
const spec = (op: ChangeSpec['op'], before: Record<string, unknown> | null, after: Record<string, unknown> | null): ChangeSpec => ({ op, before, after, tsMs: 1_732_000_000_000 + lsn, lsn: (lsn += 16), txId: 7 });
const SPECS: ChangeSpec[] = [
  spec('c', null, { id: 1, item_code: 'NC-1', depot: 'bdx-1', qty: '12.50', updated_at: 1 }),
  spec('u', { id: 1, item_code: 'NC-1', depot: 'bdx-1', qty: '12.50', updated_at: 1 }, { id: 1, item_code: 'NC-1', depot: 'nyc-1', qty: '-3.25', updated_at: 2 }),
  spec('u', null, { id: 2, item_code: null, depot: 'lyon-2', qty: null, updated_at: null }),
  spec('r', null, { id: 3, item_code: 'Château "é"\n', depot: 'bdx-1', qty: '12345678901234567.89', updated_at: 3 }),
  spec('d', { id: 1, item_code: 'NC-1', depot: 'nyc-1', qty: '0.00', updated_at: 2 }, null),
  spec('t', null, null),
];

/** The message decoded the slow way: reformatted with white space, so JSON.parse reads it whole. */
function decodeParsed(key: string | null, value: string): ChangeEvent | null {
  const spaced = (t: string) => Buffer.from(JSON.stringify(JSON.parse(t), null, 1));
  return decodeDebeziumJson(key === null ? null : spaced(key), spaced(value));
}

describe('JSON converter messages with a known schema', () => {
  it('decode as when parsed whole: creates, updates with a before-image, nulls, decimals, deletes, truncates', () => {
    for (const s of SPECS) {
      const m = debeziumJsonMessage(PG, COLS, ['id'], s);
      const fast = decodeDebeziumJson(m.key === null ? null : Buffer.from(m.key), Buffer.from(m.value));
      expect(fast).toStrictEqual(decodeParsed(m.key, m.value));
      expect(decodeDebeziumJson(Buffer.from(m.key ?? '{"id":1}'), null)).toBeNull();
    }
  });

  it('decode each message with its own schema when schemas of the same length alternate', () => {
    const two = cols(3);
    const a = debeziumJsonMessage(PG, COLS, ['id'], SPECS[0]!);
    const b = debeziumJsonMessage(PG, two, ['id'], { ...SPECS[0]!, after: { ...SPECS[0]!.after, qty: '12.500' } });
    expect(a.value.length).toBe(b.value.length);
    for (let i = 0; i < 4; i++) {
      expect(decodeDebeziumJson(Buffer.from(a.key!), Buffer.from(a.value))!.after!.qty).toEqual({ unscaled: 1250n, scale: 2 });
      expect(decodeDebeziumJson(Buffer.from(b.key!), Buffer.from(b.value))!.after!.qty).toEqual({ unscaled: 12500n, scale: 3 });
    }
  });

  it('decode with the new schema after a column is added, and refuse a malformed payload under a known schema', () => {
    const wider: ColumnDef[] = [...COLS, { name: 'shelf', type: 'string' }];
    const before = debeziumJsonMessage(PG, COLS, ['id'], SPECS[0]!);
    const after = debeziumJsonMessage(PG, wider, ['id'], { ...SPECS[0]!, after: { ...SPECS[0]!.after, shelf: 'A3' } });
    expect(decodeDebeziumJson(null, Buffer.from(before.value))!.after).not.toHaveProperty('shelf');
    expect(decodeDebeziumJson(null, Buffer.from(after.value))!.after).toMatchObject({ shelf: 'A3', qty: { unscaled: 1250n, scale: 2 } });
    const broken = before.value.replace('"op":"c"', '"op":"c",');
    expect(rejectionOf(() => decodeDebeziumJson(null, Buffer.from(broken))).reason).toBe('malformed_json');
  });
});

describe('Avro converter messages through the compiled reader', () => {
  it('decode as avsc does, with decimals converted and the unused source fields left out', async () => {
    const registry = new SchemaRegistry({ host: services().schemaRegistryUrl });
    const info = { ...PG, name: rid('n') };
    const schema = debeziumAvroSchema(info, COLS);
    const keySchema = { type: 'record', name: 'Key', namespace: `${info.name}.public.stock`, fields: [{ name: 'id', type: 'int' }] };
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject: `${info.name}.public.stock-value` });
    const { id: keyId } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(keySchema) }, { subject: `${info.name}.public.stock-key` });
    const type = avro.Type.forSchema(schema as avro.Schema, { wrapUnions: 'auto' });
    const wire = (sid: number, body: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, sid >> 8, sid & 255]), body]);
    const decoder = new DebeziumAvroDecoder(services().schemaRegistryUrl);
    const decimal = (r: Record<string, unknown> | null) => r && { ...r, qty: Buffer.isBuffer(r.qty) ? { unscaled: bytesToBigInt(r.qty), scale: 2 } : r.qty };
    for (const s of SPECS.filter((x) => x.op !== 't')) {
      const value = debeziumAvroValue(info, COLS, s);
      const row = (s.after ?? s.before)!;
      const e = (await decoder.decode(wire(keyId, avro.Type.forSchema(keySchema as avro.Schema).toBuffer({ id: row.id })), wire(id, type.toBuffer(value))))!;
      const ref = type.fromBuffer(type.toBuffer(value)) as Record<string, Record<string, unknown> | null>;
      expect(e.before).toEqual(decimal(ref.before!));
      expect(e.after).toEqual(decimal(ref.after!));
      expect(e.key).toEqual({ id: row.id });
      expect(Object.keys(e.source)).toEqual(['version', 'connector', 'ts_ms', 'snapshot', 'db', 'schema', 'table', 'lsn']);
      expect(e.source).toMatchObject({ connector: 'postgresql', db: 'inventory', table: 'stock', lsn: s.lsn });
      expect(e.sourceVersion).toBe(String(s.lsn).padStart(20, '0'));
    }
  });
});

describe('contributor ids', () => {
  const change = (table: string, key: Record<string, unknown>, after: Record<string, unknown> | null = null) => ({ op: 'u', before: null, after, key, source: {}, table, sourceVersion: '1', sourceTsMs: 0, position: '' }) as ChangeEvent;
  const built = (supplierId: string, table: string, parts: Array<[string, string]>) => `${supplierId}/${table}/${parts.map(([k, v]) => `${k}=${v}`).join(',')}`;

  it('are the same text whether or not remembered, across tables, columns and more keys than are remembered', () => {
    for (let i = 0; i < 70_000; i++) {
      const table = `public.t${i % 20}`;
      expect(contributorIdOf('s', change(table, { id: i % 30_000 }))).toBe(built('s', table, [['id', String(i % 30_000)]]));
    }
    expect(contributorIdOf('s', change('public.t', { id: '7' }))).toBe('s/public.t/id=7');
    expect(contributorIdOf('s', change('public.t', { id: 7 }))).toBe('s/public.t/id=7');
    expect(contributorIdOf('s', change('public.t', { code: 7 }))).toBe('s/public.t/code=7');
    expect(contributorIdOf('s', change('public.t', { id: -0 }))).toBe('s/public.t/id=0');
    expect(contributorIdOf('s', change('public.t', { id: 1, line: 2 }))).toBe('s/public.t/id=1,line=2');
    expect(contributorIdOf('s', change('public.t', { id: { unscaled: 125n, scale: 2 } }))).toBe('s/public.t/id=1.25');
    expect(contributorIdOf('s', change('public.t', {}, { sku: 'a', wh: 3 }), ['sku'])).toBe('s/public.t/sku=a');
    expect(contributorIdOf('s', change('public.t', { wh: 3 }, { sku: 'a' }), ['sku', 'wh'])).toBe('s/public.t/sku=a,wh=3');
  });
});

describe('source versions', () => {
  it('pad a Postgres LSN to 20 digits as String and padStart do, for every safe integer', () => {
    const lsns = fc.oneof(fc.maxSafeNat(), fc.nat(), fc.integer({ min: 1, max: 90_071_992 }).map((k) => k * 1e8 - 1), fc.constantFrom(0, 1e8, 99_999_999, Number.MAX_SAFE_INTEGER));
    fc.assert(
      fc.property(lsns, (lsn) => {
        const want = String(lsn).padStart(20, '0');
        expect(sourceVersionOf('postgresql', { lsn }).version).toBe(want);
        expect(sourceVersionOf('postgresql', { lsn: 5, cellar_commit_lsn: lsn }).version).toBe(`${want}:00000000000000000005`);
      }),
      { numRuns: 3000 },
    );
    expect(sourceVersionOf('postgresql', { lsn: '0000123' }).version).toBe('00000000000000000123');
    expect(() => sourceVersionOf('postgresql', { lsn: 2 ** 60 })).toThrow('is not a non-negative integer');
    expect(() => sourceVersionOf('postgresql', { lsn: -1 })).toThrow('is not a non-negative integer');
  });
});

describe('exact arithmetic without BigInt', () => {
  const decimal = fc.record({ unscaled: fc.oneof(fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }), fc.bigInt({ min: -100_000n, max: 100_000n })), scale: fc.integer({ min: 0, max: 18 }) });

  it('scaleToSafeInteger agrees with scaleToInteger wherever it answers', () => {
    fc.assert(
      fc.property(decimal, fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 1, max: 30_000 }), (d, num, den) => {
        const fast = scaleToSafeInteger(d, num, den);
        if (fast === undefined) return;
        const exact = scaleToInteger(d, BigInt(num), BigInt(den));
        expect(fast).toBe(exact === null ? null : Number(exact));
      }),
      { numRuns: 2000 },
    );
  });

  it('toBottles gives what the BigInt arithmetic gives, or the same refusal', () => {
    const reference = (q: Decimal, unit: Unit, ml: number, caseSize?: number): number | string => {
      const [num, den] = unit === 'bottles' ? [1n, 1n] : unit === 'case6' ? [6n, 1n] : unit === 'case12' ? [12n, 1n] : unit === 'case' ? [BigInt(caseSize ?? 0), 1n] : unit === 'liters' ? [1000n, BigInt(ml)] : [1n, BigInt(ml)];
      if (num === 0n) return 'unknown_unit';
      const n = q.unscaled * num;
      const d = den * 10n ** BigInt(q.scale);
      if (n % d !== 0n) return 'non_integral_quantity';
      const b = n / d;
      return b > MAX_ROW_BOTTLES || b < -MAX_ROW_BOTTLES ? 'quantity_out_of_range' : Number(b);
    };
    fc.assert(
      fc.property(decimal, fc.constantFrom(...UNITS), fc.constantFrom(375, 750, 1500), fc.option(fc.integer({ min: 0, max: 24 }), { nil: undefined }), (d, unit, ml, caseSize) => {
        let got: number | string;
        try {
          got = toBottles(d, unit, ml, caseSize);
        } catch (err) {
          got = (err as { reason: string }).reason;
        }
        expect(got).toBe(reference(d, unit, ml, caseSize));
      }),
      { numRuns: 3000 },
    );
  });

  it('reads decimal bytes inside a message as it reads them copied out, and shares small BigInts', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), fc.nat(4), fc.nat(4), (raw, pre, post) => {
        const buf = Buffer.concat([Buffer.alloc(pre, 0xff), raw, Buffer.alloc(post, 0x7f)]);
        expect(bytesToBigInt(buf, pre, pre + raw.length)).toBe(bytesToBigInt(Uint8Array.from(raw)));
      }),
    );
    expect(bigIntOf(12)).toBe(12n);
    expect(bigIntOf(-5)).toBe(-5n);
    expect(bigIntOf(2 ** 40)).toBe(2n ** 40n);
  });
});

describe('SKU table keyed by supplier SKU alone', () => {
  it('lets a later duplicate win and counts every entry', () => {
    const t = new SkuTable([{ supplierSku: 'A', sku: 'a1' }, { supplierSku: 'A', sku: 'a2' }, { supplierSku: 'A', bottleSizeMl: 1500, sku: 'a-mag' }]);
    expect(t.resolve('A', null, 750)).toBe('a2');
    expect(t.resolve('A', null, 1500)).toBe('a-mag');
    expect(t.resolve('B', null, 750)).toBeUndefined();
    expect(t.size).toBe(2);
  });
});
