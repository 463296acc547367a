import type pg from 'pg';
import type { FeedDelta } from '../../connectors/feed/source.js';
import { query } from '../core/pg.js';

/** The rows a feed's last applied file left under `sourceId` (key → digest), read when its reader starts. */
export async function loadFeedRows(q: pg.Pool | pg.PoolClient, sourceId: string): Promise<Map<string, string>> {
  const { rows } = await query<{ row_key: string; row_hash: string }>(q, 'reading the rows of the last feed file', 'SELECT row_key, row_hash FROM cellar.feed_rows WHERE source_id = $1', [sourceId]);
  return new Map(rows.map((r) => [r.row_key, r.row_hash]));
}

/**
 * Applies a feed file's delta in the caller's transaction (the one writing the feed's checkpoint): upserts
 * the rows it added or changed, deletes the keys it no longer has.
 */
export async function applyFeedDelta(tx: pg.PoolClient, sourceId: string, delta: FeedDelta): Promise<void> {
  if (delta.upserts.length) {
    await query(tx, 'remembering the rows of a feed file', `INSERT INTO cellar.feed_rows (source_id, row_key, row_hash)
      SELECT $1, k, h FROM unnest($2::text[], $3::text[]) AS u(k, h)
      ON CONFLICT (source_id, row_key) DO UPDATE SET row_hash = excluded.row_hash`, [sourceId, delta.upserts.map((u) => u[0]), delta.upserts.map((u) => u[1])]);
  }
  if (delta.deletes.length) {
    await query(tx, 'forgetting the rows a feed file dropped', 'DELETE FROM cellar.feed_rows WHERE source_id = $1 AND row_key = ANY($2::text[])', [sourceId, delta.deletes]);
  }
  if (delta.inbox) {
    await query(tx, 'removing applied pushed requests', 'DELETE FROM cellar.feed_inbox WHERE supplier_id = $1 AND id <= $2', [delta.inbox.supplierId, delta.inbox.upTo]);
  }
}

/** The digest no row has: a key marked with it is compared as changed by the next file. */
export const PENDING_HASH = 'pending';

/**
 * Before a file's changes are published (`cellar run capture`), marks every key they touch as pending: if
 * the process dies after publishing but before the checkpoint, the next file re-sends each of those keys (as
 * it stands in that file, or a delete), so what was published for them never outlives the file that follows.
 */
export async function markFeedRowsPending(q: pg.Pool | pg.PoolClient, sourceId: string, delta: FeedDelta): Promise<void> {
  const keys = [...delta.upserts.map((u) => u[0]), ...delta.deletes];
  // (Pushed requests stay in the inbox until the checkpoint past them: a restart reads them again.)
  if (!keys.length) return;
  await query(q, 'marking the rows of a feed file pending', `INSERT INTO cellar.feed_rows (source_id, row_key, row_hash)
    SELECT $1, k, $3 FROM unnest($2::text[]) AS u(k)
    ON CONFLICT (source_id, row_key) DO UPDATE SET row_hash = excluded.row_hash`, [sourceId, keys, PENDING_HASH]);
}
