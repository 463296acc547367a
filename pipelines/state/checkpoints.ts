import type pg from 'pg';
import type { SourceCheckpoint } from '../../connectors/native-source.js';
import type { BinlogPosition } from '../../connectors/mysql-cdc/index.js';
import type { FeedPosition } from '../../connectors/feed/source.js';
import { query, type Statement } from '../core/pg.js';

/**
 * The snapshot a native reader still owes, as its checkpoint in `cellar.checkpoints` records it (beside
 * its position). A reader started with it snapshots what is owed before it streams, so a crash anywhere
 * before the commit that records the end of that snapshot snapshots the same tables again on restart.
 */
export interface SnapshotState {
  /** False until a snapshot of every table completed: the next start snapshots every table (again). */
  snapshotDone?: boolean;
  /**
   * With `snapshotDone`: tables to snapshot again (`cellar resnapshot --table`) before streaming on from the
   * checkpointed position; the other tables' changes keep streaming from there, untouched.
   */
  snapshotTables?: string[];
  /** Ids of the `cellar.resnapshot_requests` the owed snapshot fulfils: marked finished with its end. */
  resnapshotRequests?: number[];
}

/**
 * A native source's checkpoint as both runtimes store it (the embedded runtime under the supplier id, capture
 * under `capture:<supplier>`): the source kind, where it stands (a Postgres LSN, informational since the slot
 * keeps the position; a binlog position with GTIDs, where a restart resumes) and the snapshot it owes.
 */
export interface StoredCheckpoint extends SnapshotState {
  kind: string;
  lsn?: string;
  /** A binlog position; in checkpoints written before this form, the embedded runtime's LSN text. */
  position?: BinlogPosition | string;
  /** A file feed: its last applied file (content hash, HTTP validators) and the version its rows got. */
  feed?: FeedPosition;
}

/** The stored fields of a source checkpoint. */
export function storedPosition(c: SourceCheckpoint): { lsn: string } | { position: BinlogPosition } | { feed: FeedPosition } {
  return c.kind === 'postgres' ? { lsn: c.lsn } : c.kind === 'feed' ? { feed: c.feed } : { position: c.position };
}

/** Where a saved checkpoint resumes its source: a binlog position; none for Postgres (the slot has it). */
export function resumePoint(saved: StoredCheckpoint | undefined): SourceCheckpoint | undefined {
  if (saved?.feed) return { kind: 'feed', feed: saved.feed };
  return saved?.position && typeof saved.position === 'object' ? { kind: 'mysql', position: saved.position } : undefined;
}

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
  const st = checkpointUpsert(sourceId, position);
  await query(q, 'writing checkpoint', st.text, st.values);
}

/** The statement of {@link writeCheckpoint}, to run with others. */
export function checkpointUpsert(sourceId: string, position: unknown): Statement {
  return {
    text: `INSERT INTO cellar.checkpoints (source_id, position, updated_at) VALUES ($1, $2, now())
    ON CONFLICT (source_id) DO UPDATE SET position = excluded.position, updated_at = now()`,
    values: [sourceId, JSON.stringify(position)],
  };
}
