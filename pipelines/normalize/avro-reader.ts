import type avro from 'avsc';
import { bytesToBigInt, type Decimal } from './decimal.js';
import { Scope, StringSite } from './reader-support.js';

/**
 * A reader of Avro binary compiled for one writer schema, for the normalizer's hot path. It yields the
 * values avsc's `Type.decode` yields with `wrapUnions: 'auto'` (records as plain objects), but:
 * - fields a {@link RecordPlan} leaves out are skipped without being decoded (Debezium's `source` block);
 * - DECIMAL bytes become exact decimals straight from the message, without a Buffer per value;
 * - a string field's recent values are reused ({@link StringSite}): a topic's values repeat (table
 *   names, warehouses, units), and a string read again is not allocated again.
 * Schemas it does not handle (wrapped unions, error types, recursive records, a field named
 * `__proto__`) are refused at compile time and the caller keeps using avsc.
 */

/** What becomes of one field of a record while it is read. */
export type FieldConversion =
  /** Bytes or fixed become `{unscaled, scale}`; other values stay as they are. */
  | { kind: 'decimal'; scale: number }
  /** Any other value but null goes through `convert` (time types, VariableScaleDecimal). */
  | { kind: 'convert'; convert: (v: unknown) => unknown };

/** How to read one record: the fields to keep, their conversions, and plans of records they hold. */
export interface RecordPlan {
  /** Fields to keep; the others are skipped. Absent: every field. */
  keep?: ReadonlySet<string>;
  /** Conversions of this record's own fields, by name. */
  convert?: ReadonlyMap<string, FieldConversion>;
  /** Plans of the records a field holds (directly or as a union branch), by field name. */
  nested?: ReadonlyMap<string, RecordPlan>;
}

/** Reads one value from `buf` at `pos` to its end; throws an Error naming the mismatch. */
export type CompiledReader = (buf: Buffer, pos: number) => unknown;

/** Where reading is: the message and the position. */
class Cursor {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
}

/** Recent map keys (of every map read). */
const mapKeys = new StringSite();

// The helpers below behave as avsc's Tap: reading past the end yields garbage that the final position
// check reports (`truncated payload`); a negative length makes the position invalid.

function varint(c: Cursor): number {
  const buf = c.buf;
  let pos = c.pos;
  let n = 0;
  let k = 0;
  let b: number;
  let h: number;
  do {
    b = buf[pos++]!;
    h = b & 0x80;
    n |= (b & 0x7f) << k;
    k += 7;
  } while (h && k < 28);
  if (h) {
    let f = n;
    let fk = 268435456;
    do {
      b = buf[pos++]!;
      f += (b & 0x7f) * fk;
      fk *= 128;
    } while (b & 0x80);
    c.pos = pos;
    return (f % 2 ? -(f + 1) : f) / 2;
  }
  c.pos = pos;
  return (n >> 1) ^ -(n & 1);
}

function long(c: Cursor): number {
  const n = varint(c);
  if (!(n >= -9007199254740990 && n <= 9007199254740990)) throw new Error('potential precision loss');
  return n;
}

function skipVarint(c: Cursor): void {
  const buf = c.buf;
  let b: number;
  do b = buf[c.pos++]!;
  while (b & 0x80);
}

function float(c: Cursor): number {
  const pos = c.pos;
  c.pos += 4;
  return c.pos > c.buf.length ? 0 : c.buf.readFloatLE(pos);
}

function double(c: Cursor): number {
  const pos = c.pos;
  c.pos += 8;
  return c.pos > c.buf.length ? 0 : c.buf.readDoubleLE(pos);
}

function boolean(c: Cursor): boolean {
  return !!c.buf[c.pos++];
}

/** Start of a length-prefixed value; -1 when it runs past the end, -2 for a negative length. */
function blob(c: Cursor): number {
  const len = varint(c);
  if (len < 0) {
    c.pos = c.buf.length + 1;
    return -2;
  }
  const start = c.pos;
  c.pos += len;
  return c.pos > c.buf.length ? -1 : start;
}

function string(c: Cursor, site: StringSite): string | undefined {
  const start = blob(c);
  if (start < 0) return start === -2 ? '' : undefined;
  return site.get(c.buf, start, c.pos);
}

function copy(c: Cursor, start: number): Buffer {
  const out = Buffer.allocUnsafe(c.pos - start);
  c.buf.copy(out, 0, start, c.pos);
  return out;
}

