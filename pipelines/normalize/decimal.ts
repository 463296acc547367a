import { Rejection } from './reasons.js';

/** An exact decimal number: unscaled × 10^-scale. Quantities stay exact until converted to bottles. */
export interface Decimal {
  unscaled: bigint;
  scale: number;
}

/** BigInts of 0…16383, made on first use: most quantities' unscaled values are small (a BigInt is immutable). */
const SMALL = new Array<bigint | undefined>(16_384);

/** `BigInt(n)` of a safe integer, shared for small ones (no allocation per value). */
export function bigIntOf(n: number): bigint {
  return n >= 0 && n < SMALL.length ? (SMALL[n] ??= BigInt(n)) : BigInt(n);
}

/**
 * Reads a two's-complement big-endian integer (Kafka Connect Decimal bytes), of the whole array or of
 * `bytes[start, end)` (a value inside a message, read without copying it out).
 */
export function bytesToBigInt(bytes: Uint8Array, start = 0, end = bytes.length): bigint {
  const len = end - start;
  if (len <= 0) return 0n;
  if (len <= 6) {
    let n = 0;
    for (let i = start; i < end; i++) n = n * 256 + bytes[i]!;
    if (bytes[start]! & 0x80) n -= 2 ** (len * 8);
    return bigIntOf(n);
  }
  let n = 0n;
  for (let i = start; i < end; i++) n = (n << 8n) | BigInt(bytes[i]!);
  if (bytes[start]! & 0x80) n -= 1n << BigInt(len * 8);
  return n;
}

const B64 = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;

/** Decodes base64 of at most 6 bytes straight to a two's-complement number; undefined if not that. */
function smallBase64ToNumber(b64: string): number | undefined {
  if (b64.length === 0 || b64.length > 8 || b64.length % 4 !== 0) return undefined;
  let bits = 0;
  let n = 0;
  let bytes = 0;
  for (let i = 0; i < b64.length; i++) {
    const c = b64.charCodeAt(i);
    if (c === 61) break; // '='
    const v = c < 128 ? B64[c]! : -1;
    if (v < 0) return undefined;
    bits = bits * 64 + v;
    if ((i & 3) === 3) {
      n = n * 2 ** 24 + bits;
      bytes += 3;
      bits = 0;
    }
  }
  const pad = b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0;
  if (pad === 1) { n = n * 2 ** 16 + Math.floor(bits / 4); bytes += 2; }
  if (pad === 2) { n = n * 2 ** 8 + Math.floor(bits / 16); bytes += 1; }
  if (bytes === 0 || bytes > 6) return undefined;
  const first = Math.floor(n / 2 ** ((bytes - 1) * 8));
  return first & 0x80 ? n - 2 ** (bytes * 8) : n;
}

/**
 * Decodes a Connect Decimal sent by the JSON converter (base64 bytes) with its scale. Errors name the
 * field: `field`, or `field.column` when `column` is given (joined only then: this runs per value).
 */
export function decodeConnectDecimal(b64: string, scale: number, field: string, column?: string): Decimal {
  if (!Number.isInteger(scale) || scale < 0) throw new Rejection('bad_decimal', `${column === undefined ? field : `${field}.${column}`}: invalid decimal scale ${scale}`);
  const small = smallBase64ToNumber(b64);
  if (small !== undefined) return { unscaled: bigIntOf(small), scale };
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length === 0 && b64.length > 0) throw new Rejection('bad_decimal', `${column === undefined ? field : `${field}.${column}`}: "${b64}" is not base64`);
  return { unscaled: bytesToBigInt(bytes), scale };
}

/** Parses a decimal from a number or numeric string ("12", "-1.50", "2e3"). */
export function parseDecimal(v: number | string, field: string): Decimal {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return { unscaled: BigInt(v), scale: 0 };
  const s = typeof v === 'number' ? (Number.isFinite(v) ? numberToPlain(v) : '') : v.trim();
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(s);
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) throw new Rejection('wrong_type', `${field}: "${String(v)}" is not a number`);
  const frac = m[3] ?? '';
  let unscaled = BigInt(`${m[1]}${m[2] || '0'}${frac}`);
  let scale = frac.length - Number(m[4] ?? 0);
  if (scale < 0) {
    unscaled *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { unscaled, scale };
}

function numberToPlain(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return BigInt(n).toString();
  return n.toString();
}

const POW10 = Array.from({ length: 16 }, (_, i) => 10 ** i);

/**
 * {@link scaleToInteger} in plain numbers: the exact integer result, null if it is not whole, or undefined
 * when an intermediate is not a safe integer (then only scaleToInteger can tell). Allocates nothing.
 */
export function scaleToSafeInteger(d: Decimal, num: number, den: number): number | null | undefined {
  if (d.scale >= POW10.length) return undefined;
  const u = Number(d.unscaled);
  const n = u * num;
  const q = den * POW10[d.scale]!;
  if (!Number.isSafeInteger(n) || !Number.isSafeInteger(q) || !Number.isSafeInteger(u)) return undefined;
  if (n % q !== 0) return null;
  const r = n / q;
  return r === 0 ? 0 : r; // never -0: the BigInt result has no sign for zero
}

/**
 * Multiplies by `num/den` and returns the exact integer result, or null if it is not whole. Uses plain
 * numbers while every intermediate is a safe integer, BigInt otherwise.
 */
export function scaleToInteger(d: Decimal, num: bigint, den: bigint): bigint | null {
  if (d.scale < POW10.length) {
    const u = Number(d.unscaled);
    const n = u * Number(num);
    const q = Number(den) * POW10[d.scale]!;
    if (Number.isSafeInteger(n) && Number.isSafeInteger(q) && Number.isSafeInteger(u)) return n % q === 0 ? BigInt(n / q) : null;
  }
  const n = d.unscaled * num;
  const q = den * 10n ** BigInt(d.scale);
  return n % q === 0n ? n / q : null;
}

export function decimalToString(d: Decimal): string {
  const neg = d.unscaled < 0n;
  const digits = (neg ? -d.unscaled : d.unscaled).toString().padStart(d.scale + 1, '0');
  const int = digits.slice(0, digits.length - d.scale);
  const frac = d.scale ? `.${digits.slice(-d.scale)}` : '';
  return `${neg ? '-' : ''}${int}${frac}`;
}
