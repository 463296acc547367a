import type pg from 'pg';
import { query } from '../../sinks/postgres/pool.js';

/** Queues `cellar resnapshot` of a supplier for the running embedded runtime; returns the request id. */
export async function requestResnapshot(pool: pg.Pool, supplierId: string, requestedBy: string): Promise<number> {
  const { rows } = await query<{ id: string }>(
    pool,
    'requesting a resnapshot',
    'INSERT INTO cellar.resnapshot_requests (supplier_id, requested_by) VALUES ($1, $2) RETURNING id',
    [supplierId, requestedBy],
  );
  return Number(rows[0]!.id);
}

/** Takes the open requests of the given suppliers (marks them taken); the supplier ids, once each. */
export async function takeResnapshotRequests(pool: pg.Pool, supplierIds: string[]): Promise<string[]> {
  if (supplierIds.length === 0) return [];
  const { rows } = await query<{ supplier_id: string }>(
    pool,
    'taking resnapshot requests',
    `UPDATE cellar.resnapshot_requests SET taken_at = now()
      WHERE taken_at IS NULL AND supplier_id = ANY($1::text[]) RETURNING supplier_id`,
    [supplierIds],
  );
  return [...new Set(rows.map((r) => r.supplier_id))];
}

/** A request's state: when it was made and taken (null while waiting for a running embedded runtime). */
export async function resnapshotRequest(pool: pg.Pool, id: number): Promise<{ requestedAt: Date; takenAt: Date | null } | undefined> {
  const { rows } = await query<{ requested_at: Date; taken_at: Date | null }>(pool, 'reading a resnapshot request', 'SELECT requested_at, taken_at FROM cellar.resnapshot_requests WHERE id = $1', [id]);
  return rows[0] && { requestedAt: rows[0].requested_at, takenAt: rows[0].taken_at };
}
