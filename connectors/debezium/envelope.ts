/**
 * Builds change events exactly as Debezium writes them (JSON converter, with or without schemas): the
 * encoder capture uses for native readers' changes ({@link toDebeziumJson}), and the demo's and test
 * fixtures' events. Column types follow Kafka Connect's schema
 * types; DECIMAL columns are sent as base64 two's-complement bytes with a `scale` parameter, as
 * Debezium does with `decimal.handling.mode=precise`.
 */

import type { SourceChange } from '../source-change.js';

/** A captured column and its Connect type. */
export interface ColumnDef {
  name: string;
  type: 'int16' | 'int32' | 'int64' | 'string' | 'boolean' | 'double' | 'decimal';
  /** For `decimal`: digits after the point. */
  scale?: number;
  optional?: boolean;
}

/** Where a change comes from: connector, logical server name (topic prefix), database, schema, table. */
export interface SourceInfo {
  /** `cellar-feed`: a supplier's file or HTTP feed (see connectors/feed), its rows in Cellar's feed format. */
  connector: 'postgresql' | 'mysql' | 'cellar-feed';
  name: string;
  db: string;
  schema?: string;
  table: string;
}

export interface ChangeSpec {
  op: 'c' | 'u' | 'd' | 'r' | 't';
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  /** Commit time at the source, ms. */
  tsMs: number;
  /** Postgres: LSN of the change; txId. */
  lsn?: number;
  /**
   * Postgres (Cellar's reader): the commit LSN of the change's transaction (`source.cellar_commit_lsn`).
   * Versions then order by commit first: a transaction begun before a snapshot's point and committed after
   * it has change LSNs below that point, yet its changes are newer than the snapshot.
   */
  commitLsn?: number;
  txId?: number;
  /** MySQL: binlog file, position, row in event, GTID. */
  file?: string;
  pos?: number;
  row?: number;
  gtid?: string | null;
  snapshot?: 'true' | 'first' | 'last' | 'false' | 'incremental';
  /**
   * A reconciliation repair's version (`source.cellar_version`), used by the normalizer instead of the
   * LSN or binlog position: it sorts just above what the pipeline holds for the row and below every later
   * real change (see pipelines/reconcile/repair.ts).
   */
  cellarVersion?: string;
  /** Feeds: the row's version (the supplier's own, or the feed's arrival order), its line, and the file or request. */
  feedVersion?: number;
  line?: number;
  feedFile?: string;
}

/** Two's-complement big-endian bytes of an integer, base64, as Kafka Connect's Decimal. */
export function encodeDecimal(value: string | number, scale: number): string {
  let n = unscaledOf(value, scale);
  const bytes: number[] = [];
  const neg = n < 0n;
  do {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  } while (neg ? n !== -1n || (bytes[0]! & 0x80) === 0 : n !== 0n || (bytes[0]! & 0x80) !== 0);
  return Buffer.from(bytes).toString('base64');
}

/** A reader's decimal value (`"12.50"`) as the integer of its digits at `scale` (1250 at scale 2), as Connect encodes it. */
export function unscaledOf(value: string | number, scale: number): bigint {
  const [int, frac = ''] = String(value).split('.');
  return BigInt(`${int}${frac.padEnd(scale, '0').slice(0, scale)}`);
}

function fieldSchema(c: ColumnDef): Record<string, unknown> {
  if (c.type === 'decimal') {
    return { type: 'bytes', optional: c.optional ?? true, name: 'org.apache.kafka.connect.data.Decimal', version: 1, parameters: { scale: String(c.scale ?? 0) }, field: c.name };
  }
  return { type: c.type === 'double' ? 'double' : c.type, optional: c.optional ?? true, field: c.name };
}

function encodeRow(row: Record<string, unknown> | null, columns: ColumnDef[]): Record<string, unknown> | null {
  if (!row) return null;
  const out: Record<string, unknown> = {};
  for (const c of columns) {
    const v = row[c.name];
    out[c.name] = v === undefined || v === null ? null : c.type === 'decimal' ? encodeDecimal(v as string | number, c.scale ?? 0) : v;
  }
  return out;
}

function sourceStruct(info: SourceInfo): Record<string, unknown> {
  const s = (field: string, type = 'string', optional = true) => ({ type, optional, field });
  const common = [s('version', 'string', false), s('connector', 'string', false), s('name', 'string', false), s('ts_ms', 'int64', false), s('snapshot'), s('db', 'string', false), s('sequence')];
  const fields = info.connector === 'postgresql'
    ? [...common, s('schema', 'string', false), s('table', 'string', false), s('txId', 'int64'), s('lsn', 'int64'), s('xmin', 'int64'), s('cellar_commit_lsn', 'int64')]
    : info.connector === 'cellar-feed'
    ? [...common, s('table', 'string', false), s('line', 'int64', false), s('file')]
    : [...common, s('table'), s('server_id', 'int64', false), s('gtid'), s('file', 'string', false), s('pos', 'int64', false), s('row', 'int32', false), s('thread', 'int64'), s('query')];
  return { type: 'struct', fields, optional: false, name: `io.debezium.connector.${info.connector}.Source`, field: 'source' };
}

