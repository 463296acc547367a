import { readFileSync } from 'node:fs';
import { httpEndpoint } from './endpoint.js';
import { SchemaRegistry, SchemaType, COMPATIBILITY } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import { CellarError } from '../pipelines/core/errors.js';
import { redactUrl } from '../pipelines/core/logger.js';
import { assetPath } from '../pipelines/core/paths.js';
import type { DeadLetter, RegionalStock, StockEventRecord, StockObservation } from './records.js';

/** The canonical schemas Cellar registers, by record name. */
export const CANONICAL = {
  StockObservation: 'stock-observation.avsc',
  RegionalStock: 'regional-stock.avsc',
  DeadLetter: 'dead-letter.avsc',
  StockEvent: 'stock-event.avsc',
} as const;
export type CanonicalName = keyof typeof CANONICAL;

/** Reads a canonical schema's JSON text from schemas/avro. */
export function canonicalSchemaText(name: CanonicalName): string {
  return readFileSync(assetPath('schemas', 'avro', CANONICAL[name]), 'utf8');
}

/** Parses a canonical schema into an avsc Type. */
export function canonicalType(name: CanonicalName): avro.Type {
  return avro.Type.forSchema(JSON.parse(canonicalSchemaText(name)));
}

type Resolver = ReturnType<avro.Type['createResolver']>;

const MAGIC = 0;

/** Confluent wire format: magic byte 0, schema id (int32 BE), Avro binary payload. */
export function readSchemaId(buf: Buffer): number {
  if (buf.length < 5 || buf[0] !== MAGIC) {
    throw new CellarError('wire_format', `not Confluent Avro wire format (first byte ${buf[0] ?? 'none'}, ${buf.length} bytes)`);
  }
  return buf.readInt32BE(1);
}

function isUnavailable(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|socket hang up|status 5\d\d|503|502|500/.test(msg);
}

/**
 * The registry client's error in an operator's words: it reports a connection it could not make as
 * `status 400: connect ECONNREFUSED`, which reads like a rejected schema.
 */
function registryProblem(err: unknown, where: string | undefined): string {
  const msg = err instanceof Error ? err.message : String(err);
  const net = /(ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|socket hang up)[^,;]*/.exec(msg);
  const at = where ? ` at ${where}` : '';
  return net ? `the Schema Registry${at} does not answer (${net[0].trim()}; CELLAR_SCHEMA_REGISTRY_URL)` : `${msg}${at ? ` (Schema Registry${at})` : ''}`;
}

/**
 * Encodes and decodes one canonical record type through the Schema Registry wire format.
 * The writer schema is registered once (subject `<topic>-value`, BACKWARD compatibility); decoding
 * resolves any registered writer schema to the current reader schema, so records written with an older
 * or newer compatible schema still decode (missing optional fields take their defaults).
 */
export class AvroCodec<T> {
  private readonly writerIds = new Map<string, number>();
  private readonly resolvers = new Map<number, Resolver | avro.Type>();

  constructor(
    private readonly registry: SchemaRegistry,
    private readonly type: avro.Type,
    private readonly schemaText: string,
    /** The registry's address, credentials removed, for error messages. */
    private readonly where?: string,
  ) {}

  /** Registers the schema under `subject` (idempotent) and remembers its id. */
  async register(subject: string): Promise<number> {
    const known = this.writerIds.get(subject);
    if (known !== undefined) return known;
    try {
      const { id } = await this.registry.register(
        { type: SchemaType.AVRO, schema: this.schemaText },
        { subject, compatibility: COMPATIBILITY.BACKWARD },
      );
      this.writerIds.set(subject, id);
      this.resolvers.set(id, this.type);
      return id;
    } catch (err) {
      throw new CellarError('schema_registry', `registering schema for subject ${subject}: ${registryProblem(err, this.where)}`, {
        retriable: isUnavailable(err),
        cause: err,
      });
    }
  }

  /** Encodes `value` for `subject` (which must have been registered). */
  encode(subject: string, value: T): Buffer {
    const id = this.writerIds.get(subject);
    if (id === undefined) throw new Error(`AvroCodec: subject ${subject} not registered`);
    const body = this.type.toBuffer(value);
    const out = Buffer.allocUnsafe(5 + body.length);
    out[0] = MAGIC;
    out.writeInt32BE(id, 1);
    body.copy(out, 5);
    return out;
  }

  /** Decodes a wire-format buffer into the reader shape. Throws CellarError `wire_format`/`avro_decode`. */
  async decode(buf: Buffer): Promise<T> {
    const id = readSchemaId(buf);
    let reader = this.resolvers.get(id);
    if (!reader) {
      let writer: avro.Type;
      try {
        writer = (await this.registry.getSchema(id)) as unknown as avro.Type;
      } catch (err) {
        throw new CellarError('schema_registry', `fetching schema id ${id}: ${registryProblem(err, this.where)}`, {
          retriable: isUnavailable(err),
          cause: err,
        });
      }
      reader = this.type.equals(writer) ? this.type : this.type.createResolver(writer);
      this.resolvers.set(id, reader);
    }
    try {
      return (reader === this.type
        ? this.type.fromBuffer(buf.subarray(5))
        : this.type.fromBuffer(buf.subarray(5), reader as Resolver)) as T;
    } catch (err) {
      throw new CellarError('avro_decode', `decoding Avro (schema id ${id}): ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Codecs for the canonical records, sharing one registry client. */
export interface CanonicalCodecs {
  registry: SchemaRegistry;
  observation: AvroCodec<StockObservation>;
  regionalStock: AvroCodec<RegionalStock>;
  deadLetter: AvroCodec<DeadLetter>;
  stockEvent: AvroCodec<StockEventRecord>;
}

/** Creates the canonical codecs for a Schema Registry at `url` (basic auth from its credentials, TLS files from its parameters: {@link httpEndpoint}). */
export function createCodecs(url: string): CanonicalCodecs {
  const e = httpEndpoint(url, 'CELLAR_SCHEMA_REGISTRY_URL');
  const registry = new SchemaRegistry({ host: e.url, clientId: 'cellar', ...(e.auth ? { auth: e.auth } : {}), ...(e.agent ? { agent: e.agent } : {}) }, { [SchemaType.AVRO]: {} });
  const make = <T>(name: CanonicalName) => new AvroCodec<T>(registry, canonicalType(name), canonicalSchemaText(name), redactUrl(e.url));
  return {
    registry,
    observation: make<StockObservation>('StockObservation'),
    regionalStock: make<RegionalStock>('RegionalStock'),
    deadLetter: make<DeadLetter>('DeadLetter'),
    stockEvent: make<StockEventRecord>('StockEvent'),
  };
}

/** Subject of a topic's value schema (TopicNameStrategy). */
export function valueSubject(topic: string): string {
  return `${topic}-value`;
}
