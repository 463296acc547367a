import avro from 'avsc';
import { httpEndpoint, type HttpEndpoint } from '../../schemas/endpoint.js';
import axios from 'axios';
import { CellarError } from '../core/errors.js';
import { readSchemaId } from '../../schemas/registry.js';
import { compileRecordReader, type CompiledReader, type FieldConversion, type RecordPlan } from './avro-reader.js';
import { bytesToBigInt, type Decimal } from './decimal.js';
import { changeFromEnvelope, decodeDebeziumJson, timeToMs, type ChangeEvent, type Row } from './debezium.js';
import { Rejection } from './reasons.js';

type AvroSchema = Record<string, unknown>;

/** How to turn one Avro field value into Cellar's row value (decimals exact, times in ms). */
type Converter = (v: unknown) => unknown;

function unionBranch(t: unknown): unknown {
  if (Array.isArray(t)) return t.find((b) => b !== 'null');
  return t;
}

/** Named types of a schema by full name (and short name), so references like `"Value"` resolve. */
function namedTypes(schema: unknown, ns = '', out = new Map<string, AvroSchema>()): Map<string, AvroSchema> {
  if (Array.isArray(schema)) {
    for (const b of schema) namedTypes(b, ns, out);
    return out;
  }
  if (!schema || typeof schema !== 'object') return out;
  const s = schema as AvroSchema;
  const space = typeof s.namespace === 'string' ? s.namespace : ns;
  if (typeof s.name === 'string' && (s.type === 'record' || s.type === 'enum' || s.type === 'fixed')) {
    const full = s.name.includes('.') ? s.name : space ? `${space}.${s.name}` : s.name;
    out.set(full, s);
    if (!out.has(s.name)) out.set(s.name, s);
  }
  for (const f of (s.fields as Array<{ type: unknown }> | undefined) ?? []) namedTypes(f.type, space, out);
  if (s.items) namedTypes(s.items, space, out);
  if (s.values) namedTypes(s.values, space, out);
  return out;
}

function resolve(t: unknown, names: Map<string, AvroSchema>, ns: string): unknown {
  const b = unionBranch(t);
  return typeof b === 'string' ? (names.get(b) ?? names.get(`${ns}.${b}`) ?? b) : b;
}

function fieldConversion(type: unknown): FieldConversion | undefined {
  const t = type;
  if (!t || typeof t !== 'object') return undefined;
  const s = t as AvroSchema;
  const connectName = (s['connect.name'] as string | undefined) ?? undefined;
  if (s.logicalType === 'decimal' || connectName === 'org.apache.kafka.connect.data.Decimal') {
    const params = s['connect.parameters'] as Record<string, string> | undefined;
    return { kind: 'decimal', scale: Number(s.scale ?? params?.scale ?? 0) };
  }
  if (connectName === 'io.debezium.data.VariableScaleDecimal') {
    return {
      kind: 'convert',
      convert: (v) => {
        const r = v as { scale?: number; value?: Buffer } | null;
        return r && Buffer.isBuffer(r.value) ? ({ unscaled: bytesToBigInt(r.value), scale: Number(r.scale ?? 0) } satisfies Decimal) : v;
      },
    };
  }
  if (connectName) return { kind: 'convert', convert: (v) => timeToMs(connectName, typeof v === 'bigint' ? Number(v) : v) ?? v };
  return undefined;
}

/** The conversion as a function of an avsc-decoded value (bytes arrive as a Buffer). */
function converterOf(c: FieldConversion): Converter {
  if (c.kind === 'convert') return c.convert;
  const scale = c.scale;
  return (v) => (Buffer.isBuffer(v) ? ({ unscaled: bytesToBigInt(v), scale } satisfies Decimal) : v);
}

/** `source` fields Cellar reads (versions, table names, timestamps); the others are skipped when decoding. */
const SOURCE_FIELDS = new Set(['connector', 'ts_ms', 'db', 'schema', 'table', 'collection', 'lsn', 'file', 'pos', 'row', 'change_lsn', 'commit_lsn', 'event_serial_no', 'ord', 'version', 'line', 'snapshot']);

/**
 * The writer's envelope schema with named types inlined and its `source` record reduced to
 * {@link SOURCE_FIELDS}, so avsc's resolver skips the rest without allocating.
 */