/**
 * A row's key and values as its JSON message carries them (each value through the reader's `value`
 * conversion), without building the message: the key's fields in column order, as the message key has them.
 */
export function rowImage(columns: ColumnDef[], keyColumns: string[], row: Record<string, unknown>, value: (v: unknown, type: ColumnDef['type']) => unknown): { key: Record<string, unknown>; after: Record<string, unknown> } {
  const after = rowValues(columns, row, value);
  const key: Record<string, unknown> = {};
  for (const c of columns) if (keyColumns.includes(c.name)) key[c.name] = after[c.name];
  return { key, after };
}

/** {@link rowImage}'s values alone: what a streamed change carries (one per change, so nothing else is built). */
export function rowValues(columns: ColumnDef[], row: Record<string, unknown>, value: (v: unknown, type: ColumnDef['type']) => unknown): Record<string, unknown> {
  const after: Record<string, unknown> = {};
  for (const c of columns) after[c.name] = value(row[c.name], c.type);
  return after;
}

/** The Debezium `source` block of a change. */
export function sourceBlock(info: SourceInfo, c: ChangeSpec): Record<string, unknown> {
  const base = { version: '2.7.3.Final', connector: info.connector, name: info.name, ts_ms: c.tsMs, snapshot: c.snapshot ?? 'false', db: info.db, ...(c.cellarVersion !== undefined ? { cellar_version: c.cellarVersion } : {}) };
  if (info.connector === 'cellar-feed') {
    // `version` is the row's version (digits), as the feed format defines it; see sourceVersionOf.
    return { ...base, version: String(c.feedVersion ?? 0), sequence: null, table: info.table, line: c.line ?? 0, file: c.feedFile ?? null };
  }
  if (info.connector === 'postgresql') {
    return { ...base, sequence: `[null,"${c.lsn ?? 0}"]`, schema: info.schema ?? 'public', table: info.table, txId: c.txId ?? null, lsn: c.lsn ?? 0, xmin: null, ...(c.commitLsn !== undefined ? { cellar_commit_lsn: c.commitLsn } : {}) };
  }
  return { ...base, sequence: null, table: info.table, server_id: 1, gtid: c.gtid ?? null, file: c.file ?? 'bin.000001', pos: c.pos ?? 4, row: c.row ?? 0, thread: null, query: null };
}

/** Debezium's topic for a table: `<name>.<schema>.<table>` (Postgres) or `<name>.<db>.<table>` (MySQL). */
export function debeziumTopic(info: SourceInfo): string {
  return `${info.name}.${info.connector === 'postgresql' ? (info.schema ?? 'public') : info.db}.${info.table}`;
}

/**
 * The key and value of one change as the JSON converter writes them. With `schemas` (the converter's
 * default) each is `{schema, payload}`; a delete's tombstone is a separate message with a null value.
 */
/** Envelope and key schema texts per table shape: they never change between events of one table. */
const schemaTexts = new WeakMap<ColumnDef[], Map<string, { value: string; key: string }>>();

export function debeziumJsonMessage(
  info: SourceInfo,
  columns: ColumnDef[],
  keyColumns: string[],
  c: ChangeSpec,
  options: { schemas?: boolean } = {},
): { key: string | null; value: string } {
  const withSchemas = options.schemas ?? true;
  const prefix = debeziumTopic(info);
  let byPrefix = schemaTexts.get(columns);
  if (!byPrefix) schemaTexts.set(columns, (byPrefix = new Map()));
  const cacheKey = `${info.connector}|${prefix}|${keyColumns.join(',')}`;
  const rowSchema = (field: string) => ({ type: 'struct', fields: columns.map(fieldSchema), optional: true, name: `${prefix}.Value`, field });
  const payload = {
    before: encodeRow(c.before, columns),
    after: encodeRow(c.after, columns),
    source: sourceBlock(info, c),
    op: c.op,
    ts_ms: c.tsMs + 5,
    transaction: null,
  };
  const buildSchema = () => ({
    type: 'struct',
    fields: [
      rowSchema('before'),
      rowSchema('after'),
      sourceStruct(info),
      { type: 'string', optional: false, field: 'op' },
      { type: 'int64', optional: true, field: 'ts_ms' },
      { type: 'struct', fields: [{ type: 'string', optional: false, field: 'id' }, { type: 'int64', optional: false, field: 'total_order' }, { type: 'int64', optional: false, field: 'data_collection_order' }], optional: true, name: 'event.block', version: 1, field: 'transaction' },
    ],
    optional: false,
    name: `${prefix}.Envelope`,
    version: 1,
  });
  const keyCols = columns.filter((col) => keyColumns.includes(col.name));
  let texts = byPrefix.get(cacheKey);
  if (!texts) {
    const keySchema = { type: 'struct', fields: keyCols.map((col) => ({ ...fieldSchema(col), optional: false })), optional: false, name: `${prefix}.Key` };
    texts = { value: JSON.stringify(buildSchema()), key: JSON.stringify(keySchema) };
    byPrefix.set(cacheKey, texts);
  }
  const row = c.after ?? c.before;
  let key: string | null = null;
  if (row && c.op !== 't') {
    const keyPayload = JSON.stringify(encodeRow(Object.fromEntries(keyColumns.map((k) => [k, row[k]])), keyCols));
    key = withSchemas ? `{"schema":${texts.key},"payload":${keyPayload}}` : keyPayload;
  }
  const payloadText = JSON.stringify(payload);
  return { key, value: withSchemas ? `{"schema":${texts.value},"payload":${payloadText}}` : payloadText };
}

