import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { localServer, type LocalHttpOptions } from './http-serve.js';
import type { AddressInfo } from 'node:net';
import avro from 'avsc';

/**
 * A single-process server for the Confluent Schema Registry REST contract (Avro only), for tests and
 * the local demo where no registry can be installed. It keeps schemas in memory and implements the
 * endpoints Cellar and @kafkajs/confluent-schema-registry call, with the documented shapes:
 * content type `application/vnd.schemaregistry.v1+json`, errors `{error_code, message}` (40401 subject
 * not found, 40402 version not found, 40403 schema not found, 40408 subject config not found,
 * 409 incompatible, 42201 invalid schema). Compatibility checks use Avro schema resolution (avsc):
 * BACKWARD means the new schema can read data written with the previous one.
 * Production deployments use a real Schema Registry (infra/compose).
 */
export interface LocalSchemaRegistry {
  url: string;
  close(): Promise<void>;
}

type Level = 'NONE' | 'BACKWARD' | 'FORWARD' | 'FULL' | 'BACKWARD_TRANSITIVE' | 'FORWARD_TRANSITIVE' | 'FULL_TRANSITIVE';
const LEVELS = new Set<Level>(['NONE', 'BACKWARD', 'FORWARD', 'FULL', 'BACKWARD_TRANSITIVE', 'FORWARD_TRANSITIVE', 'FULL_TRANSITIVE']);

class HttpError extends Error {
  constructor(readonly status: number, readonly errorCode: number, message: string) {
    super(message);
  }
}

interface Stored { id: number; text: string; type: avro.Type }

/** The registry's state and rules, independent of HTTP. */
class Registry {
  private nextId = 1;
  readonly byId = new Map<number, Stored>();
  private readonly byCanonical = new Map<string, Stored>();
  readonly subjects = new Map<string, number[]>();
  readonly subjectLevel = new Map<string, Level>();
  globalLevel: Level = 'BACKWARD';

  parse(text: unknown): { text: string; type: avro.Type; canonical: string } {
    if (typeof text !== 'string') throw new HttpError(422, 42201, 'Invalid schema: "schema" must be a string');
    try {
      const type = avro.Type.forSchema(JSON.parse(text));
      return { text, type, canonical: JSON.stringify(type.schema()) };
    } catch (err) {
      throw new HttpError(422, 42201, `Invalid schema: ${(err as Error).message}`);
    }
  }

  versions(subject: string): number[] {
    const v = this.subjects.get(subject);
    if (!v || v.length === 0) throw new HttpError(404, 40401, `Subject '${subject}' not found.`);
    return v;
  }

  version(subject: string, version: string): { version: number; schema: Stored } {
    const ids = this.versions(subject);
    const n = version === 'latest' || version === '-1' ? ids.length : Number(version);
    if (!Number.isInteger(n) || n < 1 || n > ids.length) throw new HttpError(404, 40402, `Version ${version} not found.`);
    return { version: n, schema: this.byId.get(ids[n - 1]!)! };
  }

  compatible(subject: string, candidate: avro.Type, against?: Stored[]): boolean {
    const level = this.subjectLevel.get(subject) ?? this.globalLevel;
    if (level === 'NONE') return true;
    const ids = this.subjects.get(subject) ?? [];
    const previous = against ?? (level.endsWith('TRANSITIVE') ? ids : ids.slice(-1)).map((id) => this.byId.get(id)!);
    const readsOld = (old: avro.Type) => canResolve(candidate, old);
    const oldReads = (old: avro.Type) => canResolve(old, candidate);
    return previous.every(({ type }) =>
      level.startsWith('BACKWARD') ? readsOld(type) : level.startsWith('FORWARD') ? oldReads(type) : readsOld(type) && oldReads(type),
    );
  }

  register(subject: string, text: unknown): number {
    const parsed = this.parse(text);
    const existing = this.byCanonical.get(parsed.canonical);
    const ids = this.subjects.get(subject) ?? [];
    if (existing && ids.includes(existing.id)) return existing.id;
    if (!this.compatible(subject, parsed.type)) {
      throw new HttpError(409, 409, `Schema being registered is incompatible with an earlier schema for subject "${subject}"`);
    }
    const stored = existing ?? { id: this.nextId++, text: parsed.text, type: parsed.type };
    this.byId.set(stored.id, stored);
    this.byCanonical.set(parsed.canonical, stored);
    this.subjects.set(subject, [...ids, stored.id]);
    return stored.id;
  }
}

