import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileJsonReader, NOT_READ, type ConnectSchema } from '../../pipelines/normalize/json-reader.js';

const field = (name: string, type: string, extra: Partial<ConnectSchema> = {}): ConnectSchema => ({ field: name, type, ...extra });
const ROW: ConnectSchema = { type: 'struct', fields: [field('id', 'int32'), field('item_code', 'string'), field('qty', 'bytes'), field('ratio', 'float64'), field('ok', 'boolean'), field('tags', 'array')] };
const SCHEMA: ConnectSchema = {
  type: 'struct',
  fields: [
    { ...ROW, field: 'before' },
    { ...ROW, field: 'after' },
    { type: 'struct', field: 'source', fields: [field('version', 'string'), field('lsn', 'int64'), field('sequence', 'string'), field('xmin', 'int64')] },
    field('op', 'string'),
    field('ts_ms', 'int64'),
    { type: 'struct', field: 'empty', fields: [] },
  ],
};

const text = fc.oneof(fc.string({ maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 30 }), fc.constantFrom('[null,"24023128"]', 'a\\b"c/d\u0000\u001f\u2028', 'bdx-1', 'x'.repeat(40)));
const num = fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(-0, 0, 1e21, 123456789012345678, 1.5e-7));
const rowValue = fc.record({ id: num, item_code: fc.option(text, { nil: null }), qty: fc.option(text, { nil: null }), ratio: num, ok: fc.oneof(fc.boolean(), fc.constant(null)), tags: fc.array(fc.oneof(text, num, fc.boolean(), fc.constant(null)), { maxLength: 3 }) });
const payload = fc.record({
  before: fc.option(rowValue, { nil: null }),
  after: fc.option(rowValue, { nil: null }),
  source: fc.record({ version: text, lsn: num, sequence: fc.option(text, { nil: null }), xmin: fc.constant(null) }),
  op: fc.constantFrom('c', 'u', 'd', 'r'),
  ts_ms: fc.option(num, { nil: null }),
  empty: fc.constant({}),
});

function read(schema: ConnectSchema, json: string | Buffer): unknown {
  const buf = Buffer.isBuffer(json) ? json : Buffer.from(`{"payload":${json}}`);
  const start = Buffer.isBuffer(json) ? 0 : 11;
  return compileJsonReader(schema)!(buf, start, buf.length - (Buffer.isBuffer(json) ? 0 : 1));
}

describe('compiled JSON payload reader', () => {
  it('reads compact payloads in schema order exactly as JSON.parse does', () => {
    fc.assert(
      fc.property(payload, (p) => {
        const json = JSON.stringify(p);
        const got = read(SCHEMA, json);
        expect(got).not.toBe(NOT_READ);
        expect(got).toStrictEqual(JSON.parse(json));
      }),
      { numRuns: 400 },
    );
  });

  it('reads payloads with fields left out, without those keys', () => {
    fc.assert(
      fc.property(payload, fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }), (p, keep) => {
        const partial = Object.fromEntries(Object.entries(p).filter((_, i) => keep[i]));
        const json = JSON.stringify(partial);
        const got = read(SCHEMA, json) as Record<string, unknown>;
        expect(got).toStrictEqual(JSON.parse(json));
        expect(Object.keys(got)).toEqual(Object.keys(partial));
      }),
      { numRuns: 200 },
    );
  });

  it('keeps -0, large integers, exponents and escapes as JSON.parse does', () => {
    for (const json of ['{"id":-0,"ratio":1E+2}', '{"id":12345678901234567890,"ratio":-1.25e-3}', '{"id":0,"item_code":"\\u00e9\\ud83c\\udf77\\n\\"x\\"\\/"}', '{"item_code":"é\\tà"}']) {
      expect(read(ROW, json)).toStrictEqual(JSON.parse(json));
    }
    const invalid = Buffer.concat([Buffer.from('{"item_code":"a'), Buffer.from([0xe2, 0x82]), Buffer.from('","qty":"'), Buffer.from([0xff]), Buffer.from('\\n"}')]);
    expect(read(ROW, invalid)).toStrictEqual(JSON.parse(invalid.toString('utf8')));
  });

  it.each([
    ['white space', '{ "id":1}'],
    ['another field order', '{"item_code":"a","id":1}'],
    ['an unknown field', '{"id":1,"extra":2}'],
    ['an object where the schema has no struct', '{"id":{"a":1}}'],
    ['a trailing comma', '{"id":1,}'],
    ['a leading zero', '{"id":01}'],
    ['a bare minus', '{"id":-}'],
    ['a fraction without digits', '{"id":1.}'],
    ['a control character in a string', '{"item_code":"a\u0001"}'],
    ['an unknown escape', '{"item_code":"\\x41"}'],
    ['a short \\u escape', '{"item_code":"\\u12"}'],
    ['an unterminated string', '{"item_code":"abc'],
    ['trailing bytes', '{"id":1}x'],
    ['null instead of the struct', 'null'],
  ])('gives up on %s (the caller parses with JSON.parse)', (_what, json) => {
    expect(read(ROW, json)).toBe(NOT_READ);
  });

  it('stops trying after 16 payloads in a row it could not read', () => {
    const reader = compileJsonReader(ROW)!;
    const good = Buffer.from('{"id":1}');
    const bad = Buffer.from('{ "id":1}');
    for (let i = 0; i < 15; i++) expect(reader(bad, 0, bad.length)).toBe(NOT_READ);
    expect(reader(good, 0, good.length)).toEqual({ id: 1 });
    for (let i = 0; i < 16; i++) reader(bad, 0, bad.length);
    expect(reader(good, 0, good.length)).toBe(NOT_READ);
  });

  it('has no reader for a schema that is not a struct, or a field it cannot name', () => {
    expect(compileJsonReader({ type: 'string' })).toBeUndefined();
    expect(compileJsonReader({ type: 'struct', fields: [field('__proto__', 'string')] })).toBeUndefined();
  });
});
