import { Rejection } from './reasons.js';

/** An exact decimal number: unscaled × 10^-scale. Quantities stay exact until converted to bottles. */
export interface Decimal {
  unscaled: bigint;
  scale: number;
}

/** Reads a two's-complement big-endian integer (Kafka Connect Decimal bytes). */
export function bytesToBigInt(bytes: Uint8Array): bigint {
  if (bytes.length === 0) return 0n;
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  if (bytes[0]! & 0x80) n -= 1n << BigInt(bytes.length * 8);
  return n;
}

/** Decodes a Connect Decimal sent by the JSON converter (base64 bytes) with its scale. */
export function decodeConnectDecimal(b64: string, scale: number, field: string): Decimal {
  if (!Number.isInteger(scale) || scale < 0) throw new Rejection('bad_decimal', `${field}: invalid decimal scale ${scale}`);
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length === 0 && b64.length > 0) throw new Rejection('bad_decimal', `${field}: "${b64}" is not base64`);
  return { unscaled: bytesToBigInt(bytes), scale };
}

/** Parses a decimal from a number or numeric string ("12", "-1.50", "2e3"). */
export function parseDecimal(v: number | string, field: string): Decimal {
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

/** Multiplies by `num/den` and returns the exact integer result, or null if it is not whole. */
export function scaleToInteger(d: Decimal, num: bigint, den: bigint): bigint | null {
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
