import mysql from 'mysql2/promise';
import { mysqlConnection } from './config.js';
import type { SourceLag } from '../supplier-rows.js';
import type { BinlogPosition } from './source.js';
import { fromMysqlError } from './values.js';

/**
 * Binlog bytes written after `at` (Cellar's checkpointed position): the rest of that file and every later
 * one. Undefined without a position (before the first checkpoint).
 */
export async function binlogLag(url: string, at: BinlogPosition | undefined): Promise<SourceLag | undefined> {
  if (!at) return undefined;
  let c: mysql.Connection | undefined;
  try {
    c = await mysql.createConnection({ ...mysqlConnection(url), connectTimeout: 5_000 });
    const [logs] = await c.query<mysql.RowDataPacket[]>('SHOW BINARY LOGS');
    const files = logs.map((l) => ({ name: String(l.Log_name), size: Number(l.File_size) }));
    const i = files.findIndex((f) => f.name === at.file);
    if (i < 0) return { bytes: files.reduce((s, f) => s + f.size, 0), detail: `binlog ${at.file} is no longer on the server: every binlog is ahead of Cellar` };
    const bytes = Math.max(0, files[i]!.size - at.pos) + files.slice(i + 1).reduce((s, f) => s + f.size, 0);
    return { bytes, detail: `${bytes} binlog bytes after ${at.file}:${at.pos} (newest ${files.at(-1)!.name})` };
  } catch (err) {
    throw fromMysqlError(err, 'measuring binlog distance');
  } finally {
    await c?.end().catch(() => undefined);
  }
}
