import pg from 'pg';
import { pgConfig } from '../core/pg-tls.js';
import type { Logger } from '../core/logger.js';
import { findApiKey, KEYS_CHANNEL, parseApiKey, secretMatches, touchApiKeys, type ApiKeyRecord } from './keys-store.js';

/** The key a request authenticated with. */
export type AuthenticatedKey = Pick<ApiKeyRecord, 'id' | 'name' | 'role' | 'rateLimitPerS' | 'supplierId'>;

/** The outcome of checking a presented key. */
export type AuthResult = { key: AuthenticatedKey } | { failure: AuthFailure };

/** Why a request was refused (always answered 401; the message never echoes the key). */
export interface AuthFailure {
  code: 'missing_key' | 'invalid_key' | 'revoked_key';
  message: string;
}

interface Cached {
  at: number;
  record: Promise<ApiKeyRecord | undefined>;
  /** The last record read successfully and when, used while Postgres cannot be read (see below). */
  known?: { at: number; record: ApiKeyRecord | undefined };
}

/**
 * Reads the key from `Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys are never accepted in the
 * URL, where they would end up in access logs, browser history and proxies.
 */
export function presentedKey(headers: Record<string, string | string[] | undefined>): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  const x = headers['x-api-key'];
  return typeof x === 'string' && x.trim() ? x.trim() : undefined;
}

/**
 * Verifies API keys against `cellar.api_keys`. Records are cached per key id so a request costs one
 * SHA-256 and no query; a revocation reaches every instance at once through Postgres LISTEN/NOTIFY
 * (`cellar_api_keys`, sent in the revoking transaction). Entries also expire after `ttlMs` (default
 * 30 s), and after 1 s while the LISTEN connection is down, so a missed notification cannot keep a
 * revoked key alive for long. While Postgres cannot be read, a key verified within the last
 * `outageGraceMs` (default 5 min) keeps its last known state, so Redis-served reads go on through a Postgres outage. Key use is written to `last_used_at` at most every 10 s per key.
 */
export class ApiKeyAuthenticator {
  private readonly cache = new Map<string, Cached>();
  private listener: pg.Client | undefined;
  private listening = false;
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly used = new Set<string>();
  private readonly touchTimer: NodeJS.Timeout;

  constructor(
    private readonly pool: pg.Pool,
    private readonly pgUrl: string,
    private readonly log: Logger,
    private readonly ttlMs = 30_000,
    private readonly outageGraceMs = 300_000,
  ) {
    this.touchTimer = setInterval(() => void this.flushUse(), 10_000);
    this.touchTimer.unref();
  }

  /** Starts listening for revocations (retries in the background until it succeeds). */
  async start(): Promise<void> {
    await this.listen().catch(() => this.scheduleReconnect());
  }

  private async listen(): Promise<void> {
    const c = new pg.Client(pgConfig(this.pgUrl, { application_name: 'cellar-api-keys' }));
    c.on('error', () => undefined);
    c.on('notification', (n) => {
      if (n.channel === KEYS_CHANNEL && n.payload) this.cache.delete(n.payload);
    });
    c.on('end', () => {
      if (this.listener !== c) return;
      this.listening = false;
      this.listener = undefined;
      // Entries now expire after 1 s (a revocation could be missed), but keep their last good record.
      if (!this.closed) this.scheduleReconnect();
    });
    await c.connect();
    await c.query(`LISTEN ${KEYS_CHANNEL}`);
    this.listener = c;
    this.listening = true;
    for (const e of this.cache.values()) e.at = 0; // revocations made while not listening: read again
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.listen().catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message }, 'listening for API key revocations failed; retrying');
        this.scheduleReconnect();
      });
    }, 2_000);
    this.reconnectTimer.unref();
  }

  private lookup(id: string): Promise<ApiKeyRecord | undefined> {
    const now = Date.now();
    const hit = this.cache.get(id);
    if (hit && now - hit.at < (this.listening ? this.ttlMs : 1_000)) return hit.record;
    const known = hit?.known;
    const entry: Cached = { at: now, record: Promise.resolve(undefined), known };
    entry.record = findApiKey(this.pool, id).then(
      (record) => {
        entry.known = { at: Date.now(), record };
        return record;
      },
      (err: unknown) => {
        if (this.cache.get(id) === entry) this.cache.delete(id); // a failed read is not cached
        // Postgres unreachable: a key verified within the grace period stays as it was (a revocation needs
        // Postgres too), so Redis-served reads keep working through a Postgres outage.
        if (known && Date.now() - known.at < this.outageGraceMs) {
          this.cache.set(id, { at: 0, record: Promise.resolve(known.record), known });
          return known.record;
        }
        throw err;
      },
    );
    this.cache.set(id, entry);
    if (this.cache.size > 10_000) this.cache.delete(this.cache.keys().next().value!);
    return entry.record;
  }

  /** The key behind a presented string, or why it is refused. Throws only when Postgres cannot be read. */
  async authenticate(presented: string | undefined): Promise<AuthResult> {
    const early = this.check(presented);
    if (early !== undefined && !('id' in early)) return early;
    const parsed = early as { id: string; secret: string };
    return this.verify(parsed, await this.lookup(parsed.id));
  }

  /**
   * The same answer as {@link authenticate} without waiting, when it can be given from a fresh cache entry
   * (the common case); undefined when the key record must be read first.
   */
  authenticateCached(presented: string | undefined): AuthResult | undefined {
    const early = this.check(presented);
    if (early === undefined || !('id' in early)) return early;
    const hit = this.cache.get(early.id);
    if (!hit?.known || hit.known.at < hit.at || Date.now() - hit.at >= (this.listening ? this.ttlMs : 1_000)) return undefined;
    return this.verify(early, hit.known.record);
  }

  private check(presented: string | undefined): AuthResult | { id: string; secret: string } {
    if (!presented) return { failure: { code: 'missing_key', message: 'an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>' } };
    return parseApiKey(presented) ?? { failure: { code: 'invalid_key', message: 'the API key is not valid' } };
  }

  private verify(parsed: { secret: string }, rec: ApiKeyRecord | undefined): AuthResult {
    if (!rec || !secretMatches(parsed.secret, rec.secretSha256)) return { failure: { code: 'invalid_key', message: 'the API key is not valid' } };
    if (rec.revokedAt) return { failure: { code: 'revoked_key', message: `API key ${rec.id} was revoked` } };
    this.used.add(rec.id);
    return { key: { id: rec.id, name: rec.name, role: rec.role, rateLimitPerS: rec.rateLimitPerS, supplierId: rec.supplierId } };
  }

  private async flushUse(): Promise<void> {
    if (this.used.size === 0) return;
    const ids = [...this.used];
    this.used.clear();
    await touchApiKeys(this.pool, ids).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.touchTimer);
    clearTimeout(this.reconnectTimer);
    await this.flushUse();
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => undefined);
  }
}
