import type { Connection as CoreConnection } from 'mysql2';
import type mysql from 'mysql2/promise';
import type { RowData } from '@vlasky/zongji';
import type { Logger } from '../../pipelines/core/logger.js';
import type { MysqlCdcConfig } from './config.js';
import { binlogStatus, withGtids } from './position.js';
import type { BinlogPosition, Message, MysqlCdcHandler, TableMeta } from './source.js';

/** What reading a snapshot needs from the reader. */
export interface SnapshotSource {
  cfg: MysqlCdcConfig;
  log: Logger;
  mariadb: boolean;
  /** The captured tables (`database.table`), as prepared. */
  tables: Map<string, TableMeta>;
  /** Runs `fn` on a new connection (session time zone UTC), converting errors. */
  admin<T>(what: string, fn: (c: mysql.Connection) => Promise<T>): Promise<T>;
  /** A snapshot message of a table: a row (`r`) or the truncate that starts the table (`t`, no row). */
  message(meta: TableMeta, op: 'r' | 't', row: RowData | null, at: { file: string; pos: number; row: number; tsMs: number }): Message;
}

/**
 * Reads every captured row in one consistent snapshot and returns the binlog position it matches.
 * MariaDB reports that position inside the snapshot transaction; MySQL needs a brief global read lock.
 *
 * With `again` (`cellar resnapshot --table`), reads only those tables, and its batches carry `again.from`,
 * the position the stream then resumes at: these tables' changes between there and the snapshot come
 * again, older than the snapshot (the version guards drop them), every other table's as they would have,
 * and a crash before the end snapshots these tables again.
 */
export async function readSnapshot(src: SnapshotSource, handler: MysqlCdcHandler, again?: { tables: string[]; from: BinlogPosition }): Promise<BinlogPosition> {
  const unknown = again?.tables.filter((t) => !src.tables.has(t)) ?? [];
  if (unknown.length) src.log.warn({ unknown, captured: src.cfg.tables }, 'tables to snapshot again are not captured any more; skipped');
  return src.admin('reading the MySQL snapshot', async (c) => {
    await c.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
    let position: BinlogPosition;
    if (src.mariadb) {
      await c.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
      const [rows] = await c.query<mysql.RowDataPacket[]>("SHOW STATUS LIKE 'binlog_snapshot_%'");
      const get = (name: string) => rows.find((r) => String(r.Variable_name).toLowerCase() === name)?.Value;
      position = await withGtids(c, true, { file: String(get('binlog_snapshot_file')), pos: Number(get('binlog_snapshot_position')) });
    } else {
      await c.query('FLUSH TABLES WITH READ LOCK');
      try {
        position = await binlogStatus(c, false);
        await c.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
      } finally {
        await c.query('UNLOCK TABLES');
      }
    }
    const tsMs = Date.now();
    let total = 0;
    // The promise wrapper's underlying connection: only it streams rows with backpressure.
    const core = (c as unknown as { connection: CoreConnection }).connection;
    let chunk: Message[] = [];
    const resumeAt = again?.from ?? position;
    const flush = async () => {
      total += chunk.length;
      if (chunk.length) await handler({ changes: chunk, position: resumeAt, snapshot: true });
      chunk = [];
    };
    const tables = [...src.tables].filter(([name]) => !again || again.tables.includes(name)).map(([, meta]) => meta);
    for (const meta of tables) {
      // Rows share the snapshot's file/pos; `row` only has to be unique per key, and every streamed
      // change lies after that position, so snapshot versions stay below streamed ones.
      for await (const row of core.query(`SELECT * FROM ${meta.quoted}`).stream({ highWaterMark: 1000 })) {
        chunk.push(src.message(meta, 'r', row as RowData, { ...position, row: chunk.length, tsMs }));
        if (chunk.length >= src.cfg.snapshotFetchRows) await flush();
      }
      // A snapshot replaces the table: its rows, then a truncate just below their position, which removes
      // only rows the snapshot did not read again (deleted while an earlier snapshot or stream was cut off:
      // a crash, a purged binlog). After the rows, so a total never passes through 0 while they are re-read.
      chunk.push(src.message(meta, 't', null, { ...position, pos: position.pos - 1, row: 0, tsMs }));
      await flush();
    }
    await c.query('COMMIT');
    await handler({ changes: [], position: resumeAt, snapshot: true, snapshotComplete: true });
    src.log.info({ rows: total, tables: tables.map((t) => `${t.info.db}.${t.info.table}`), ...position }, 'snapshot complete');
    return position;
  });
}
