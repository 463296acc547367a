import { scrubSecrets } from '../core/secrets.js';
import { payloadBody, type ClaimedDelivery } from './deliveries.js';
import { SIGNATURE_HEADER, signWebhook } from './signing.js';

/** The `user-agent` of every delivery. */
export const WEBHOOK_USER_AGENT = 'cellar-webhooks';

/** How one attempt went. */
export type SendOutcome =
  | { ok: true; httpStatus: number }
  /** `httpStatus` null: no answer (refused, reset, timed out, interrupted). */
  | { ok: false; httpStatus: number | null; error: string; interrupted?: boolean };

/** Bytes of a failing answer's body kept in the delivery's `last_error`. */
const ERROR_BODY_BYTES = 300;

/**
 * POSTs one delivery: the event as JSON, signed (`cellar-signature`, see signing.ts), with its event id
 * and attempt number as headers. A 2xx answer within `timeoutMs` is success; anything else (another
 * status, a redirect, no answer) a failure described without the secret or the URL's path and query
 * (which may hold a token). `stop` aborting ends the request at once as `interrupted`.
 */
export async function sendDelivery(d: ClaimedDelivery, o: { timeoutMs: number; stop: AbortSignal }): Promise<SendOutcome> {
  const body = payloadBody(d.event);
  const timeout = AbortSignal.timeout(o.timeoutMs);
  const signal = AbortSignal.any([timeout, o.stop]);
  try {
    const res = await fetch(d.url, {
      method: 'POST',
      body,
      redirect: 'manual',
      signal,
      headers: {
        'content-type': 'application/json',
        'user-agent': WEBHOOK_USER_AGENT,
        'cellar-event-id': d.eventId,
        'cellar-delivery-attempt': String(d.attempt),
        [SIGNATURE_HEADER]: signWebhook(d.secret, body),
      },
    });
    if (res.status >= 200 && res.status < 300) {
      await res.body?.cancel().catch(() => undefined);
      return { ok: true, httpStatus: res.status };
    }
    const text = await readSome(res, ERROR_BODY_BYTES).catch(() => '');
    return { ok: false, httpStatus: res.status, error: clean(`HTTP ${res.status}${text ? `: ${text}` : ''}`, d.secret) };
  } catch (err) {
    if (o.stop.aborted) return { ok: false, httpStatus: null, error: 'interrupted: the dispatcher stopped during the request', interrupted: true };
    if (timeout.aborted) return { ok: false, httpStatus: null, error: `no answer within ${o.timeoutMs} ms` };
    return { ok: false, httpStatus: null, error: clean(describeNetworkError(err, d.url), d.secret) };
  }
}

/** At most `max` bytes of a body as text (whitespace folded), the rest left unread. */
async function readSome(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    while (n < max) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      n += value.length;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).subarray(0, max).toString('utf8').replace(/\s+/g, ' ').trim();
}

/** `connection refused (ECONNREFUSED) by hooks.example.com:443`: the cause's code, and the host only. */
function describeNetworkError(err: unknown, url: string): string {
  let host = 'the endpoint';
  try {
    host = new URL(url).host;
  } catch {
    /* stored URLs parse */
  }
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  const code = cause?.code;
  const words: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'connection reset',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host name lookup failed',
    ETIMEDOUT: 'connection timed out',
    EHOSTUNREACH: 'host unreachable',
    UND_ERR_SOCKET: 'connection closed',
  };
  if (code) return `${words[code] ?? cause?.message ?? 'request failed'} (${code}) at ${host}`;
  return `request failed at ${host}: ${cause?.message ?? (err as Error)?.message ?? String(err)}`;
}

/** `text` without the secret (an endpoint echoing the request, say) nor secret-shaped parameters. */
function clean(text: string, secret: string): string {
  return scrubSecrets(secret ? text.split(secret).join('***') : text);
}
