import { randomBytes } from 'node:crypto';
import { pgConfig } from '../../pipelines/core/pg-tls.js';
import pg from 'pg';
import type { Logger } from '../../pipelines/core/logger.js';
import type { PostgresCdcConfig } from './config.js';
import { lsnBefore } from './lsn.js';
import type { CdcBatch, CdcHandler, TableMeta } from './source.js';

/** What reading a snapshot needs from the reader. */
export interface SnapshotSource {
  cfg: PostgresCdcConfig;
  log: Logger;
  /** The captured tables (`schema.table`), as prepared. */
  tables: Map<string, TableMeta>;
  /** A snapshot message of a table at `lsn`: a row (`r`) or the truncate that starts the table (`t`, no row). */
  message(meta: TableMeta, op: 'r' | 't', row: Record<string, unknown> | null, lsn: string, tsMs: number): CdcBatch['changes'][number];
}

/** Opens a replication connection, creates a slot with an exported snapshot on it and runs `read` while it is open. */
async function withExportedSnapshot(src: SnapshotSource, create: string, read: (snap: string, lsn: string) => Promise<void>): Promise<void> {
  const repl = new pg.Client(pgConfig(src.cfg.url, { replication: 'database' }));
  await repl.connect();
  try {
    const res = await repl.query(create);
    const { consistent_point: lsn, snapshot_name: snap } = res.rows[0] as { consistent_point: string; snapshot_name: string };
    await read(snap, lsn);
  } finally {
    await repl.end().catch(() => undefined);
  }
}

/**
 * Creates the reader's slot with an exported snapshot and emits every existing row inside that snapshot
 * (unless the reader is configured `snapshot: never`). The replication connection that exported the
 * snapshot stays open (and idle) until the read is done.
 */
export async function createSlotAndSnapshot(src: SnapshotSource, handler: CdcHandler): Promise<void> {
  await withExportedSnapshot(src, `CREATE_REPLICATION_SLOT ${src.cfg.slotName} LOGICAL pgoutput EXPORT_SNAPSHOT`, async (snap, lsn) => {
    if (src.cfg.snapshot === 'never') return;
    await readSnapshot(src, handler, snap, lsn, lsn, [...src.tables.entries()]);
  });
}

/**
 * Reads the rows of `names` again while the reader's slot keeps its position (`cellar resnapshot --table`).
 * A temporary slot (dropped with its connection, even when the process dies) exports a snapshot at its
 * consistent point P: each table's rows carry P and end with a truncate just below P. The stream then
 * resumes from the slot's confirmed position `from`, so these tables' changes before P come again, older
 * than the snapshot (the version guards drop them), and every other table's changes come as they would
 * have. Batches carry `from` as their position: acknowledging or checkpointing them never skips a change,
 * and a crash before the end snapshots these tables again.
 */
export async function snapshotTablesAgain(src: SnapshotSource, handler: CdcHandler, names: string[], from: string): Promise<void> {
  const unknown = names.filter((n) => !src.tables.has(n));
  if (unknown.length) src.log.warn({ unknown, captured: src.cfg.tables }, 'tables to snapshot again are not captured any more; skipped');
  const slot = `${src.cfg.slotName.slice(0, 50)}_rs${randomBytes(4).toString('hex')}`;
  await withExportedSnapshot(src, `CREATE_REPLICATION_SLOT ${slot} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT`, (snap, lsn) =>
    readSnapshot(src, handler, snap, lsn, from, [...src.tables.entries()].filter(([n]) => names.includes(n))),
  );
}

/**
 * Emits the rows of `tables` as of the exported snapshot `snap` (versions at `lsn`), each table followed
 * by a truncate just below them (removing the table's rows not read again), then the (empty) batch that says the snapshot is complete. Batches
 * carry `position`: where the stream resumes after them.
 */
async function readSnapshot(src: SnapshotSource, handler: CdcHandler, snap: string, lsn: string, position: string, tables: Array<[string, TableMeta]>): Promise<void> {
  const c = new pg.Client(pgConfig(src.cfg.url));
  await c.connect();
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await c.query(`SET TRANSACTION SNAPSHOT '${snap.replace(/'/g, '')}'`);
    const now = Date.now();
    let rows = 0;
    for (const [name, meta] of tables) {
      await c.query(`DECLARE snap CURSOR FOR SELECT * FROM ${name.split('.').map((p) => `"${p}"`).join('.')}`);
      for (;;) {
        const chunk = await c.query(`FETCH ${src.cfg.snapshotFetchRows} FROM snap`);
        if (chunk.rowCount === 0) break;
        rows += chunk.rows.length;
        await handler({ changes: chunk.rows.map((r: Record<string, unknown>) => src.message(meta, 'r', r, lsn, now)), lsn: position, snapshot: true });
      }
      await c.query('CLOSE snap');
      // A snapshot replaces the table: its rows, then a truncate just below their position, which removes
      // only rows the snapshot did not read again (deleted while an earlier snapshot or stream was cut off:
      // a crash, a lost slot). After the rows, so a total never passes through 0 while they are re-read.
      await handler({ changes: [src.message(meta, 't', null, lsnBefore(lsn), now)], lsn: position, snapshot: true });
    }
    await c.query('COMMIT');
    await handler({ changes: [], lsn: position, snapshot: true, snapshotComplete: true });
    src.log.info({ slot: src.cfg.slotName, tables: tables.map(([n]) => n), rows, lsn }, 'snapshot complete');
  } finally {
    await c.end().catch(() => undefined);
  }
}
