/**
 * What the normalize stage's compiled readers share (Avro: avro-reader.ts, JSON: json-reader.ts): the
 * scope of the functions they generate, and the decoding of strings, with the recent strings of each
 * field they read.
 */

/** Free variables of one generated function (helpers, nested readers, constants), passed in by name. */
export class Scope {
  readonly names: string[] = [];
  readonly values: unknown[] = [];

  /** The name under which `v` is visible to the function's code. */
  ref(v: unknown): string {
    const i = this.values.indexOf(v);
    if (i >= 0) return this.names[i]!;
    this.values.push(v);
    this.names.push(`d${this.names.length}`);
    return this.names.at(-1)!;
  }

  /**
   * Compiles `body` (which returns the function) with the free variables bound. Generated code names
   * fields only through JSON string literals, never through text taken from a message or schema as is.
   */
  build<F>(body: string): F {
    return new Function(...this.names, `'use strict';\n${body}`)(...this.values) as F;
  }
}

const SLOTS = 16;
const MAX_CACHED = 32;
const fromCharCode = String.fromCharCode;

/** The UTF-8 text of `buf[start, end)`; up to 8 ASCII bytes without a call into Buffer (which costs more). */
export function utf8Text(buf: Buffer, start: number, end: number): string {
  const n = end - start;
  if (n <= 8) {
    let any = 0;
    for (let i = start; i < end; i++) any |= buf[i]!;
    if (any < 0x80) {
      const b = buf;
      const s = start;
      switch (n) {
        case 0: return '';
        case 1: return fromCharCode(b[s]!);
        case 2: return fromCharCode(b[s]!, b[s + 1]!);
        case 3: return fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!);
        case 4: return fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!);
        case 5: return fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!);
        case 6: return fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!);
        case 7: return fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!);
        default: return fromCharCode(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!, b[s + 7]!);
      }
    }
  }
  return buf.toString('utf8', start, end);
}

/**
 * The strings one field of a schema read lately, by their UTF-8 bytes. A topic's values repeat (the
 * source's connector, database and table, warehouses, units): a string read again is the one decoded
 * before, which is exact (strings are values) and saves the allocation, the decoding and, where the
 * string keys a Map, hashing it again. 16 strings of at most 32 bytes, by a hash of a few bytes; a
 * field whose values rarely repeat (most reads in a window of 64 miss) is decoded without looking for
 * its next 1024 reads.
 */
export class StringSite {
  private readonly bytes = new Uint8Array(SLOTS * MAX_CACHED);
  private readonly lengths = new Int32Array(SLOTS).fill(-1);
  private readonly strings: string[] = new Array<string>(SLOTS).fill('');
  private reads = 0;
  private misses = 0;
  private bypass = 0;

  /** The UTF-8 text of `buf[start, end)`. */
  get(buf: Buffer, start: number, end: number): string {
    const len = end - start;
    if (len <= 0 || len > MAX_CACHED) return len <= 0 ? '' : buf.toString('utf8', start, end);
    if (this.bypass > 0) {
      this.bypass--;
      return utf8Text(buf, start, end);
    }
    const slot = (len + 3 * buf[start]! + 5 * buf[end - 1]! + 7 * buf[start + (len >> 1)]!) & (SLOTS - 1);
    const base = slot * MAX_CACHED;
    const bytes = this.bytes;
    if (this.lengths[slot] === len) {
      let i = 0;
      while (i < len && bytes[base + i] === buf[start + i]) i++;
      if (i === len) {
        this.count(0);
        return this.strings[slot]!;
      }
    }
    const s = utf8Text(buf, start, end);
    for (let i = 0; i < len; i++) bytes[base + i] = buf[start + i]!;
    this.lengths[slot] = len;
    this.strings[slot] = s;
    this.count(1);
    return s;
  }

  private count(miss: number): void {
    this.misses += miss;
    if (++this.reads < 64) return;
    if (this.misses > 48) this.bypass = 1024;
    this.reads = 0;
    this.misses = 0;
  }
}
