import { decodeConnectDecimal, parseDecimal, type Decimal } from './decimal.js';
import { compileJsonReader, NOT_READ, type JsonReader } from './json-reader.js';
import { Rejection } from './reasons.js';
import { sourceVersionOf, type ChangeEvent, type DebeziumOp, type Row } from '../../connectors/debezium/change.js';

/** The change event and source versions live with the edges that produce them; re-exported for the stages. */
export { sourceVersionOf, type ChangeEvent, type DebeziumOp, type Row };

interface FieldSchema {
  field?: string;
  type?: string;
  name?: string;
  parameters?: Record<string, string>;
  fields?: FieldSchema[];
}

const DECIMAL = 'org.apache.kafka.connect.data.Decimal';
const VARIABLE_DECIMAL = 'io.debezium.data.VariableScaleDecimal';
const DAY_MS = 86_400_000;

/**
 * Converts Debezium/Connect time types to epoch milliseconds: io.debezium.time.Date and Connect Date (days),
 * Timestamp and Connect Timestamp (ms), MicroTimestamp (µs), NanoTimestamp (ns), ZonedTimestamp (ISO text).
 * Returns undefined for other types.
 */
export function timeToMs(name: string | undefined, v: unknown): number | undefined {
  switch (name) {
    case 'io.debezium.time.Date':
    case 'org.apache.kafka.connect.data.Date':
      return typeof v === 'number' ? v * DAY_MS : undefined;
    case 'io.debezium.time.Timestamp':
    case 'org.apache.kafka.connect.data.Timestamp':
      return typeof v === 'number' ? v : undefined;
    case 'io.debezium.time.MicroTimestamp':
      return typeof v === 'number' ? Math.floor(v / 1000) : undefined;
    case 'io.debezium.time.NanoTimestamp':
      return typeof v === 'number' ? Math.floor(v / 1e6) : undefined;
    case 'io.debezium.time.ZonedTimestamp': {
      const ms = typeof v === 'string' ? Date.parse(v) : NaN;
      return Number.isNaN(ms) ? undefined : ms;
    }
    default:
      return undefined;
  }
}

/**
 * Reads a MongoDB Extended JSON document (as the Debezium MongoDB connector sends `after`/`before`):
 * `$oid` → hex string, `$numberInt`/`$numberLong`/`$numberDouble` → number (or exact decimal beyond 2^53),
 * `$numberDecimal` → exact decimal, `$date` → epoch ms.
 */
export function fromExtendedJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromExtendedJson);
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1) {
    const k = keys[0]!;
    const x = o[k];
    if (k === '$oid' && typeof x === 'string') return x;
    if ((k === '$numberInt' || k === '$numberDouble') && typeof x === 'string') return Number(x);
    if (k === '$numberLong' && typeof x === 'string') return Number.isSafeInteger(Number(x)) ? Number(x) : parseDecimal(x, '$numberLong');
    if (k === '$numberDecimal' && typeof x === 'string') return parseDecimal(x, '$numberDecimal');
    if (k === '$date') {
      if (typeof x === 'number') return x;
      if (typeof x === 'string') return Date.parse(x);
      if (x && typeof x === 'object' && '$numberLong' in x) return Number((x as { $numberLong: string }).$numberLong);
    }
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = fromExtendedJson(o[k]);
  return out;
}

function mongoDocument(v: unknown, where: string): Row | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') return fromExtendedJson(v) as Row;
  try {
    return fromExtendedJson(JSON.parse(v)) as Row;
  } catch (err) {
    throw new Rejection('malformed_json', `${where} is not a MongoDB Extended JSON document: ${(err as Error).message}`);
  }
}

/** Fields of a struct schema that carry logical types needing conversion (cached on the schema object). */
function logicalFields(schema: FieldSchema): FieldSchema[] {
  const s = schema as FieldSchema & { _logical?: FieldSchema[] };
  return (s._logical ??= (schema.fields ?? []).filter((f) => f.field && f.name));
}

