import type mysql from 'mysql2/promise';
import { CellarError } from '../../pipelines/core/errors.js';
import type { BinlogPosition } from './source.js';

/** The server's current binlog position, with its GTIDs when it has them (see {@link withGtids}). */
export async function binlogStatus(c: mysql.Connection, mariadb: boolean): Promise<BinlogPosition> {
  const [rows] = await c.query<mysql.RowDataPacket[]>('SHOW MASTER STATUS').catch(() => c.query<mysql.RowDataPacket[]>('SHOW BINARY LOG STATUS'));
  if (!rows[0]) throw new CellarError('cdc_log_bin', 'the supplier server reports no binary log position (is log_bin on?)');
  const position = { file: String(rows[0].File), pos: Number(rows[0].Position) };
  return withGtids(c, mariadb, position, rows[0].Executed_Gtid_Set);
}

/**
 * Adds the GTIDs matching a position: MariaDB computes them (`BINLOG_GTID_POS`); MySQL reports its
 * executed set only with `gtid_mode=ON`, read at the same instant as the position (under the read lock
 * or from the same status row). Without GTIDs the position stays file/pos only.
 */
export async function withGtids(c: mysql.Connection, mariadb: boolean, position: BinlogPosition, executed?: unknown): Promise<BinlogPosition> {
  if (mariadb) {
    const [[row]] = await c.query<mysql.RowDataPacket[]>('SELECT BINLOG_GTID_POS(?, ?) AS g', [position.file, position.pos]);
    const g = row?.g === null || row?.g === undefined ? '' : String(row.g);
    return g ? { ...position, gtids: g } : position;
  }
  const [[mode]] = await c.query<mysql.RowDataPacket[]>('SELECT @@GLOBAL.gtid_mode AS m, @@GLOBAL.gtid_executed AS g');
  if (String(mode?.m).toUpperCase() !== 'ON') return position;
  const set = String(executed ?? mode!.g ?? '').replace(/\s+/g, '');
  return set ? { ...position, gtids: set } : position;
}
