import avro from 'avsc';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileRecordReader, type FieldConversion, type RecordPlan } from '../../pipelines/normalize/avro-reader.js';
import { bytesToBigInt } from '../../pipelines/normalize/decimal.js';
import { StringSite, utf8Text } from '../../pipelines/normalize/reader-support.js';

/** A record using every type the compiled reader handles, unions of each shape and a nested record. */
const SCHEMA = {
  type: 'record',
  name: 'Row',
  namespace: 'test',
  fields: [
    { name: 'id', type: 'int' },
    { name: 'big', type: 'long' },
    { name: 'ok', type: 'boolean' },
    { name: 'ratio', type: 'float' },
    { name: 'price', type: 'double' },
    { name: 'name', type: ['null', 'string'] },
    { name: 'code', type: ['string', 'null'] },
    { name: 'either', type: ['null', 'string', 'long'] },
    { name: 'raw', type: 'bytes' },
    { name: 'hash', type: { type: 'fixed', name: 'Hash', size: 4 } },
    { name: 'color', type: { type: 'enum', name: 'Color', symbols: ['RED', 'GREEN', 'BLUE'] } },
    { name: 'tags', type: { type: 'array', items: 'string' } },
    { name: 'counts', type: { type: 'map', values: ['null', 'long'] } },
    { name: 'inner', type: ['null', { type: 'record', name: 'Inner', fields: [{ name: 'x', type: 'int' }, { name: 'y', type: ['null', 'Hash'] }] }] },
    { name: 'inners', type: { type: 'array', items: 'Inner' } },
  ],
};
const type = avro.Type.forSchema(SCHEMA as avro.Schema, { wrapUnions: 'auto' });

const text = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('bdx-1', 'nyc-1', 'é', 'ünïcödé-wine', 'x'.repeat(33), ''));
const bytes = (n?: number) => fc.uint8Array(n === undefined ? { maxLength: 12 } : { minLength: n, maxLength: n }).map((a) => Buffer.from(a));
const inner = fc.record({ x: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), y: fc.option(bytes(4), { nil: null }) });
const row = fc.record({
  id: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  // avsc writes longs up to ±(2^53 − 2) only
  big: fc.oneof(fc.integer(), fc.maxSafeInteger().filter((n) => Math.abs(n) <= 9007199254740990), fc.constantFrom(-9007199254740990, 9007199254740990, 1_732_000_000_000)),
  ok: fc.boolean(),
  ratio: fc.float({ noNaN: true }),
  price: fc.double({ noNaN: true }),
  name: fc.option(text, { nil: null }),
  code: fc.option(text, { nil: null }),
  either: fc.oneof(fc.constant(null), text, fc.integer()),
  raw: bytes(),
  hash: bytes(4),
  color: fc.constantFrom('RED', 'GREEN', 'BLUE'),
  tags: fc.array(text, { maxLength: 4 }),
  counts: fc.dictionary(fc.string({ maxLength: 6 }).filter((k) => k !== '__proto__'), fc.option(fc.integer(), { nil: null }), { maxKeys: 4 }),
  inner: fc.option(inner, { nil: null }),
  inners: fc.array(inner, { maxLength: 3 }),
});

/** The value read at offset 5 of a Confluent-framed message, as the decoder reads it. */
function framed(body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0, 0, 0, 0, 1]), body]);
}

