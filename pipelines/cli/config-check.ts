import { createSecureContext } from 'node:tls';
import pg from 'pg';
import axios from 'axios';
import { RUNTIME_ENV, type RuntimeConfig } from '../core/config.js';
import { SECRET_SETTINGS } from '../core/connectivity.js';
import { pgConfig, readPem } from '../core/pg-tls.js';
import { pingRedis } from '../core/redis.js';
import { scrubSecrets } from '../core/secrets.js';
import { createKafka } from '../kafka/client.js';
import type { Logger } from '../core/logger.js';
import { httpEndpoint } from '../../schemas/endpoint.js';

/** What stopped a connection, as an operator fixes it. */
export type FailureKind = 'dns' | 'tcp' | 'timeout' | 'tls-verification' | 'tls' | 'authentication' | 'file' | 'other';

/** One service checked: where, whether it answered, and if not what failed and which variable to look at. */
export interface ConnectionCheck {
  service: string;
  /** Where, without credentials. */
  at: string;
  ok: boolean;
  kind?: FailureKind;
  /** What failed, scrubbed of secrets. */
  message?: string;
  /** The variables that set this connection: where it goes, how it is trusted, who it is. */
  variables: Vars;
}

/** A connection's variables by what they decide. */
export interface Vars {
  where: string[];
  tls: string[];
  auth: string[];
}

/** The variables to look at for a failure of `kind`. */
export function variablesFor(kind: FailureKind, v: Vars): string[] {
  if (kind === 'dns' || kind === 'tcp' || kind === 'timeout') return v.where;
  if (kind === 'authentication') return [...v.auth, ...v.where];
  if (kind === 'tls-verification' || kind === 'tls' || kind === 'file') return [...v.tls, ...v.where];
  return [...v.where, ...v.tls, ...v.auth];
}

const TLS_VERIFY = /CERT|certificate|self[- ]signed|UNABLE_TO_(VERIFY|GET)|Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID|altnames/i;
const SERVER_REFUSED = /requires a valid client certificate|certificate authentication failed|password authentication failed|WRONGPASS|NOAUTH|SASL \w+ authentication failed|\b28P01\b|\b28000\b/i;
const AUTH = /password authentication failed|authentication failed|WRONGPASS|NOAUTH|invalid username|SASL|Authentication|28P01|28000|no pg_hba.conf entry|\b401\b|\b403\b|Unauthorized|Forbidden|access denied/i;

/** Sorts a connection error into what an operator fixes: name resolution, the port, trust, credentials, a file. */
export function classifyFailure(err: unknown): { kind: FailureKind; message: string } {
  const e = err as { code?: string; message?: string; cause?: unknown };
  const chain: Array<{ code?: string; message?: string }> = [];
  // kafkajs keeps the socket's error in `originalError`, Node and Cellar in `cause`.
  for (let x: unknown = e, i = 0; x && i < 6; x = (x as { cause?: unknown; originalError?: unknown }).cause ?? (x as { originalError?: unknown }).originalError, i++) chain.push(x as { code?: string; message?: string });
  const codes = chain.map((c) => c.code ?? '').join(' ');
  const text = chain.map((c) => `${c.code ?? ''} ${c.message ?? ''}`).join(' | ');
  const message = scrubSecrets(e.message ?? String(err));
  if (/ENOTFOUND|EAI_AGAIN/.test(codes + text)) return { kind: 'dns', message };
  if (/cannot read .*\((ENOENT|EACCES|EISDIR)\)/.test(text)) return { kind: 'file', message };
  if (/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH/.test(codes + text)) return { kind: 'tcp', message };
  // The server refusing who we are (its words mention certificates too): before the checks of our trust in it.
  if (SERVER_REFUSED.test(text)) return { kind: 'authentication', message };
  if (TLS_VERIFY.test(text)) return { kind: 'tls-verification', message };
  if (/ssl|tls|EPROTO|wrong version number|handshake|socket disconnected before secure/i.test(text) && !AUTH.test(text)) return { kind: 'tls', message };
  if (AUTH.test(text)) return { kind: 'authentication', message };
  if (/timeout|timed out|ETIMEDOUT|ECONNABORTED/i.test(codes + text)) return { kind: 'timeout', message };
  return { kind: 'other', message };
}