function avroFieldType(c: ColumnDef): unknown {
  const base =
    c.type === 'decimal'
      ? {
          type: 'bytes',
          scale: c.scale ?? 0,
          precision: 18,
          'connect.version': 1,
          'connect.parameters': { scale: String(c.scale ?? 0), 'connect.decimal.precision': '18' },
          'connect.name': 'org.apache.kafka.connect.data.Decimal',
          logicalType: 'decimal',
        }
      : { int16: 'int', int32: 'int', int64: 'long', string: 'string', boolean: 'boolean', double: 'double' }[c.type];
  return c.optional === false ? base : ['null', base];
}

/**
 * The value schema Debezium's AvroConverter registers for a table (subject `<topic>-value`): an
 * Envelope record with `before`/`after` of the table's Value record, the connector's Source record,
 * `op`, `ts_ms` and `transaction`.
 */
export function debeziumAvroSchema(info: SourceInfo, columns: ColumnDef[]): Record<string, unknown> {
  const ns = debeziumTopic(info);
  const str = (name: string, optional = true) => ({ name, type: optional ? ['null', 'string'] : 'string', ...(optional ? { default: null } : {}) });
  const long = (name: string, optional = true) => ({ name, type: optional ? ['null', 'long'] : 'long', ...(optional ? { default: null } : {}) });
  const common = [str('version', false), str('connector', false), str('name', false), long('ts_ms', false), str('snapshot'), str('db', false), str('sequence')];
  const sourceFields = info.connector === 'postgresql'
    ? [...common, str('schema', false), str('table', false), long('txId'), long('lsn'), long('xmin')]
    : [...common, str('table'), long('server_id', false), str('gtid'), str('file', false), long('pos', false), { name: 'row', type: 'int' }, long('thread'), str('query')];
  return {
    type: 'record',
    name: 'Envelope',
    namespace: ns,
    fields: [
      {
        name: 'before',
        type: ['null', {
          type: 'record',
          name: 'Value',
          fields: columns.map((c) => ({ name: c.name, type: avroFieldType(c), ...(c.optional === false ? {} : { default: null }) })),
          'connect.name': `${ns}.Value`,
        }],
        default: null,
      },
      { name: 'after', type: ['null', 'Value'], default: null },
      { name: 'source', type: { type: 'record', name: 'Source', namespace: `io.debezium.connector.${info.connector}`, fields: sourceFields, 'connect.name': `io.debezium.connector.${info.connector}.Source` } },
      { name: 'op', type: 'string' },
      { name: 'ts_ms', type: ['null', 'long'], default: null },
    ],
    'connect.version': 1,
    'connect.name': `${ns}.Envelope`,
  };
}

/** A change's value as the AvroConverter writes it (before encoding): DECIMAL columns as unscaled bytes. */
export function debeziumAvroValue(info: SourceInfo, columns: ColumnDef[], c: ChangeSpec): Record<string, unknown> {
  const row = (r: Record<string, unknown> | null) => {
    if (!r) return null;
    const out: Record<string, unknown> = {};
    for (const col of columns) {
      const v = r[col.name];
      out[col.name] = v === undefined || v === null ? null : col.type === 'decimal' ? Buffer.from(encodeDecimal(v as string | number, col.scale ?? 0), 'base64') : v;
    }
    return out;
  };
  const src = sourceBlock(info, c);
  return { before: row(c.before), after: row(c.after), source: src, op: c.op, ts_ms: c.tsMs + 5 };
}

/**
 * One native reader change as Debezium's JSON converter writes it, on Debezium's topic for its table: what
 * capture publishes to a raw topic (the normalizer decodes it like Debezium's own).
 */
export function toDebeziumJson(c: SourceChange, options: { schemas?: boolean } = {}): { topic: string; key: string | null; value: string } {
  return { topic: debeziumTopic(c.info), ...debeziumJsonMessage(c.info, c.columns, c.keyColumns, c.spec, options) };
}