/** Decodes logical types of one row image (in place: the row was just parsed) using its Connect schema. */
function decodeRow(row: unknown, schema: FieldSchema | undefined, where: string): Row | null {
  if (row === null || row === undefined) return null;
  if (typeof row !== 'object' || Array.isArray(row)) throw new Rejection('not_debezium_envelope', `${where} is not an object`);
  const out = row as Row;
  if (!schema?.fields) return out;
  for (const f of logicalFields(schema)) {
    if (!f.field) continue;
    const v = out[f.field];
    if (v === null || v === undefined) continue;
    if (f.name === DECIMAL && typeof v === 'string') {
      out[f.field] = decodeConnectDecimal(v, Number(f.parameters?.scale ?? 0), where, f.field) satisfies Decimal;
    } else if (f.name === VARIABLE_DECIMAL && typeof v === 'object') {
      const { scale, value } = v as { scale?: number; value?: string };
      if (typeof value !== 'string') throw new Rejection('bad_decimal', `${where}.${f.field}: VariableScaleDecimal without value`);
      out[f.field] = decodeConnectDecimal(value, Number(scale ?? 0), where, f.field);
    } else if (f.name) {
      const ms = timeToMs(f.name, v);
      if (ms !== undefined) out[f.field] = ms;
    }
  }
  return out;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Rejection('malformed_json', `${what} is not JSON: ${(err as Error).message}`);
  }
}

const SCHEMA_HEAD = Buffer.from('{"schema":');
const PAYLOAD_SEP = Buffer.from(',"payload":');

interface KnownSchema {
  bytes: Buffer;
  schema: FieldSchema;
  /** The payload reader compiled for it on first use; null when it has none (not a struct). */
  read?: JsonReader | null;
}

/** Recently seen Connect schemas (their bytes and parsed form): a topic's events repeat one schema. */
const recentSchemas: KnownSchema[] = [];

/** True when `buf` holds `sep` at `at` (compared here: a call into Buffer costs more than a few bytes). */
function holdsAt(buf: Buffer, sep: Buffer, at: number): boolean {
  if (at + sep.length > buf.length) return false;
  for (let i = 0; i < sep.length; i++) if (buf[at + i] !== sep[i]) return false;
  return true;
}

/** The payload `buf[start, end)` of a message with a known schema: read by the schema's reader, else parsed. */
function payloadOf(known: KnownSchema, buf: Buffer, start: number, end: number): unknown {
  if (known.read === undefined) known.read = compileJsonReader(known.schema) ?? null;
  const v = known.read ? known.read(buf, start, end) : NOT_READ;
  return v === NOT_READ ? JSON.parse(buf.toString('utf8', start, end)) : v;
}

/**
 * Parses `{"schema":…,"payload":…}` as the JSON converter writes it without decoding the schema
 * again when its bytes equal a recently seen one: only the payload is parsed. Returns undefined when the
 * message is not in that exact shape (the caller parses it whole).
 */