function leanEnvelope(schema: AvroSchema, names: Map<string, AvroSchema>): AvroSchema {
  const fields = (schema.fields as Array<{ name: string; type: unknown }>).map((f) => {
    if (f.name !== 'source') return f;
    const src = (typeof f.type === 'string' ? names.get(f.type) : f.type) as AvroSchema;
    return { ...f, type: { ...src, fields: (src.fields as Array<{ name: string }>).filter((x) => SOURCE_FIELDS.has(x.name)) } };
  });
  return { ...schema, fields };
}

/** Per writer schema: which fields of `before`/`after` (and the key) need converting, and how. */
function rowConversions(record: unknown, names: Map<string, AvroSchema>, ns: string): Map<string, FieldConversion> {
  const out = new Map<string, FieldConversion>();
  const r = resolve(record, names, ns) as AvroSchema | undefined;
  for (const f of (r?.fields as Array<{ name: string; type: unknown }> | undefined) ?? []) {
    const c = fieldConversion(resolve(f.type, names, ns));
    if (c) out.set(f.name, c);
  }
  return out;
}

function rowConverters(conversions: Map<string, FieldConversion>): Array<[string, Converter]> {
  return [...conversions].map(([name, c]) => [name, converterOf(c)]);
}

/** Converts logical-type fields in place (the row was just decoded and is ours). */
function convertRow(row: unknown, conv: Array<[string, Converter]> | undefined): Row | null {
  if (row === null || row === undefined) return null;
  const out = row as Row;
  if (conv) {
    for (let i = 0; i < conv.length; i++) {
      const [k, c] = conv[i]!;
      const v = out[k];
      if (v !== null && v !== undefined) out[k] = c(v);
    }
  }
  return out;
}

interface Writer {
  type: avro.Type;
  /**
   * The compiled reader of this writer schema as a change's value (an envelope: conversions done while
   * reading, unused `source` fields skipped), and as a message key (a row: its conversions done). Absent
   * when the schema is not one or uses what the reader does not handle: then avsc decodes.
   */
  read?: CompiledReader;
  readKey?: CompiledReader;
  /** Reads the writer's bytes into a leaner reader schema (unused `source` fields skipped). */
  resolver?: ReturnType<avro.Type['createResolver']>;
  reader?: avro.Type;
  before?: Array<[string, Converter]>;
  after?: Array<[string, Converter]>;
  row?: Array<[string, Converter]>;
}

/**
 * Decodes Debezium events written by the Avro converter (Confluent wire format, schemas in the
 * Schema Registry). Writer schemas are fetched once per id; DECIMAL bytes become exact decimals with
 * the schema's scale, time types become epoch ms, exactly as for the JSON converter.
 */
export class DebeziumAvroDecoder {
  private readonly writers = new Map<number, Promise<Writer>>();
  private readonly ready = new Map<number, Writer>();

  private readonly registry: HttpEndpoint;

  /** `registryUrl`: the Schema Registry the Debezium Avro converter writes to (credentials and TLS files as {@link httpEndpoint} reads them). */
  constructor(registryUrl: string) {
    this.registry = httpEndpoint(registryUrl, 'CELLAR_SCHEMA_REGISTRY_URL');
  }

  private writer(id: number): Promise<Writer> {
    let w = this.writers.get(id);
    if (!w) {
      w = this.load(id);
      this.writers.set(id, w);
      w.then((x) => this.ready.set(id, x)).catch(() => this.writers.delete(id));
    }
    return w;
  }