function bytes(c: Cursor): Buffer | undefined {
  const start = blob(c);
  return start < 0 ? undefined : copy(c, start);
}

function fixed(c: Cursor, size: number): Buffer | undefined {
  const start = c.pos;
  c.pos += size;
  return c.pos > c.buf.length ? undefined : copy(c, start);
}

function decimal(c: Cursor, scale: number): Decimal | undefined {
  const start = blob(c);
  return start < 0 ? undefined : { unscaled: bytesToBigInt(c.buf, start, c.pos), scale };
}

function fixedDecimal(c: Cursor, size: number, scale: number): Decimal | undefined {
  const start = c.pos;
  c.pos += size;
  return c.pos > c.buf.length ? undefined : { unscaled: bytesToBigInt(c.buf, start, c.pos), scale };
}

function enumSymbol(c: Cursor, symbols: readonly string[], name: string): string {
  const i = varint(c);
  const s = symbols[i];
  if (s === undefined) throw new Error(`invalid ${name} enum index: ${i}`);
  return s;
}

function badUnion(i: number): never {
  throw new Error(`invalid union index: ${i}`);
}

/** Stops a block of items (whose count comes from the message) once reading has run past the end. */
function past(c: Cursor): void {
  if (c.pos > c.buf.length) throw new Error('truncated payload');
}

function array(c: Cursor, item: (c: Cursor) => unknown): unknown[] {
  let out: unknown[] | undefined;
  let i = 0;
  let n: number;
  while ((n = varint(c))) {
    if (n < 0) {
      n = -n;
      skipVarint(c);
    }
    out ??= new Array<unknown>(n);
    while (n--) {
      out[i++] = item(c);
      past(c);
    }
  }
  return out ?? [];
}

function map(c: Cursor, value: (c: Cursor) => unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let n: number;
  while ((n = varint(c))) {
    if (n < 0) {
      n = -n;
      skipVarint(c);
    }
    while (n--) {
      const k = string(c, mapKeys) as string;
      out[k] = value(c);
      past(c);
    }
  }
  return out;
}

/** Skips an array or map whose items `skip` skips (blocks with a byte size are jumped over). */
function skipBlocks(c: Cursor, skip: (c: Cursor) => void): void {
  let n: number;
  while ((n = varint(c))) {
    if (n < 0) c.pos += varint(c);
    else
      while (n--) {
        skip(c);
        past(c);
      }
  }
}

type Reader = (c: Cursor) => unknown;

/** Thrown while compiling: the schema uses something this reader does not handle. */
class Unsupported extends Error {}

type AnyType = avro.Type & {
  typeName: string;
  fields?: Array<{ name: string; type: AnyType }>;
  types?: AnyType[];
  itemsType?: AnyType;
  valuesType?: AnyType;
  symbols?: string[];
  size?: number;
  name?: string;
};

class Compiler {
  private readonly open = new Set<AnyType>();

  /** A JavaScript expression reading `type` from cursor `c` (union indices go through `t`). */
  private expr(s: Scope, type: AnyType, plan: RecordPlan | undefined, conv: FieldConversion | undefined): string {
    const wrap = (e: string) => (conv?.kind === 'convert' ? `${s.ref(conv.convert)}(${e})` : e);
    const scale = conv?.kind === 'decimal' ? conv.scale : undefined;
    const dec = scale === undefined ? undefined : Number.isSafeInteger(scale) && !Object.is(scale, -0) ? String(scale) : s.ref(scale);
    switch (type.typeName) {
      case 'null': return 'null';
      case 'boolean': return wrap(`${s.ref(boolean)}(c)`);
      case 'int': return wrap(`${s.ref(varint)}(c)`);
      case 'long': return wrap(`${s.ref(long)}(c)`);
      case 'float': return wrap(`${s.ref(float)}(c)`);
      case 'double': return wrap(`${s.ref(double)}(c)`);
      case 'string': return wrap(`${s.ref(string)}(c, ${s.ref(new StringSite())})`);
      case 'bytes': return dec === undefined ? wrap(`${s.ref(bytes)}(c)`) : `${s.ref(decimal)}(c, ${dec})`;
      case 'fixed': return dec === undefined ? wrap(`${s.ref(fixed)}(c, ${type.size! | 0})`) : `${s.ref(fixedDecimal)}(c, ${type.size! | 0}, ${dec})`;
      case 'enum': return wrap(`${s.ref(enumSymbol)}(c, ${s.ref(type.symbols)}, ${s.ref(String(type.name))})`);
      case 'record': return wrap(`${s.ref(this.record(type, plan))}(c)`);
      case 'array': return wrap(`${s.ref(array)}(c, ${s.ref(this.reader(type.itemsType!))})`);
      case 'map': return wrap(`${s.ref(map)}(c, ${s.ref(this.reader(type.valuesType!))})`);
      case 'union:unwrapped': {
        const branches = type.types!.map((b, i) => `t === ${i} ? ${this.expr(s, b, plan, conv)} : `).join('');
        return `((t = ${s.ref(varint)}(c)), ${branches}${s.ref(badUnion)}(t))`;
      }
      default:
        throw new Unsupported(type.typeName);
    }
  }

