import { decodeConnectDecimal, type Decimal } from './decimal.js';
import { Rejection } from './reasons.js';

/** A row image: column (or document field) name → decoded value. */
export type Row = Record<string, unknown>;

/** Debezium ops: create, update, delete, read (snapshot), truncate, message. */
export type DebeziumOp = 'c' | 'u' | 'd' | 'r' | 't' | 'm';

/** A decoded Debezium change event, independent of connector and converter. */
export interface ChangeEvent {
  op: DebeziumOp;
  before: Row | null;
  after: Row | null;
  /** The message key's fields (the row's primary key), or null. */
  key: Row | null;
  source: Record<string, unknown>;
  /** `schema.table` (Postgres, SQL Server) or `database.table` (MySQL/MariaDB, MongoDB). */
  table: string;
  /** Fixed-width, lexicographically ordered position of the change (see {@link sourceVersionOf}). */
  sourceVersion: string;
  /** Commit time at the source (source.ts_ms), ms. */
  sourceTsMs: number;
  /** A readable source position for dead letters and logs, e.g. `lsn=24023128`. */
  position: string;
}

interface FieldSchema {
  field?: string;
  type?: string;
  name?: string;
  parameters?: Record<string, string>;
  fields?: FieldSchema[];
}

const DECIMAL = 'org.apache.kafka.connect.data.Decimal';
const VARIABLE_DECIMAL = 'io.debezium.data.VariableScaleDecimal';

/** Decodes logical types of one row image using the Connect schema of that struct. */
function decodeRow(row: unknown, schema: FieldSchema | undefined, where: string): Row | null {
  if (row === null || row === undefined) return null;
  if (typeof row !== 'object' || Array.isArray(row)) throw new Rejection('not_debezium_envelope', `${where} is not an object`);
  const out: Row = { ...(row as Row) };
  if (!schema?.fields) return out;
  for (const f of schema.fields) {
    if (!f.field) continue;
    const v = out[f.field];
    if (v === null || v === undefined) continue;
    if (f.name === DECIMAL && typeof v === 'string') {
      out[f.field] = decodeConnectDecimal(v, Number(f.parameters?.scale ?? 0), `${where}.${f.field}`) satisfies Decimal;
    } else if (f.name === VARIABLE_DECIMAL && typeof v === 'object') {
      const { scale, value } = v as { scale?: number; value?: string };
      if (typeof value !== 'string') throw new Rejection('bad_decimal', `${where}.${f.field}: VariableScaleDecimal without value`);
      out[f.field] = decodeConnectDecimal(value, Number(scale ?? 0), `${where}.${f.field}`);
    }
  }
  return out;
}

function pad(n: bigint | number | string, width: number): string {
  const s = BigInt(n).toString();
  return s.length >= width ? s : '0'.repeat(width - s.length) + s;
}

/**
 * The per-row monotonic version of a change, as a fixed-width digit string so plain string comparison
 * orders it:
 * - Postgres: the change's LSN (20 digits).
 * - MySQL/MariaDB: binlog file number, position and row in event (10+20+6 digits).
 * - SQL Server: commit LSN then change LSN (hex, fixed width as Debezium writes them).
 * - MongoDB: the oplog/change-stream order `ord` within `ts_ms`.
 */
