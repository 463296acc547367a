import type pg from 'pg';
import type { FeedDelta } from '../../connectors/feed/source.js';
import { PENDING_HASH, type RememberedRow } from '../../connectors/feed/snapshot-diff.js';
import { query } from '../core/pg.js';

/** The rows a feed's last applied file left under `sourceId` (key → digest and version), read when its reader starts. */
export async function loadFeedRows(q: pg.Pool | pg.PoolClient, sourceId: string): Promise<Map<string, RememberedRow>> {
  const { rows } = await query<{ row_key: string; row_hash: string; row_version: string | null }>(q, 'reading the rows of the last feed file',
    'SELECT row_key, row_hash, row_version FROM cellar.feed_rows WHERE source_id = $1', [sourceId]);
  return new Map(rows.map((r) => [r.row_key, { hash: r.row_hash, version: r.row_version === null ? 0 : Number(r.row_version) }]));
}

/**
 * Applies a feed file's delta in the caller's transaction (the one writing the feed's checkpoint): upserts
 * the rows it added or changed (digest, version and values), deletes the keys it no longer has. A
 * remembered row with a newer version than the delta's stays (a late pushed change never replaces it).
 */
export async function applyFeedDelta(tx: pg.PoolClient, sourceId: string, delta: FeedDelta): Promise<void> {
  if (delta.upserts.length) await upsertRows(tx, 'remembering the rows of a feed file', sourceId, delta.upserts);
  if (delta.deletes.length) {
    await query(tx, 'forgetting the rows a feed file dropped', `DELETE FROM cellar.feed_rows f USING unnest($2::text[], $3::bigint[]) AS d(k, v)
      WHERE f.source_id = $1 AND f.row_key = d.k AND (f.row_version IS NULL OR f.row_version <= d.v)`, [sourceId, delta.deletes.map((d) => d.key), delta.deletes.map((d) => d.version)]);
  }
  if (delta.inbox) {
    await query(tx, 'removing applied pushed requests', 'DELETE FROM cellar.feed_inbox WHERE supplier_id = $1 AND id <= $2', [delta.inbox.supplierId, delta.inbox.upTo]);
  }
}

/** Upserts remembered rows unless a newer version of the key is remembered; `row: null` remembers a key being deleted. */
async function upsertRows(q: pg.Pool | pg.PoolClient, what: string, sourceId: string, rows: Array<{ key: string; hash: string; version: number; row: Record<string, string | null> | null }>): Promise<void> {
  await query(q, what, `INSERT INTO cellar.feed_rows (source_id, row_key, row_hash, row_version, row_values)
    SELECT $1, k, h, v, r FROM unnest($2::text[], $3::text[], $4::bigint[], $5::jsonb[]) AS u(k, h, v, r)
    ON CONFLICT (source_id, row_key) DO UPDATE SET row_hash = excluded.row_hash, row_version = excluded.row_version, row_values = excluded.row_values
     WHERE cellar.feed_rows.row_version IS NULL OR cellar.feed_rows.row_version <= excluded.row_version`,
  [sourceId, rows.map((u) => u.key), rows.map((u) => u.hash), rows.map((u) => u.version), rows.map((u) => (u.row ? JSON.stringify(u.row) : null))]);
}

/**
 * Before a file's changes are published (`cellar run capture`), marks every key they touch as pending: if
 * the process dies after publishing but before the checkpoint, the next file re-sends each of those keys (as
 * it stands in that file, or a delete), so what was published for them never outlives the file that follows.
 */
export async function markFeedRowsPending(q: pg.Pool | pg.PoolClient, sourceId: string, delta: FeedDelta): Promise<void> {
  // (Pushed requests stay in the inbox until the checkpoint past them: a restart reads them again.)
  // The values marked are the ones published: reconciliation compares with what Cellar was sent.
  const rows = [...delta.upserts.map((u) => ({ ...u, hash: PENDING_HASH })), ...delta.deletes.map((d) => ({ ...d, hash: PENDING_HASH, row: null }))];
  if (rows.length) await upsertRows(q, 'marking the rows of a feed file pending', sourceId, rows);
}
