import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * How webhook deliveries are signed, and how a receiver checks them.
 *
 * Each request carries `cellar-signature: t=<unix seconds>,v1=<hex>` where `<hex>` is
 * HMAC-SHA256(secret, `<t>.<raw body>`): the time the request was signed, a dot, then the body bytes
 * exactly as received (before any JSON parsing). A receiver recomputes the HMAC over the raw body with
 * its subscription's secret, compares in constant time, and refuses a timestamp older (or further in the
 * future) than a tolerance, so a captured request cannot be replayed later. Each attempt is signed anew.
 * Several `v1=` entries may appear; one matching is enough.
 */

/** Name of the header that carries the signature. */
export const SIGNATURE_HEADER = 'cellar-signature';

/** Default tolerance of {@link verifyWebhookSignature}: 5 minutes either way. */
export const DEFAULT_TOLERANCE_S = 300;

/** A new signing secret: `whsec_` and 32 random bytes in base64url (256 bits). */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

function hmacHex(secret: string, timestampS: number, rawBody: string | Uint8Array): string {
  return createHmac('sha256', secret).update(`${timestampS}.`).update(rawBody).digest('hex');
}

/**
 * The `cellar-signature` value for `rawBody` signed at `timestampS` (Unix seconds; default now):
 * `t=<timestampS>,v1=<hex HMAC-SHA256(secret, "<t>.<rawBody>")>`.
 */
export function signWebhook(secret: string, rawBody: string | Uint8Array, timestampS = Math.floor(Date.now() / 1000)): string {
  return `t=${timestampS},v1=${hmacHex(secret, timestampS, rawBody)}`;
}

/** Options of {@link verifyWebhookSignature}. */
export interface VerifyOptions {
  /** Largest distance between the signature's time and now, seconds. Default 300. */
  toleranceS?: number;
  /** "Now", Unix seconds (tests). Default the clock. */
  nowS?: number;
}

/**
 * True when `header` (the `cellar-signature` value) signs `rawBody` with `secret` at a time within
 * `toleranceS` of now. False for a malformed header, a timestamp out of tolerance, another secret or any
 * change to the body. `rawBody` must be the bytes as received: a body parsed and serialized again may
 * differ (key order, spaces, number formats) and fail.
 */
export function verifyWebhookSignature(secret: string, header: string | string[] | undefined, rawBody: string | Uint8Array, options: VerifyOptions = {}): boolean {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (!value || !secret) return false;
  let t: number | undefined;
  const candidates: string[] = [];
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't' && /^\d{1,12}$/.test(v)) t = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/.test(v)) candidates.push(v);
  }
  if (t === undefined || !candidates.length) return false;
  const now = options.nowS ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (options.toleranceS ?? DEFAULT_TOLERANCE_S)) return false;
  const expected = Buffer.from(hmacHex(secret, t, rawBody), 'hex');
  return candidates.some((c) => timingSafeEqual(Buffer.from(c, 'hex'), expected));
}
