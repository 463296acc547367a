import { Scope, StringSite, utf8Text } from './reader-support.js';

/**
 * A reader of the JSON converter's payloads compiled for one Connect schema, for the normalizer's hot
 * path. The converter writes a struct as compact JSON with the schema's fields in order, so the reader
 * expects exactly those bytes (`{"before":`, `,"after":`, …) and builds each struct with one object
 * literal of known shape; a field's recent strings are reused ({@link StringSite}), numbers are read
 * from the bytes.
 *
 * Whatever is not in that layout (white space, another field order, an object where the schema has no
 * struct, any JSON error) makes the reader give up ({@link NOT_READ}), and the caller parses with
 * JSON.parse: the reader only answers when its value is the one JSON.parse would give.
 */

/** Returned when the bytes are not in the layout the reader expects. */
export const NOT_READ: unique symbol = Symbol('not read');

/** Reads `buf[start, end)`; {@link NOT_READ} when it is not in the schema's layout. */
export type JsonReader = (buf: Buffer, start: number, end: number) => unknown;

/** The Connect schema of a value, as the JSON converter sends it next to the payload. */
export interface ConnectSchema {
  type?: string;
  field?: string;
  fields?: ConnectSchema[];
}

/** Thrown inside a reader when the layout is not the expected one (preallocated: no stack to capture). */
const BAIL = new Error('not in the expected layout');

class Cursor {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;
}

/** Recent strings of arrays (of every array read). */
const items = new StringSite();

/** Consumes byte `b`, or bails. */
function expect(c: Cursor, b: number): void {
  if (c.pos >= c.end || c.buf[c.pos] !== b) throw BAIL;
  c.pos++;
}

/**
 * Consumes the key `bytes` (`"name":`), after a comma unless it is the struct's first key, and returns
 * true; false, consuming nothing, when the next key is another one (the field is absent).
 */
function key(c: Cursor, first: boolean, bytes: Uint8Array): boolean {
  const buf = c.buf;
  let at = c.pos;
  if (!first) {
    if (buf[at] !== 44) return false;
    at++;
  }
  if (at + bytes.length > c.end) return false;
  for (let i = 0; i < bytes.length; i++) if (buf[at + i] !== bytes[i]) return false;
  c.pos = at + bytes.length;
  return true;
}

function literal(c: Cursor, text: string, v: unknown): unknown {
  for (let i = 0; i < text.length; i++) if (c.buf[c.pos + i] !== text.charCodeAt(i) || c.pos + i >= c.end) throw BAIL;
  c.pos += text.length;
  return v;
}

const isDigit = (b: number | undefined) => b !== undefined && b >= 48 && b <= 57;

/** A JSON number (strict grammar): up to 15 integer digits summed exactly, else Number() of its text, which JSON.parse agrees with. */
function number(c: Cursor): number {
  const buf = c.buf;
  const start = c.pos;
  let p = start;
  const neg = buf[p] === 45;
  if (neg) p++;
  const digits = p;
  if (buf[p] === 48) p++;
  else if (isDigit(buf[p])) while (isDigit(buf[p])) p++;
  else throw BAIL;
  let plain = true;
  if (buf[p] === 46) {
    plain = false;
    if (!isDigit(buf[++p])) throw BAIL;
    while (isDigit(buf[p])) p++;
  }
  if (buf[p] === 101 || buf[p] === 69) {
    plain = false;
    p++;
    if (buf[p] === 43 || buf[p] === 45) p++;
    if (!isDigit(buf[p])) throw BAIL;
    while (isDigit(buf[p])) p++;
  }
  if (p > c.end) throw BAIL;
  c.pos = p;
  if (!plain || p - digits > 15) return Number(buf.toString('latin1', start, p));
  let n = 0;
  for (let i = digits; i < p; i++) n = n * 10 + buf[i]! - 48;
  return neg ? -n : n;
}

function hex(b: number | undefined): number {
  if (b === undefined) throw BAIL;
  if (b >= 48 && b <= 57) return b - 48;
  if (b >= 97 && b <= 102) return b - 87;
  if (b >= 65 && b <= 70) return b - 55;
  throw BAIL;
}

/** What each one-letter escape stands for, as a UTF-16 code unit; 0 for letters that are no escape. */
const ESCAPES = new Uint16Array(128);
for (const [letter, unit] of [['"', 34], ['\\', 92], ['/', 47], ['b', 8], ['f', 12], ['n', 10], ['r', 13], ['t', 9]] as const) ESCAPES[letter.charCodeAt(0)] = unit;

const scratch = new Uint16Array(256);

/** The code unit of the escape at `p` (a backslash); `\uXXXX` takes 6 bytes, the others 2. */
function escapeAt(buf: Buffer, p: number): number {
  const e = buf[p + 1];
  if (e === 117) return (hex(buf[p + 2]) << 12) | (hex(buf[p + 3]) << 8) | (hex(buf[p + 4]) << 4) | hex(buf[p + 5]);
  const unit = e === undefined || e >= 128 ? 0 : ESCAPES[e]!;
  if (unit === 0) throw BAIL;
  return unit;
}

