/** Column types, values and errors of MySQL/MariaDB as the native reader converts them. */
import { CellarError } from '../../pipelines/core/errors.js';
import type { ColumnDef } from '../debezium/envelope.js';

const INT32 = new Set(['tinyint', 'smallint', 'mediumint', 'year']);
const RETRIABLE = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|PROTOCOL_CONNECTION_LOST|PROTOCOL_SEQUENCE_TIMEOUT|ER_CON_COUNT_ERROR|ER_SERVER_SHUTDOWN|ER_LOCK_DEADLOCK|ER_LOCK_WAIT_TIMEOUT|ER_NET_/;

/** The Kafka Connect type Debezium gives a MySQL column (DECIMAL as string: decimal.handling.mode=string). */
export function connectType(dataType: string, columnType: string): ColumnDef['type'] {
  if (dataType === 'bigint' || (dataType === 'int' && columnType.includes('unsigned'))) return 'int64';
  if (dataType === 'int' || INT32.has(dataType)) return 'int32';
  if (dataType === 'double' || dataType === 'float' || dataType === 'real') return 'double';
  return 'string';
}

/** Debezium JSON values: DECIMAL as strings (decimal.handling.mode=string), times as ISO text, bytes as base64. */
export function jsonValue(v: unknown, type: ColumnDef['type']): unknown {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (type === 'int64' || type === 'int32') return Number.isSafeInteger(Number(v)) ? Number(v) : String(v);
  if (type === 'double') return Number(v);
  if (typeof v === 'string') return v;
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** Converts a mysql2 or zongji error; connection-level failures are retriable. */
export function fromMysqlError(err: unknown, context: string): CellarError {
  if (err instanceof CellarError) return err;
  const e = err as { code?: string; errno?: number; message?: string };
  const msg = e?.message ?? String(err);
  if (e?.errno === 1236) {
    return new CellarError('cdc_binlog_position', `${context}: ${msg} (the binlog position is no longer available: snapshot again)`, { cause: err });
  }
  const retriable = RETRIABLE.test(String(e?.code ?? '')) || /Connection lost|closed state|read ECONNRESET/i.test(msg);
  return new CellarError(retriable ? 'mysql_unavailable' : 'mysql_error', `${context}: ${msg}`, { retriable, cause: err, details: { mysqlCode: e?.code } });
}