  private async load(id: number): Promise<Writer> {
    let schema: AvroSchema;
    try {
      const { url, auth, agent } = this.registry;
      const res = await axios.get<{ schema: string }>(`${url}/schemas/ids/${id}`, { timeout: 10_000, ...(auth ? { auth } : {}), ...(agent ? { httpsAgent: agent } : {}) });
      schema = JSON.parse(res.data.schema) as AvroSchema;
    } catch (err) {
      const status = axios.isAxiosError(err) ? err.response?.status : undefined;
      if (status === 404) throw new Rejection('avro_decode', `schema id ${id} is not in the Schema Registry`);
      throw new CellarError('schema_registry', `fetching writer schema ${id}: ${(err as Error).message}`, {
        retriable: status === undefined || status >= 500,
        cause: err,
      });
    }
    const type = avro.Type.forSchema(schema as avro.Schema, { wrapUnions: 'auto' });
    const fields = (schema.fields as Array<{ name: string; type: unknown }> | undefined) ?? [];
    const f = (n: string) => fields.find((x) => x.name === n)?.type;
    const names = namedTypes(schema);
    const ns = typeof schema.namespace === 'string' ? schema.namespace : '';
    if (!fields.some((x) => x.name === 'op')) {
      const row = rowConversions(schema, names, ns);
      return { type, row: rowConverters(row), readKey: compileRecordReader(type, { convert: row }) };
    }
    const before = rowConversions(f('before'), names, ns);
    const after = rowConversions(f('after'), names, ns);
    const plan: RecordPlan = { nested: new Map([['before', { convert: before }], ['after', { convert: after }], ['source', { keep: SOURCE_FIELDS }]]) };
    const read = compileRecordReader(type, plan);
    if (read) return { type, read };
    const lean = leanEnvelope(schema, names);
    let reader: avro.Type | undefined;
    let resolver: Writer['resolver'];
    try {
      reader = avro.Type.forSchema(lean as avro.Schema, { wrapUnions: 'auto' });
      resolver = reader.createResolver(type);
    } catch {
      reader = undefined; // fall back to the full writer schema
    }
    return { type, reader, resolver, before: rowConverters(before), after: rowConverters(after) };
  }

  /** Decodes a message body (after the 5-byte header) with `read`, else with avsc (conversions then are the caller's). */
  private decodeWith(w: Writer, buf: Buffer, id: number, read: CompiledReader | undefined): unknown {
    try {
      if (read) return read(buf, 5);
      const r = w.reader && w.resolver ? w.reader.decode(buf, 5, w.resolver) : w.type.decode(buf, 5);
      if (r.offset !== buf.length) throw new Error(r.offset < 0 ? 'truncated payload' : `${buf.length - r.offset} trailing bytes`);
      return r.value;
    } catch (err) {
      throw new Rejection('avro_decode', `Avro payload does not match schema id ${id}: ${(err as Error).message}`);
    }
  }

  /**
   * Decodes one message; null for a tombstone. Synchronous when the writer schemas are already known,
   * a promise when one must be fetched. Throws Rejection for bad input, and a retriable CellarError when
   * the registry cannot be reached.
   */
  decode(key: Buffer | null, value: Buffer | null): ChangeEvent | null | Promise<ChangeEvent | null> {
    if (value === null || value.length === 0) return null;
    const keyId = key && key.length > 5 && key[0] === 0 ? readSchemaId(key) : undefined;
    const valueId = readSchemaId(value);
    const kw = keyId === undefined ? undefined : this.ready.get(keyId);
    const vw = this.ready.get(valueId);
    if ((keyId === undefined || kw) && vw) return this.assemble(key, kw, keyId, value, vw, valueId);
    return (async () => {
      const k = keyId === undefined ? undefined : await this.writer(keyId);
      return this.assemble(key, k, keyId, value, await this.writer(valueId), valueId);
    })();
  }

  private assemble(key: Buffer | null, kw: Writer | undefined, keyId: number | undefined, value: Buffer, vw: Writer, valueId: number): ChangeEvent {
    let keyRow: Row | null = null;
    if (kw && key) keyRow = kw.readKey ? (this.decodeWith(kw, key, keyId!, kw.readKey) as Row) : convertRow(this.decodeWith(kw, key, keyId!, undefined), kw.row);
    const e = this.decodeWith(vw, value, valueId, vw.read) as Record<string, unknown>;
    if (!vw.read) {
      e.before = convertRow(e.before, vw.before);
      e.after = convertRow(e.after, vw.after);
    }
    return changeFromEnvelope(e, undefined, keyRow);
  }
}

/** True when a message value is in the Confluent wire format (magic byte 0), i.e. not JSON. */
export function isWireFormat(value: Buffer | null): boolean {
  return value !== null && value.length > 5 && value[0] === 0;
}

/**
 * Decodes a raw Debezium message from either converter: Avro (wire format) through the registry when a
 * decoder is given, JSON otherwise.
 */
export function decodeRawChange(
  key: Buffer | null,
  value: Buffer | null,
  avroDecoder?: DebeziumAvroDecoder,
): ChangeEvent | null | Promise<ChangeEvent | null> {
  if (isWireFormat(value)) {
    if (!avroDecoder) throw new Rejection('avro_decode', 'Avro message but no Schema Registry configured for raw topics');
    return avroDecoder.decode(key, value);
  }
  return decodeDebeziumJson(key && key.length && key[0] === 0 ? null : key, value);
}
