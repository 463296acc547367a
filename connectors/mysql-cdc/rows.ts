import mysql from 'mysql2/promise';
import { mysqlConnection } from './config.js';
import { CellarError } from '../../pipelines/core/errors.js';
import type { Logger } from '../../pipelines/core/logger.js';
import { FETCH_KEYS, type SourceMessage, type SourceRow, type SupplierSnapshot } from '../supplier-rows.js';
import { createMysqlCdcSource, fromMysqlError, type MysqlCdcSource } from './source.js';

const quoteMy = (t: string) => t.split('.').map((p) => `\`${p.replace(/`/g, '``')}\``).join('.');
/** mysql2 wants `mysql://`; the registry may say `mariadb://`. */

/** A MySQL/MariaDB supplier's rows: keyset pages inside one consistent snapshot, point reads by primary key. */
export class MysqlRows implements SupplierSnapshot {
  constructor(private readonly reader: MysqlCdcSource, private readonly url: string, private readonly tables: string[]) {}

  private async connection(): Promise<mysql.Connection> {
    try {
      return await mysql.createConnection({ ...mysqlConnection(this.url), timezone: 'Z', supportBigNumbers: true });
    } catch (err) {
      throw fromMysqlError(err, 'connecting to the supplier database');
    }
  }

  async scan(onChunk: (rows: SourceRow[]) => void | Promise<void>, chunkRows: number): Promise<void> {
    const c = await this.connection();
    try {
      await c.query("SET SESSION time_zone = '+00:00'");
      await c.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      await c.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
      for (const table of this.tables) {
        const cols = this.reader.keyColumns(table);
        const order = cols.map((k) => `\`${k}\``).join(', ');
        let last: unknown[] | undefined;
        // Keyset pages inside the snapshot transaction: every page sees the same snapshot.
        for (;;) {
          const where = last ? `WHERE (${order}) > (${cols.map(() => '?').join(', ')})` : '';
          const [rows] = await c.query<mysql.RowDataPacket[]>(`SELECT * FROM ${quoteMy(table)} ${where} ORDER BY ${order} LIMIT ${chunkRows}`, last ?? []);
          if (!rows.length) break;
          await onChunk(rows.map((row) => ({ table, row: row as Record<string, unknown> })));
          last = cols.map((k) => rows[rows.length - 1]![k]);
          if (rows.length < chunkRows) break;
        }
      }
      await c.query('COMMIT');
    } catch (err) {
      throw err instanceof CellarError ? err : fromMysqlError(err, 'reading the supplier\'s rows');
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  async fetch(table: string, keys: Array<Record<string, string>>): Promise<SourceRow[]> {
    const cols = this.reader.keyColumns(table);
    const c = await this.connection();
    try {
      await c.query("SET SESSION time_zone = '+00:00'");
      const out: SourceRow[] = [];
      for (let i = 0; i < keys.length; i += FETCH_KEYS) {
        const chunk = keys.slice(i, i + FETCH_KEYS);
        const tuples = chunk.map(() => `(${cols.map(() => '?').join(', ')})`);
        const [rows] = await c.query<mysql.RowDataPacket[]>(
          `SELECT * FROM ${quoteMy(table)} WHERE (${cols.map((k) => `\`${k}\``).join(', ')}) IN (${tuples.join(', ')})`,
          chunk.flatMap((k) => cols.map((col) => k[col] ?? '')),
        );
        out.push(...rows.map((row) => ({ table, row: row as Record<string, unknown> })));
      }
      return out;
    } catch (err) {
      throw fromMysqlError(err, `reading rows of ${table}`);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  message(r: SourceRow, op: 'r' | 'd', cellarVersion?: string): SourceMessage {
    return this.reader.rowMessage(r.table, op, r.row as never, { position: { file: 'bin.000001', pos: 4 }, tsMs: Date.now(), ...(cellarVersion !== undefined ? { cellarVersion } : {}) });
  }

  image(r: SourceRow): { key: Record<string, unknown>; after: Record<string, unknown> } {
    return this.reader.rowImage(r.table, r.row as never);
  }

  keyColumns(table: string): string[] {
    return this.reader.keyColumns(table);
  }

  async close(): Promise<void> {}
}

/** Opens read-only access to a MySQL/MariaDB supplier's captured tables (their columns and keys read first). */
export async function openMysqlRows(u: string, topicPrefix: string, tables: string[], log: Logger): Promise<SupplierSnapshot> {
  const reader = createMysqlCdcSource({ url: u, topicPrefix, tables }, log);
  await reader.inspect();
  return new MysqlRows(reader, u, tables);
}