  /** Statements skipping `type`. */
  private skip(s: Scope, type: AnyType): string {
    switch (type.typeName) {
      case 'null': return '';
      case 'boolean': return 'c.pos++;';
      case 'int':
      case 'long':
      case 'enum': return `${s.ref(skipVarint)}(c);`;
      case 'float': return 'c.pos += 4;';
      case 'double': return 'c.pos += 8;';
      case 'string':
      case 'bytes': return `${s.ref(blob)}(c);`;
      case 'fixed': return `c.pos += ${type.size! | 0};`;
      case 'record': {
        if (this.open.has(type)) throw new Unsupported('recursive record');
        this.open.add(type);
        const lines = type.fields!.map((f) => this.skip(s, f.type)).join('\n');
        this.open.delete(type);
        return lines;
      }
      case 'array':
      case 'map': {
        const inner = new Scope();
        const item = type.typeName === 'map' ? `${inner.ref(blob)}(c);\n${this.skip(inner, type.valuesType!)}` : this.skip(inner, type.itemsType!);
        return `${s.ref(skipBlocks)}(c, ${s.ref(inner.build(`return function skip(c) { var t;\n${item}\n};`))});`;
      }
      case 'union:unwrapped':
        return `t = ${s.ref(varint)}(c);\n${type.types!.map((b, i) => `if (t === ${i}) { ${this.skip(s, b)} }`).join(' else ')} else ${s.ref(badUnion)}(t);`;
      default:
        throw new Unsupported(type.typeName);
    }
  }

  private reader(type: AnyType): Reader {
    const s = new Scope();
    const e = this.expr(s, type, undefined, undefined);
    return s.build(`return function read(c) { var t;\nreturn ${e};\n};`);
  }

  /** A function reading one record into a plain object with the fields `plan` keeps, in writer order. */
  record(type: AnyType, plan: RecordPlan | undefined): Reader {
    if (this.open.has(type)) throw new Unsupported('recursive record');
    this.open.add(type);
    const s = new Scope();
    const lines: string[] = ['var t;'];
    const out: string[] = [];
    type.fields!.forEach((f, i) => {
      if (f.name === '__proto__') throw new Unsupported('field named __proto__');
      if (plan?.keep && !plan.keep.has(f.name)) return void lines.push(this.skip(s, f.type));
      lines.push(`var v${i} = ${this.expr(s, f.type, plan?.nested?.get(f.name), plan?.convert?.get(f.name))};`);
      out.push(`${JSON.stringify(f.name)}: v${i}`);
    });
    this.open.delete(type);
    return s.build(`return function read(c) {\n${lines.join('\n')}\nreturn { ${out.join(', ')} };\n};`);
  }
}

/**
 * Compiles a reader of records of `type` (an avsc type built with `wrapUnions: 'auto'`) following
 * `plan`, or returns undefined when the schema is not a record or uses what this reader does not handle.
 */
export function compileRecordReader(type: avro.Type, plan: RecordPlan | undefined): CompiledReader | undefined {
  if ((type as AnyType).typeName !== 'record') return undefined;
  let read: Reader;
  try {
    read = new Compiler().record(type as AnyType, plan);
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
  const c = new Cursor();
  return (buf, pos) => {
    c.buf = buf;
    c.pos = pos;
    const value = read(c);
    if (c.pos !== buf.length) throw new Error(c.pos > buf.length ? 'truncated payload' : `${buf.length - c.pos} trailing bytes`);
    return value;
  };
}
