import type pg from 'pg';
import { query } from '../core/pg.js';

/** One operator or admin action, as recorded in `cellar.api_audit`. */
export interface AuditEntry {
  /** The key that acted (absent for the CLI, or when no valid key was presented). */
  keyId?: string | null;
  keyName?: string | null;
  /** Who acted, for people: `key:<name>`, `cli:<user>`, or `anonymous`. */
  actor: string;
  /** What was done, e.g. `dead-letters.replay`, `reconcile.run`, `keys.create`. */
  action: string;
  /** What it was done to, e.g. a supplier id or key id. */
  target?: string | null;
  /** The request's parameters; never secrets (see {@link scrubParams}). */
  params?: Record<string, unknown>;
  outcome: 'ok' | 'denied' | 'failed';
  /** HTTP status answered, when the action came through the API. */
  status?: number | null;
  /** A short human explanation (an error message, a count). */
  detail?: string | null;
  /** The client's address (behind a trusted proxy: the forwarded one); absent for the CLI. */
  clientAddr?: string | null;
}

/** A stored audit row. */
export interface AuditRow extends Required<Omit<AuditEntry, 'params'>> {
  id: number;
  ts: Date;
  params: Record<string, unknown>;
}

const SECRET_NAME = /(key|secret|token|password|authorization|credential)/i;

/** Drops parameters named like secrets, recursively, so audit rows never hold one. */
export function scrubParams(params: unknown): Record<string, unknown> {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, SECRET_NAME.test(k) ? '[redacted]' : walk(x)]));
    }
    return typeof v === 'string' && /^ck_[0-9a-f]{12}_/.test(v) ? '[redacted]' : v;
  };
  const out = walk(params ?? {});
  return out && typeof out === 'object' && !Array.isArray(out) ? (out as Record<string, unknown>) : { value: out };
}

/** Appends one audit row. */
export async function recordAudit(pool: pg.Pool, e: AuditEntry): Promise<void> {
  await query(
    pool,
    'writing audit row',
    `INSERT INTO cellar.api_audit (key_id, key_name, actor, action, target, params, outcome, status, detail, client_addr)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [e.keyId ?? null, e.keyName ?? null, e.actor, e.action, e.target ?? null, JSON.stringify(scrubParams(e.params)), e.outcome, e.status ?? null, e.detail?.slice(0, 500) ?? null, e.clientAddr ?? null],
  );
}

/** Audit rows, newest first. */
export async function listAudit(pool: pg.Pool, f: { action?: string; keyId?: string; limit?: number; beforeId?: number } = {}): Promise<AuditRow[]> {
  const conds: string[] = [];
  const values: unknown[] = [];
  if (f.action) conds.push(`action = $${values.push(f.action)}`);
  if (f.keyId) conds.push(`key_id = $${values.push(f.keyId)}`);
  if (f.beforeId) conds.push(`id < $${values.push(f.beforeId)}`);
  const limit = Math.max(1, Math.min(f.limit ?? 100, 1_000));
  const { rows } = await query(
    pool,
    'reading audit rows',
    `SELECT id, ts, key_id, key_name, actor, action, target, params, outcome, status, detail, client_addr FROM cellar.api_audit
      ${conds.length ? `WHERE ${conds.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${limit}`,
    values,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    ts: r.ts as Date,
    keyId: r.key_id as string | null,
    keyName: r.key_name as string | null,
    actor: r.actor as string,
    action: r.action as string,
    target: r.target as string | null,
    params: r.params as Record<string, unknown>,
    outcome: r.outcome as AuditEntry['outcome'],
    status: r.status as number | null,
    detail: r.detail as string | null,
    clientAddr: r.client_addr as string | null,
  }));
}
