import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import { ConfigError } from '../core/errors.js';
import { query, inTransaction } from '../core/pg.js';

import { DEFAULT_KEY_RATE_LIMIT_PER_S, KEY_ROLES } from '../core/names.js';

/**
 * Roles of API keys, each allowed everything the previous one is; `supplier` (below `reader`) may only push
 * its own supplier's feed, checked by that route against the key's `supplierId`.
 */
export const ROLES = KEY_ROLES;
export type Role = (typeof ROLES)[number];

/** True when `have` is at least `need` (admin ⊇ operator ⊇ reader ⊇ supplier). */
export function roleAllows(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

/** Postgres channel on which key changes (revocation) are announced, so API instances drop cached keys at once. */
export const KEYS_CHANNEL = 'cellar_api_keys';

/** Default requests per second of a new key (token bucket with a burst of twice the rate). */
export const DEFAULT_RATE_LIMIT_PER_S = DEFAULT_KEY_RATE_LIMIT_PER_S;

/** An API key as stored: never the secret, only its hash. */
export interface ApiKeyRecord {
  id: string;
  name: string;
  role: Role;
  /** The one supplier a `supplier` key may push for (null for other roles). */
  supplierId: string | null;
  secretSha256: Buffer;
  /** Requests per second; 0 = unlimited. */
  rateLimitPerS: number;
  createdAt: Date;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
}

/** A key as listed: everything but the hash. */
export type ApiKeyInfo = Omit<ApiKeyRecord, 'secretSha256'>;

const KEY_RE = /^ck_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/**
 * Splits a presented key `ck_<id>_<secret>` into its public id and secret; undefined when it does not
 * have that shape (so a malformed key is refused without a database lookup).
 */
export function parseApiKey(key: string): { id: string; secret: string } | undefined {
  const m = KEY_RE.exec(key);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/**
 * SHA-256 of a key's secret. The secret is 32 random bytes (256 bits), so guessing it or inverting the
 * hash is out of reach without a slow hash; scrypt/argon2 exist to stretch low-entropy passwords and would
 * cost tens of milliseconds per request instead of a microsecond.
 */
export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Compares a presented secret with a stored hash in constant time. */
export function secretMatches(secret: string, stored: Buffer): boolean {
  const h = hashSecret(secret);
  return h.length === stored.length && timingSafeEqual(h, stored);
}

function rowToRecord(r: Record<string, unknown>): ApiKeyRecord {
  return {
    id: r.id as string,
    name: r.name as string,
    role: r.role as Role,
    supplierId: (r.supplier_id as string | null) ?? null,
    secretSha256: r.secret_sha256 as Buffer,
    rateLimitPerS: Number(r.rate_limit_per_s),
    createdAt: r.created_at as Date,
    revokedAt: (r.revoked_at as Date | null) ?? null,
    lastUsedAt: (r.last_used_at as Date | null) ?? null,
  };
}

const COLUMNS = 'id, name, role, supplier_id, secret_sha256, rate_limit_per_s, created_at, revoked_at, last_used_at';

/** Creates a key; returns its record and the key itself, which is shown once and never stored. */
export async function createApiKey(
  pool: pg.Pool,
  opts: { name: string; role: Role; rateLimitPerS?: number; supplierId?: string },
): Promise<{ key: string; record: ApiKeyInfo }> {
  if (!ROLES.includes(opts.role)) throw new ConfigError(`role ${JSON.stringify(opts.role)}: expected one of ${ROLES.join(', ')}`);
  if ((opts.role === 'supplier') !== (opts.supplierId !== undefined)) throw new ConfigError(opts.role === 'supplier' ? 'a supplier key needs the supplier it pushes for (--supplier)' : `--supplier is only for role supplier, not ${opts.role}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9 ._@:-]{0,63}$/.test(opts.name)) {
    throw new ConfigError(`name ${JSON.stringify(opts.name)}: 1–64 letters, digits, spaces and . _ @ : -, starting with a letter or digit`);
  }
  const rate = opts.rateLimitPerS ?? DEFAULT_RATE_LIMIT_PER_S;
  if (!Number.isInteger(rate) || rate < 0) throw new ConfigError(`rate limit ${rate}: expected a whole number of requests per second (0 = unlimited)`);
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  try {
    const { rows } = await query(
      pool,
      'creating API key',
      `INSERT INTO cellar.api_keys (id, name, role, secret_sha256, rate_limit_per_s, supplier_id) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
      [id, opts.name, opts.role, hashSecret(secret), rate, opts.supplierId ?? null],
    );
    const { secretSha256: _omit, ...record } = rowToRecord(rows[0]!);
    return { key: `ck_${id}_${secret}`, record };
  } catch (err) {
    if ((err as { details?: { pgCode?: string } }).details?.pgCode === '23505') {
      throw new ConfigError(`a live key named ${JSON.stringify(opts.name)} exists already; revoke it or choose another name`);
    }
    throw err;
  }
}

/** Keys, newest first; revoked ones only when asked. Never includes secrets or hashes. */
export async function listApiKeys(pool: pg.Pool, opts: { includeRevoked?: boolean } = {}): Promise<ApiKeyInfo[]> {
  const { rows } = await query(
    pool,
    'listing API keys',
    `SELECT ${COLUMNS} FROM cellar.api_keys ${opts.includeRevoked ? '' : 'WHERE revoked_at IS NULL'} ORDER BY created_at DESC, id`,
  );
  return rows.map((r) => {
    const { secretSha256: _omit, ...info } = rowToRecord(r);
    return info;
  });
}

/** One key by id (with its hash, for verification), or undefined. */
export async function findApiKey(pool: pg.Pool, id: string): Promise<ApiKeyRecord | undefined> {
  const { rows } = await query(pool, 'reading API key', `SELECT ${COLUMNS} FROM cellar.api_keys WHERE id = $1`, [id]);
  return rows[0] ? rowToRecord(rows[0]) : undefined;
}

/**
 * Revokes a key by id or by live name, and announces it on {@link KEYS_CHANNEL} in the same transaction,
 * so running API instances refuse it from the commit on. Returns the revoked key, or undefined when no
 * live key matched.
 */
export async function revokeApiKey(pool: pg.Pool, idOrName: string): Promise<ApiKeyInfo | undefined> {
  return inTransaction(pool, 'revoking API key', async (tx) => {
    const { rows } = await tx.query(
      `UPDATE cellar.api_keys SET revoked_at = now()
        WHERE revoked_at IS NULL AND (id = $1 OR name = $1) RETURNING ${COLUMNS}`,
      [idOrName],
    );
    if (rows.length === 0) return undefined;
    if (rows.length > 1) throw new ConfigError(`${JSON.stringify(idOrName)} matches more than one key; revoke by id`);
    await tx.query('SELECT pg_notify($1, $2)', [KEYS_CHANNEL, rows[0].id]);
    const { secretSha256: _omit, ...info } = rowToRecord(rows[0]);
    return info;
  });
}

/** Records that keys were used (batched by the caller; at most once per key per flush). */
export async function touchApiKeys(pool: pg.Pool, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await query(pool, 'recording API key use', 'UPDATE cellar.api_keys SET last_used_at = now() WHERE id = ANY($1::text[])', [ids]);
}