function parseSchemaPayload(buf: Buffer): { payload: unknown; schema: FieldSchema } | undefined {
  if (buf.length < SCHEMA_HEAD.length + PAYLOAD_SEP.length + 2 || !holdsAt(buf, SCHEMA_HEAD, 0)) return undefined;
  if (buf[buf.length - 1] !== 0x7d) return undefined;
  let known: KnownSchema | undefined;
  let sep = -1;
  for (const r of recentSchemas) {
    const end = SCHEMA_HEAD.length + r.bytes.length;
    if (end + PAYLOAD_SEP.length < buf.length && holdsAt(buf, PAYLOAD_SEP, end) && buf.compare(r.bytes, 0, r.bytes.length, SCHEMA_HEAD.length, end) === 0) {
      known = r;
      sep = end;
      break;
    }
  }
  if (sep < 0) sep = buf.indexOf(PAYLOAD_SEP, SCHEMA_HEAD.length);
  if (sep < 0) return undefined;
  try {
    if (!known) {
      const parsed = JSON.parse(buf.toString('utf8', SCHEMA_HEAD.length, sep)) as FieldSchema;
      if (!parsed || typeof parsed !== 'object') return undefined;
      known = { bytes: Buffer.from(buf.subarray(SCHEMA_HEAD.length, sep)), schema: parsed };
      recentSchemas.unshift(known);
      if (recentSchemas.length > 32) recentSchemas.pop();
    }
    return { payload: payloadOf(known, buf, sep + PAYLOAD_SEP.length, buf.length - 1), schema: known.schema };
  } catch {
    return undefined;
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

/** The envelope's `before`/`after` struct schemas, looked up once per schema object. */
function envelopeField(schema: FieldSchema, name: string): FieldSchema | undefined {
  const s = schema as FieldSchema & { _byField?: Map<string, FieldSchema> };
  s._byField ??= new Map((schema.fields ?? []).filter((f) => f.field).map((f) => [f.field!, f]));
  return s._byField.get(name);
}

/** The MongoDB connector's key is `{id: "<Extended JSON of _id>"}`; an ObjectId becomes its hex string. */
function mongoKey(key: Row): Row {
  const id = key.id;
  if (typeof id !== 'string') return key;
  try {
    const v = fromExtendedJson(JSON.parse(id));
    return { id: typeof v === 'object' && v !== null ? JSON.stringify(v) : v };
  } catch {
    return { id };
  }
}

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
  const connector = String(source.connector ?? '');
  // A reconciliation repair carries its own version (see pipelines/reconcile/repair.ts).
  const repair = source.cellar_version;
  const { version, position } = typeof repair === 'string' ? { version: repair, position: `reconcile:${repair}` } : sourceVersionOf(connector, source);
  const mongo = connector === 'mongodb';
  return {
    op: op as DebeziumOp,
    before: mongo ? mongoDocument(env.before, 'before') : decodeRow(env.before, schema && envelopeField(schema, 'before'), 'before'),
    after: mongo ? mongoDocument(env.after, 'after') : decodeRow(env.after, schema && envelopeField(schema, 'after'), 'after'),
    key: mongo && key ? mongoKey(key) : key,
    source,
    table: tableName(connector, source),
    sourceVersion: version,
    sourceTsMs: timestampMs(source.ts_ms ?? env.ts_ms),
    position,
  };
}

/** The last computed table name: consecutive events nearly always come from the same table. */
let lastTable = { connector: '', db: undefined as unknown, schema: undefined as unknown, table: undefined as unknown, name: '' };

/**
 * A source time in whole ms, or 0 (unknown) when it is not a number of ms Avro's long can carry: a
 * fractional, huge or non-numeric `ts_ms` must not make the change impossible to pass on.
 */
function timestampMs(v: unknown): number {
  const n = Math.trunc(Number(v ?? 0));
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/** `schema.table` (Postgres), `db.table` (MySQL/MariaDB, MongoDB, feeds), `db.schema.table` (SQL Server). */
function tableName(connector: string, source: Record<string, unknown>): string {
  const db = source.db;
  const sch = source.schema;
  const table = source.table ?? source.collection;
  const l = lastTable;
  if (l.connector === connector && l.db === db && l.schema === sch && l.table === table) return l.name;
  const name =
    connector === 'mysql' || connector === 'mariadb' ? `${String(db)}.${String(table)}`
    : connector === 'sqlserver' ? `${String(db)}.${String(sch)}.${String(table)}`
    : `${String(sch ?? db ?? '')}.${String(table ?? '')}`;
  lastTable = { connector, db, schema: sch, table, name };
  return name;
}

/**
 * Decodes a Debezium message written by the JSON converter, with or without schemas.
 * Returns `null` for a tombstone (null value after a delete), which carries no new information.
 * Throws {@link Rejection} for anything that is not a Debezium change event.
 */
export function decodeDebeziumJson(key: Buffer | null, value: Buffer | null): ChangeEvent | null {
  if (value === null || value.length === 0) return null;
  const { payload, schema } = parseEnvelopeJson(value, 'value');
  let keyRow: Row | null = null;
  if (key && key.length) {
    const k = parseEnvelopeJson(key, 'key');
    keyRow = decodeRow(k.payload, k.schema, 'key');
  }
  return changeFromEnvelope(payload, schema, keyRow);
}

function parseEnvelopeJson(buf: Buffer, what: string): { payload: unknown; schema: FieldSchema | undefined } {
  return parseSchemaPayload(buf) ?? unwrap(parseJson(buf.toString('utf8'), what));
}