/** What to do about each kind of failure, for the line under it. */
export const FAILURE_HINT: Record<FailureKind, string> = {
  dns: 'the host name does not resolve: check the host in',
  tcp: 'nothing accepts connections there: check the host and port in',
  timeout: 'no answer in time: a firewall, or the wrong port; check',
  'tls-verification': 'the server\'s certificate is not trusted (wrong CA, or issued to another name): check the CA file and host in',
  tls: 'the TLS handshake failed (TLS on one side only, or a wrong port): check',
  authentication: 'the server refused the credentials: check the user and password (or client certificate) in',
  file: 'a certificate or key file cannot be read: check the path in',
  other: 'check',
};

const CHECK_TIMEOUT_MS = 8_000;

async function attempt(service: string, at: string, variables: Vars, fn: () => Promise<void>): Promise<ConnectionCheck> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([fn(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${CHECK_TIMEOUT_MS / 1000} s`), { code: 'ETIMEDOUT' })), CHECK_TIMEOUT_MS)))]);
    return { service, at, ok: true, variables };
  } catch (err) {
    return { service, at, ok: false, variables, ...classifyFailure(err) };
  } finally {
    clearTimeout(timer);
  }
}

/** Connects to a Postgres URL (its TLS parameters as libpq reads them) and runs `SELECT 1`. */
async function pgSelectOne(url: string): Promise<void> {
  const c = new pg.Client(pgConfig(url, { connectionTimeoutMillis: CHECK_TIMEOUT_MS, application_name: 'cellar-config-check' }));
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.query('SELECT 1');
  } finally {
    await c.end().catch(() => undefined);
  }
}

const hostOf = (url: string) => {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return '(unparseable URL)';
  }
};

/** Which services `cellar config check` tests by default, and their names for `--only`/`--skip`. */
export const SERVICES = ['postgres', 'redis', 'kafka', 'schema-registry', 'connect', 'api-tls', 'suppliers'] as const;
export type ServiceName = (typeof SERVICES)[number];

/** Tests each connection Cellar's settings describe, in parallel; never throws (a failure is a result). */
export async function checkConnections(cfg: RuntimeConfig, log: Logger, only: ReadonlySet<ServiceName>): Promise<ConnectionCheck[]> {
  const E = RUNTIME_ENV;
  const jobs: Array<Promise<ConnectionCheck>> = [];
  if (only.has('postgres')) {
    jobs.push(attempt('Postgres (Cellar\'s)', hostOf(cfg.pgUrl), { where: [E.pgUrl], tls: [E.pgSslMode, E.pgSslCaFile], auth: [E.pgSslCertFile, E.pgSslKeyFile] }, () => pgSelectOne(cfg.pgUrl)));
  }
  if (only.has('redis')) {
    jobs.push(attempt('Redis', hostOf(cfg.redisUrl), { where: [E.redisUrl], tls: [E.redisTlsCaFile], auth: [E.redisUsername, E.redisPassword, E.redisTlsCertFile] }, () => pingRedis(cfg.redisUrl, CHECK_TIMEOUT_MS)));
  }
  if (only.has('kafka')) {
    jobs.push(attempt('Kafka', cfg.kafkaBrokers.join(','), { where: [E.kafkaBrokers], tls: [E.kafkaTls, E.kafkaTlsCaFile, E.kafkaTlsServername], auth: [E.kafkaSaslMechanism, E.kafkaSaslUsername, E.kafkaSaslPassword, E.kafkaTlsCertFile] }, async () => {
      const admin = createKafka(cfg, log, 'config-check').admin();
      try {
        await admin.connect();
        await admin.describeCluster();
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    }));
  }
  const http = (service: string, url: string, setting: string, path: string, variables: Vars) =>
    attempt(service, hostOf(url), variables, async () => {
      const e = httpEndpoint(url, setting);
      const res = await axios.get(`${e.url}${path}`, { timeout: CHECK_TIMEOUT_MS, validateStatus: () => true, ...(e.auth ? { auth: e.auth } : {}), ...(e.agent ? { httpsAgent: e.agent } : {}) });
      if (res.status === 401 || res.status === 403) throw new Error(`answered ${res.status} ${res.status === 401 ? 'Unauthorized' : 'Forbidden'}`);
      if (res.status >= 400) throw new Error(`answered ${res.status} to GET ${path}`);
    });
  if (only.has('schema-registry')) jobs.push(http('Schema Registry', cfg.schemaRegistryUrl, E.schemaRegistryUrl, '/subjects', { where: [E.schemaRegistryUrl], tls: [E.schemaRegistryCaFile], auth: [E.schemaRegistryUsername, E.schemaRegistryPassword, E.schemaRegistryCertFile] }));
  if (only.has('connect') && cfg.connectUrl) jobs.push(http('Kafka Connect', cfg.connectUrl, E.connectUrl, '/', { where: [E.connectUrl], tls: [E.connectCaFile], auth: [E.connectUsername, E.connectPassword, E.connectCertFile] }));
  if (only.has('api-tls') && cfg.apiTlsCertFile && cfg.apiTlsKeyFile) {
    jobs.push(attempt('read API certificate', cfg.apiTlsCertFile, { where: [], tls: [E.apiTlsCertFile, E.apiTlsKeyFile], auth: [] }, async () => {
      // A certificate and a key that do not belong together fail here, not at the first client.
      createSecureContext({ cert: readPem(cfg.apiTlsCertFile!, E.apiTlsCertFile), key: readPem(cfg.apiTlsKeyFile!, E.apiTlsKeyFile) });
    }));
  }
  if (only.has('suppliers')) jobs.push(...(await supplierChecks(cfg)));
  return Promise.all(jobs);
}

/**
 * The databases of the suppliers Cellar reads natively (CELLAR_SUPPLIERS_DIR): each is connected to as its
 * reader would (TLS from its `connection.options`, password from its `${ENV}` or file). A registry that
 * cannot be read is one failure naming the folder.
 */
async function supplierChecks(cfg: RuntimeConfig): Promise<Array<Promise<ConnectionCheck>>> {
  const [{ loadRegistry }, { mysqlUrl, postgresUrl }, { mysqlConnection }, mysql] = await Promise.all([
    import('../../connectors/registry/loader.js'), import('../../connectors/registry/connection.js'), import('../../connectors/mysql-cdc/config.js'), import('mysql2/promise'),
  ]);
  let suppliers;
  try {
    suppliers = loadRegistry(cfg.suppliersDir);
  } catch (err) {
    return [Promise.resolve({ service: 'supplier registry', at: cfg.suppliersDir, ok: false, kind: 'file' as const, message: scrubSecrets((err as Error).message), variables: { where: [RUNTIME_ENV.suppliersDir], tls: [], auth: [] } })];
  }
  return suppliers.filter((s) => s.source.connection && ['postgres', 'mysql', 'mariadb'].includes(s.source.kind)).map((s) => {
    const vars: Vars = { where: [`${s.file}: source.connection`], tls: [`${s.file}: source.connection.options`], auth: [`${s.file}: source.connection.user, password`] };
    const at = `${s.source.kind}://${s.source.connection!.host}:${s.source.connection!.port ?? (s.source.kind === 'postgres' ? 5432 : 3306)}`;
    return attempt(`supplier ${s.id}`, at, vars, async () => {
      if (s.source.kind === 'postgres') await pgSelectOne(postgresUrl(s));
      else {
        const c = await mysql.createConnection({ ...mysqlConnection(mysqlUrl(s)), connectTimeout: CHECK_TIMEOUT_MS });
        await c.query('SELECT 1').finally(() => c.end().catch(() => undefined));
      }
    });
  });
}

/** The effective settings as `NAME=value` lines, secrets masked (`***`, and any password in a URL). */
export function effectiveSettings(cfg: RuntimeConfig): string[] {
  const out: string[] = [];
  for (const [key, name] of Object.entries(RUNTIME_ENV) as Array<[keyof RuntimeConfig, string]>) {
    const v = cfg[key];
    if (v === undefined) continue;
    const text = Array.isArray(v) ? v.join(',') : String(v);
    out.push(`${name}=${SECRET_SETTINGS.has(key) ? '***' : scrubSecrets(text)}`);
  }
  return out;
}