function canResolve(reader: avro.Type, writer: avro.Type): boolean {
  try {
    reader.createResolver(writer);
    return true;
  } catch {
    return false;
  }
}

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new HttpError(400, 400, 'Unrecognized request body: not JSON');
  }
}

function level(v: unknown): Level {
  const l = String(v ?? '').toUpperCase() as Level;
  if (!LEVELS.has(l)) throw new HttpError(422, 42203, `Invalid compatibility level: ${String(v)}`);
  return l;
}

async function route(reg: Registry, req: IncomingMessage): Promise<unknown> {
  const url = new URL(req.url ?? '/', 'http://x');
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const m = req.method ?? 'GET';
  const [a, b, c, d] = parts;
  if (a === 'subjects' && parts.length === 1 && m === 'GET') return [...reg.subjects.keys()];
  if (a === 'subjects' && b && parts.length === 2 && m === 'POST') {
    const parsed = reg.parse((await body(req)).schema);
    const ids = reg.versions(b);
    const idx = ids.findIndex((id) => JSON.stringify(reg.byId.get(id)!.type.schema()) === parsed.canonical);
    if (idx < 0) throw new HttpError(404, 40403, 'Schema not found');
    const s = reg.byId.get(ids[idx]!)!;
    return { subject: b, version: idx + 1, id: s.id, schema: s.text };
  }
  if (a === 'subjects' && b && c === 'versions' && parts.length === 3) {
    if (m === 'GET') return reg.versions(b).map((_, i) => i + 1);
    if (m === 'POST') return { id: reg.register(b, (await body(req)).schema) };
  }
  if (a === 'subjects' && b && c === 'versions' && d && parts.length === 4 && m === 'GET') {
    const { version, schema } = reg.version(b, d);
    return { subject: b, version, id: schema.id, schema: schema.text };
  }
  if (a === 'schemas' && b === 'ids' && c && m === 'GET') {
    const s = reg.byId.get(Number(c));
    if (!s) throw new HttpError(404, 40403, 'Schema not found');
    return { schema: s.text };
  }
  if (a === 'config' && parts.length === 1) {
    if (m === 'GET') return { compatibilityLevel: reg.globalLevel };
    if (m === 'PUT') return { compatibility: (reg.globalLevel = level((await body(req)).compatibility)) };
  }
  if (a === 'config' && b && parts.length === 2) {
    if (m === 'GET') {
      const l = reg.subjectLevel.get(b);
      if (!l) throw new HttpError(404, 40408, `Subject '${b}' does not have subject-level compatibility configured`);
      return { compatibilityLevel: l };
    }
    if (m === 'PUT') {
      const l = level((await body(req)).compatibility);
      reg.subjectLevel.set(b, l);
      return { compatibility: l };
    }
  }
  if (a === 'compatibility' && b === 'subjects' && c && d === 'versions' && parts[4] && m === 'POST') {
    const parsed = reg.parse((await body(req)).schema);
    reg.versions(c); // 404 40401 for an unknown subject, as the registry answers
    const against = parts[4] === 'latest' ? undefined : [reg.version(c, parts[4]).schema];
    return { is_compatible: reg.compatible(c, parsed.type, against) };
  }
  throw new HttpError(404, 404, `HTTP ${m} ${url.pathname} not found`);
}

/** Starts the server on 127.0.0.1 (port 0 = any free port); with `o`, over HTTPS and/or behind basic auth. */
export async function startLocalSchemaRegistry(port = 0, o: LocalHttpOptions = {}): Promise<LocalSchemaRegistry> {
  const reg = new Registry();
  const server: Server = localServer((req, res: ServerResponse) => {
    route(reg, req).then(
      (out) => send(res, 200, out),
      (err: unknown) =>
        err instanceof HttpError
          ? send(res, err.status, { error_code: err.errorCode, message: err.message })
          : send(res, 500, { error_code: 50001, message: (err as Error).message }),
    );
  }, o);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `${o.tls ? 'https' : 'http'}://127.0.0.1:${bound}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  res.writeHead(status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
  res.end(JSON.stringify(payload));
}
