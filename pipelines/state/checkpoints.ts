import type pg from 'pg';
import { query } from '../core/pg.js';

/**
 * Source positions in `cellar.checkpoints`, one JSON document per source id (a supplier id for the
 * embedded runtime, `capture:<supplier>` for `cellar run capture`). `q` may be a transaction's client, so a
 * checkpoint commits with the writes it covers.
 */
export async function readCheckpoint<T>(q: pg.Pool | pg.PoolClient, sourceId: string): Promise<T | undefined> {
  const { rows } = await query<{ position: T }>(q, 'reading checkpoint', 'SELECT position FROM cellar.checkpoints WHERE source_id = $1', [sourceId]);
  return rows[0]?.position;
}

/** Replaces a source's checkpoint. */
export async function writeCheckpoint(q: pg.Pool | pg.PoolClient, sourceId: string, position: unknown): Promise<void> {
  await query(q, 'writing checkpoint', `INSERT INTO cellar.checkpoints (source_id, position, updated_at) VALUES ($1, $2, now())
    ON CONFLICT (source_id) DO UPDATE SET position = excluded.position, updated_at = now()`, [sourceId, JSON.stringify(position)]);
}