export function sourceVersionOf(connector: string, source: Record<string, unknown>): { version: string; position: string } {
  switch (connector) {
    case 'postgresql': {
      const lsn = source.lsn;
      if (typeof lsn !== 'number' && typeof lsn !== 'string') throw new Rejection('bad_version', 'Postgres source has no lsn');
      return { version: pad(lsn, 20), position: `lsn=${lsn}` };
    }
    case 'mysql':
    case 'mariadb': {
      const file = String(source.file ?? '');
      const m = /\.(\d+)$/.exec(file);
      if (!m || source.pos === undefined) throw new Rejection('bad_version', `MySQL source has no binlog file/pos (file="${file}")`);
      const row = Number(source.row ?? 0);
      return { version: `${pad(m[1]!, 10)}${pad(source.pos as number, 20)}${pad(row, 6)}`, position: `${file}:${source.pos}#${row}` };
    }
    case 'sqlserver': {
      const commit = String(source.commit_lsn ?? '');
      const change = String(source.change_lsn ?? '');
      if (!commit) throw new Rejection('bad_version', 'SQL Server source has no commit_lsn');
      return { version: `${commit}|${change || commit}`, position: `commit_lsn=${commit} change_lsn=${change}` };
    }
    case 'mongodb': {
      const ts = Number(source.ts_ms ?? 0);
      const ord = Number(source.ord ?? 0);
      return { version: `${pad(ts, 15)}${pad(ord, 10)}`, position: `ts_ms=${ts} ord=${ord}` };
    }
    default:
      throw new Rejection('bad_version', `unknown Debezium connector "${connector}"`);
  }
}

function parseJson(buf: Buffer, what: string): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw new Rejection('malformed_json', `${what} is not JSON: ${(err as Error).message}`);
  }
}

/** Splits `{schema, payload}` (JSON converter with schemas) from a bare payload. */
function unwrap(v: unknown): { payload: unknown; schema: FieldSchema | undefined } {
  if (v && typeof v === 'object' && 'payload' in v && 'schema' in v) {
    const w = v as { payload: unknown; schema: FieldSchema };
    return { payload: w.payload, schema: w.schema };
  }
  return { payload: v, schema: undefined };
}

const OPS = new Set(['c', 'u', 'd', 'r', 't', 'm']);

/** Builds a ChangeEvent from an already-parsed envelope (JSON or Avro), with optional Connect schema. */
export function changeFromEnvelope(payload: unknown, schema: FieldSchema | undefined, key: Row | null): ChangeEvent {
  if (!payload || typeof payload !== 'object') throw new Rejection('not_debezium_envelope', 'value is not an object');
  const env = payload as Record<string, unknown>;
  const op = env.op;
  const source = env.source as Record<string, unknown> | undefined;
  if (typeof op !== 'string' || !source || typeof source !== 'object') {
    throw new Rejection('not_debezium_envelope', 'value has no "op" and "source" (is the ExtractNewRecordState SMT configured? Cellar needs the full envelope)');
  }
  if (!OPS.has(op)) throw new Rejection('unsupported_op', `op "${op}" is not a Debezium op`);
  const fieldSchema = (name: string) => schema?.fields?.find((f) => f.field === name);
  const connector = String(source.connector ?? '');
  const table = `${String(source.schema ?? source.db ?? '')}.${String(source.table ?? source.collection ?? '')}`;
  const { version, position } = sourceVersionOf(connector, source);
  return {
    op: op as DebeziumOp,
    before: decodeRow(env.before, fieldSchema('before'), 'before'),
    after: decodeRow(env.after, fieldSchema('after'), 'after'),
    key,
    source,
    table: connector === 'mysql' || connector === 'mariadb' ? `${String(source.db)}.${String(source.table)}` : table,
    sourceVersion: version,
    sourceTsMs: Number(source.ts_ms ?? env.ts_ms ?? 0),
    position,
  };
}

/**
 * Decodes a Debezium message written by the JSON converter, with or without schemas.
 * Returns `null` for a tombstone (null value after a delete), which carries no new information.
 * Throws {@link Rejection} for anything that is not a Debezium change event.
 */
export function decodeDebeziumJson(key: Buffer | null, value: Buffer | null): ChangeEvent | null {
  if (value === null || value.length === 0) return null;
  const { payload, schema } = unwrap(parseJson(value, 'value'));
  let keyRow: Row | null = null;
  if (key && key.length) {
    const k = unwrap(parseJson(key, 'key'));
    keyRow = decodeRow(k.payload, k.schema, 'key');
  }
  return changeFromEnvelope(payload, schema, keyRow);
}
