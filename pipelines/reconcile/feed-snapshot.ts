import type pg from 'pg';
import type { Supplier } from '../../connectors/registry/loader.js';
import type { ColumnDef } from '../../connectors/debezium/envelope.js';
import { toDebeziumJson } from '../../connectors/debezium/envelope.js';
import { feedInfo } from '../../connectors/feed/poller.js';
import { SourceChange } from '../../connectors/source-change.js';
import { FETCH_KEYS, type SourceMessage, type SourceRow, type SupplierSnapshot } from '../../connectors/supplier-rows.js';
import { ConfigError, fromPgError } from '../core/errors.js';
import { query } from '../core/pg.js';
import { readCheckpoint } from '../state/checkpoints.js';

/**
 * A feed supplier's rows for reconciliation: the rows its last applied file (or its applied pushed
 * requests) left, as Cellar keeps them in `cellar.feed_rows` with their values. A file feed has no
 * database to read; what it last sent is the truth Cellar's totals must match, so reconciliation finds
 * contributions lost, doubled or changed behind the pipeline's back, and repairs them from these rows.
 * The rows of the runtime that applies the feed are read: the embedded runtime's (under the supplier's
 * id) when it checkpoints the supplier, else capture's (`capture:<supplier>`). A key capture marked
 * pending (published, not yet checkpointed) is compared as published; a pending delete counts as absent.
 */
export async function openFeedSnapshot(pool: pg.Pool, supplier: Supplier): Promise<SupplierSnapshot> {
  const table = supplier.source.tables[0]!;
  const keyColumns = table.key ?? [];
  const sourceId = (await readCheckpoint(pool, supplier.id)) !== undefined ? supplier.id : `capture:${supplier.id}`;
  const { rows } = await query<{ legacy: number }>(pool, 'reading a feed\'s remembered rows',
    `SELECT count(*)::int AS legacy FROM cellar.feed_rows WHERE source_id = $1 AND row_values IS NULL AND row_hash <> 'pending'`, [sourceId]);
  if (rows[0]!.legacy > 0) {
    throw new ConfigError(`${supplier.id}: ${rows[0]!.legacy} of the rows its last file left were applied before Cellar kept row values; reconcile after its next file or request (or \`cellar resnapshot --supplier ${supplier.id}\`)`);
  }
  const info = feedInfo(supplier.topicPrefix, table.name);
  const keyOf = (key: Record<string, unknown>) => JSON.stringify(keyColumns.map((c) => String(key[c] ?? '')));
  const columnsOf = (row: Record<string, unknown>): ColumnDef[] => [...new Set([...keyColumns, ...Object.keys(row)])].map((name) => ({ name, type: 'string' }));
  return {
    async scan(onChunk, chunkRows) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw fromPgError(err, `reading ${supplier.id}'s feed rows: connecting`);
      }
      const onError = () => undefined;
      client.on('error', onError);
      try {
        // One snapshot for the whole scan, read in key order a chunk at a time.
        await query(client, 'reading a feed\'s remembered rows', 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        for (let after = '', more = true; more; ) {
          const r = await query<{ row_key: string; row_values: Record<string, string | null> | null }>(client, 'reading a feed\'s remembered rows',
            `SELECT row_key, row_values FROM cellar.feed_rows WHERE source_id = $1 AND row_key COLLATE "C" > $2 ORDER BY row_key COLLATE "C" LIMIT $3`, [sourceId, after, chunkRows]);
          more = r.rows.length === chunkRows;
          after = r.rows.at(-1)?.row_key ?? after;
          const chunk = r.rows.filter((x) => x.row_values !== null).map((x) => ({ table: table.name, row: x.row_values! }));
          if (chunk.length) await onChunk(chunk);
        }
        await query(client, 'reading a feed\'s remembered rows', 'COMMIT');
      } finally {
        client.off('error', onError);
        client.release();
      }
    },
    async fetch(t, keys) {
      const out: SourceRow[] = [];
      for (let i = 0; i < keys.length; i += FETCH_KEYS) {
        const r = await query<{ row_values: Record<string, string | null> | null }>(pool, 'reading a feed\'s remembered rows',
          'SELECT row_values FROM cellar.feed_rows WHERE source_id = $1 AND row_key = ANY($2::text[]) AND row_values IS NOT NULL', [sourceId, keys.slice(i, i + FETCH_KEYS).map(keyOf)]);
        for (const x of r.rows) out.push({ table: t, row: x.row_values! });
      }
      return out;
    },
    message(r, op, cellarVersion): SourceMessage {
      const c = new SourceChange(info, columnsOf(r.row), keyColumns, {
        op, before: op === 'd' ? (r.row as Record<string, string | null>) : null, after: op === 'r' ? (r.row as Record<string, string | null>) : null,
        tsMs: Date.now(), feedVersion: 0, line: 0, feedFile: 'reconciliation', ...(cellarVersion !== undefined ? { cellarVersion } : {}),
      });
      return toDebeziumJson(c);
    },
    image(r) {
      const key: Record<string, unknown> = {};
      for (const c of keyColumns) key[c] = r.row[c] ?? null;
      return { key, after: r.row };
    },
    keyColumns: () => keyColumns,
    close: async () => undefined,
  };
}