describe('compiled Avro reader', () => {
  it('reads every type as avsc does (random records)', () => {
    const read = compileRecordReader(type, undefined)!;
    fc.assert(
      fc.property(row, (r) => {
        const buf = framed(type.toBuffer(r));
        expect(read(buf, 5)).toEqual(type.decode(buf, 5).value);
      }),
      { numRuns: 300 },
    );
  });

  it('skips the fields a plan leaves out, nested ones too, keeping writer order', () => {
    const plan: RecordPlan = { keep: new Set(['counts', 'id', 'inner', 'code']), nested: new Map([['inner', { keep: new Set(['y']) }]]) };
    const read = compileRecordReader(type, plan)!;
    fc.assert(
      fc.property(row, (r) => {
        const got = read(framed(type.toBuffer(r)), 5) as Record<string, unknown>;
        expect(Object.keys(got)).toEqual(['id', 'code', 'counts', 'inner']);
        expect(got).toEqual({ id: r.id, code: r.code, counts: r.counts, inner: r.inner && { y: r.inner.y } });
      }),
      { numRuns: 100 },
    );
  });

  it('turns decimal bytes and fixed into exact decimals, and passes other values through a conversion', () => {
    const schema = {
      type: 'record',
      name: 'D',
      fields: [
        { name: 'qty', type: ['null', 'bytes'] },
        { name: 'fx', type: { type: 'fixed', name: 'F9', size: 9 } },
        { name: 'at', type: ['null', 'long'] },
        { name: 'label', type: 'string' },
      ],
    };
    const t = avro.Type.forSchema(schema as avro.Schema, { wrapUnions: 'auto' });
    const plan: RecordPlan = {
      convert: new Map<string, FieldConversion>([
        ['qty', { kind: 'decimal', scale: 2 }],
        ['fx', { kind: 'decimal', scale: 0 }],
        ['at', { kind: 'convert', convert: (v) => Math.floor((v as number) / 1000) }],
        ['label', { kind: 'decimal', scale: 3 }],
      ]),
    };
    const read = compileRecordReader(t, plan)!;
    const cases = [Buffer.from([0xff, 0x06]), Buffer.from([]), Buffer.from([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 1])];
    for (const qty of cases) {
      const fx = Buffer.from([0xfe, 1, 2, 3, 4, 5, 6, 7, 8]);
      const got = read(framed(t.toBuffer({ qty, fx, at: 1_732_190_000_123_456, label: 'x' })), 5);
      expect(got).toEqual({ qty: { unscaled: bytesToBigInt(qty), scale: 2 }, fx: { unscaled: bytesToBigInt(fx), scale: 0 }, at: 1_732_190_000_123, label: 'x' });
    }
    expect(read(framed(t.toBuffer({ qty: null, fx: Buffer.alloc(9), at: null, label: '' })), 5)).toEqual({ qty: null, fx: { unscaled: 0n, scale: 0 }, at: null, label: '' });
  });

  it('names what does not match: truncated payloads, trailing bytes, bad union and enum indices, unsafe longs', () => {
    const read = compileRecordReader(type, undefined)!;
    const [r] = fc.sample(row, { numRuns: 1, seed: 7 });
    const buf = framed(type.toBuffer(r));
    expect(() => read(buf.subarray(0, buf.length - 1), 5)).toThrow(/truncated payload|invalid/);
    expect(() => read(Buffer.concat([buf, Buffer.from([1, 2])]), 5)).toThrow('2 trailing bytes');
    const u = avro.Type.forSchema({ type: 'record', name: 'U', fields: [{ name: 'a', type: ['null', 'long'] }] } as avro.Schema, { wrapUnions: 'auto' });
    const readU = compileRecordReader(u, undefined)!;
    expect(() => readU(framed(Buffer.from([4, 2])), 5)).toThrow('invalid union index: 2');
    // zigzag varint of 2^60: beyond what a JavaScript number holds exactly
    expect(() => readU(framed(Buffer.from([2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20])), 5)).toThrow('potential precision loss');
    const e = avro.Type.forSchema({ type: 'record', name: 'E', fields: [{ name: 'c', type: { type: 'enum', name: 'C', symbols: ['A'] } }] } as avro.Schema);
    expect(() => compileRecordReader(e, undefined)!(framed(Buffer.from([2])), 5)).toThrow('invalid C enum index: 1');
    const a = avro.Type.forSchema({ type: 'record', name: 'A', fields: [{ name: 'xs', type: { type: 'array', items: 'long' } }] } as avro.Schema);
    // a block of 2^31 items in a 7-byte message: refused at once, not read item by item
    expect(() => compileRecordReader(a, undefined)!(framed(Buffer.from([0xfe, 0xff, 0xff, 0xff, 0x0f, 2, 4])), 5)).toThrow('truncated payload');
    expect(() => compileRecordReader(a, { keep: new Set() })!(framed(Buffer.from([0xfe, 0xff, 0xff, 0xff, 0x0f, 2, 4])), 5)).toThrow('truncated payload');
    const s = avro.Type.forSchema({ type: 'record', name: 'S', fields: [{ name: 's', type: 'string' }] } as avro.Schema);
    expect(() => compileRecordReader(s, undefined)!(framed(Buffer.from([1])), 5)).toThrow('truncated payload');
  });

  it('leaves to avsc what it does not handle: wrapped unions, __proto__ fields, recursive records, non-records', () => {
    const compile = (schema: unknown) => compileRecordReader(avro.Type.forSchema(schema as avro.Schema, { wrapUnions: 'auto' }), undefined);
    expect(compile({ type: 'record', name: 'W', fields: [{ name: 'a', type: ['int', 'long'] }] })).toBeUndefined();
    expect(compile({ type: 'record', name: 'P', fields: [{ name: '__proto__', type: 'int' }] })).toBeUndefined();
    expect(compile({ type: 'record', name: 'L', fields: [{ name: 'next', type: ['null', 'L'] }] })).toBeUndefined();
    const skipped = avro.Type.forSchema({ type: 'record', name: 'Outer', fields: [{ name: 'list', type: { type: 'record', name: 'N', fields: [{ name: 'next', type: ['null', 'N'] }] } }] } as avro.Schema);
    expect(compileRecordReader(skipped, { keep: new Set() })).toBeUndefined();
    expect(compile('string')).toBeUndefined();
    expect(compile({ type: 'record', name: 'Empty', fields: [] })!(framed(Buffer.alloc(0)), 5)).toEqual({});
  });
});

describe('strings of a read site', () => {
  it('are the text of the bytes, whether the site remembers them or decodes them afresh', () => {
    const site = new StringSite();
    const few = ['bdx-1', 'nyc-1', 'lyon-2', 'é', 'x'.repeat(32), 'x'.repeat(33)];
    const many = Array.from({ length: 5000 }, (_, i) => `NC-${i}${i % 7 === 0 ? 'é' : ''}`);
    // Few values (remembered), then many (the site stops looking), then few again (it looks again).
    for (const words of [few, many, few, many.slice(0, 100)]) {
      for (let round = 0; round < 200; round++) {
        const w = words[round % words.length]!;
        const b = Buffer.from(`"${w}"`);
        expect(site.get(b, 1, b.length - 1)).toBe(w);
      }
    }
  });

  it('decode short ASCII, long text and invalid UTF-8 exactly as Buffer does', () => {
    const site = new StringSite();
    for (const b of [Buffer.from('x'.repeat(100)), Buffer.from('abcdefgh'), Buffer.from('a'), Buffer.from([0x41, 0xe2, 0x82]), Buffer.from([0xff, 0x41]), Buffer.from([0xc3, 0xa9, 0xc3]), Buffer.from([0x7f, 0])]) {
      expect(utf8Text(b, 0, b.length)).toBe(b.toString('utf8'));
      for (let i = 0; i < 2; i++) expect(site.get(b, 0, b.length)).toBe(b.toString('utf8'));
    }
    expect(site.get(Buffer.from('ab'), 1, 1)).toBe('');
  });
});