/** A string with escapes, from its first byte after the quote: ASCII text through code units, other text in UTF-8 runs. */
function escaped(c: Cursor, start: number): string {
  const buf = c.buf;
  let n = 0;
  let p = start;
  for (;;) {
    if (p >= c.end) throw BAIL;
    const b = buf[p]!;
    if (b === 34) break;
    if (b < 32) throw BAIL;
    if (b >= 128 || n === scratch.length) return escapedText(c, start);
    if (b !== 92) {
      scratch[n++] = b;
      p++;
    } else {
      scratch[n++] = escapeAt(buf, p);
      p += buf[p + 1] === 117 ? 6 : 2;
    }
  }
  c.pos = p + 1;
  return String.fromCharCode.apply(null, scratch.subarray(0, n) as unknown as number[]);
}

function escapedText(c: Cursor, start: number): string {
  const buf = c.buf;
  let out = '';
  let run = start;
  let p = start;
  for (;;) {
    if (p >= c.end) throw BAIL;
    const b = buf[p]!;
    if (b === 34) break;
    if (b < 32) throw BAIL;
    if (b !== 92) {
      p++;
      continue;
    }
    if (p > run) out += utf8Text(buf, run, p);
    out += String.fromCharCode(escapeAt(buf, p));
    p += buf[p + 1] === 117 ? 6 : 2;
    run = p;
  }
  if (p > run) out += utf8Text(buf, run, p);
  c.pos = p + 1;
  return out;
}

function string(c: Cursor, site: StringSite): string {
  const buf = c.buf;
  const start = c.pos + 1;
  let p = start;
  for (;;) {
    if (p >= c.end) throw BAIL;
    const b = buf[p]!;
    if (b === 34) break;
    if (b === 92) return escaped(c, start);
    if (b < 32) throw BAIL;
    p++;
  }
  c.pos = p + 1;
  return site.get(buf, start, p);
}

function array(c: Cursor): unknown[] {
  const out: unknown[] = [];
  c.pos++;
  if (c.buf[c.pos] === 93) {
    c.pos++;
    return out;
  }
  for (;;) {
    out.push(value(c, items));
    const b = c.buf[c.pos++];
    if (b === 93) return out;
    if (b !== 44) throw BAIL;
  }
}

/** Any JSON value but an object (objects are read as the schema's structs only). */
function value(c: Cursor, site: StringSite): unknown {
  if (c.pos >= c.end) throw BAIL;
  switch (c.buf[c.pos]) {
    case 34: return string(c, site);
    case 110: return literal(c, 'null', null);
    case 116: return literal(c, 'true', true);
    case 102: return literal(c, 'false', false);
    case 91: return array(c);
    default: return number(c);
  }
}

type Read = (c: Cursor) => unknown;

class Unsupported extends Error {}

/**
 * A function reading one struct of `schema` into an object with its fields in order. A field may be
 * absent (Cellar's own envelopes leave out unset source fields): the object then lacks it too.
 */
function struct(schema: ConnectSchema): Read {
  const fields = schema.fields ?? [];
  const s = new Scope();
  const lines: string[] = [`${s.ref(expect)}(c, 123);`, 'var n = 0;'];
  const props: string[] = [];
  const some: string[] = [];
  fields.forEach((f, i) => {
    if (typeof f.field !== 'string' || f.field === '__proto__') throw new Unsupported('field name');
    const name = JSON.stringify(f.field);
    const read = f.type === 'struct' ? `(c.buf[c.pos] === 110 ? ${s.ref(literal)}(c, 'null', null) : ${s.ref(struct(f))}(c))` : `${s.ref(value)}(c, ${s.ref(new StringSite())})`;
    lines.push(`var h${i} = ${s.ref(key)}(c, n === 0, ${s.ref(Buffer.from(`${name}:`))}), v${i};`, `if (h${i}) { v${i} = ${read}; n++; }`);
    props.push(`${name}: v${i}`);
    some.push(`if (h${i}) o[${name}] = v${i};`);
  });
  lines.push(`${s.ref(expect)}(c, 125);`, `if (n === ${fields.length}) return { ${props.join(', ')} };`, 'var o = {};', ...some, 'return o;');
  return s.build(`return function read(c) {\n${lines.join('\n')}\n};`);
}

/**
 * Compiles a reader of payloads of the struct `schema`, or returns undefined when the schema is not a
 * struct. After 16 payloads in a row that it could not read (a producer writing another layout), the
 * reader stops trying and answers {@link NOT_READ} at once.
 */
export function compileJsonReader(schema: ConnectSchema): JsonReader | undefined {
  if (schema.type !== 'struct' || !Array.isArray(schema.fields)) return undefined;
  let read: Read;
  try {
    read = struct(schema);
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
  const c = new Cursor();
  let misses = 0;
  return (buf, start, end) => {
    if (misses >= 16) return NOT_READ;
    c.buf = buf;
    c.pos = start;
    c.end = end;
    try {
      const v = read(c);
      if (c.pos !== end) throw BAIL;
      misses = 0;
      return v;
    } catch {
      misses++;
      return NOT_READ;
    }
  };
}
