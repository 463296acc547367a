import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseSpec } from './spec.js';
import { ConfigError } from './errors.js';
import { CONNECTIVITY_ENV, ConnectivitySpec, SECRET_SETTINGS } from './connectivity.js';
import { rememberSecret } from './secrets.js';
import { withHttpSettings } from '../../schemas/endpoint.js';

const csv = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
  .pipe(z.array(z.string()).min(1, 'at least one broker host:port'));

/** A 0/1 (true/false) setting with its default. */
const flag = (def: '0' | '1') =>
  z.enum(['0', '1', 'true', 'false'], { error: 'expected 1 or 0 (true or false)' }).default(def).transform((v) => v === '1' || v === 'true');
const int = (def: number, min = 0) => z.coerce.number({ error: 'expected a whole number' }).int('expected a whole number').min(min).default(def);

/**
 * Runtime configuration of every Cellar process, read from `CELLAR_*` environment variables.
 * Each field below documents its variable, default and purpose; `cellar --help-env` prints them.
 */
export const RuntimeConfigSpec = z.object({
  kafkaBrokers: csv.default(['127.0.0.1:9092']).describe(
    'CELLAR_KAFKA_BROKERS: comma-separated bootstrap servers. Default `127.0.0.1:9092`.',
  ),
  kafkaClientId: z.string().min(1).default('cellar').describe(
    'CELLAR_KAFKA_CLIENT_ID: client id sent to the brokers. Default `cellar`.',
  ),
  kafkaCompat: z.enum(['standard', 'librdkafka-mock']).default('standard').describe(
    'CELLAR_KAFKA_COMPAT: `standard` (real Kafka/Redpanda: idempotent producer, topics created through the admin API with compaction) or `librdkafka-mock` (the test broker: topics auto-created, no idempotence). Default `standard`.',
  ),
  kafkaSessionTimeoutMs: int(30_000, 3_000).describe(
    'CELLAR_KAFKA_SESSION_TIMEOUT_MS: consumer session timeout; a crashed worker\'s partitions move after this long. Default 30000.',
  ),
  kafkaStallMs: int(60_000, 1_000).describe(
    'CELLAR_KAFKA_STALL_MS: a worker whose partitions have lag but whose committed offsets do not move, while it does no work, for this long reports itself not ready and starts its consumer again. Default 60000.',
  ),
  kafkaPartitionsConcurrently: int(4, 1).describe(
    'CELLAR_KAFKA_PARTITIONS_CONCURRENTLY: batches of different partitions a Kafka-runtime worker handles at once (each partition stays in order), so one partition\'s round trips to Kafka and Postgres overlap another\'s. Default 4.',
  ),
  topicPrefix: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ -').default('cellar').describe(
    'CELLAR_TOPIC_PREFIX: prefix of Cellar\'s own topics (`<prefix>.observations` …). Default `cellar`.',
  ),
  groupPrefix: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ -').default('cellar').describe(
    'CELLAR_GROUP_PREFIX: prefix of consumer group ids (`<prefix>-normalizer` …). Default `cellar`.',
  ),
  topicPartitions: int(12, 1).describe(
    'CELLAR_TOPIC_PARTITIONS: partitions of topics Cellar creates on real clusters. Default 12.',
  ),
  topicReplication: z.coerce.number().int().min(-1).default(3).describe(
    'CELLAR_TOPIC_REPLICATION: replication factor of topics Cellar creates. Default 3 (-1 = broker default).',
  ),
  schemaRegistryUrl: z.string().url().default('http://127.0.0.1:8081').describe(
    'CELLAR_SCHEMA_REGISTRY_URL: Confluent Schema Registry base URL. Default `http://127.0.0.1:8081`.',
  ),
  pgUrl: z.string().regex(/^postgres(ql)?:\/\/[^\s]+$/, 'expected a postgres:// URL, e.g. postgres://user@host:5432/database').default('postgres://postgres@127.0.0.1:5432/postgres').describe(
    'CELLAR_PG_URL: Cellar\'s own Postgres (materialized tables, state). Default `postgres://postgres@127.0.0.1:5432/postgres`.',
  ),
  redisUrl: z.string().regex(/^rediss?:\/\/[^\s]*$/, 'expected a redis:// or rediss:// URL, e.g. redis://host:6379/0').default('redis://127.0.0.1:6379/0').describe(
    'CELLAR_REDIS_URL: Redis for stock snapshots. Default `redis://127.0.0.1:6379/0`.',
  ),
  redisTtlSeconds: int(0, 0).describe(
    'CELLAR_REDIS_TTL_SECONDS: expire each region\'s snapshot keys this long after their last write (0 = never). Default 0.',
  ),
  suppliersDir: z.string().min(1).default('suppliers').describe(
    'CELLAR_SUPPLIERS_DIR: folder of supplier registry YAML files. Default `./suppliers`.',
  ),
  httpPort: z.coerce.number().int().min(-1).max(65535).default(-1).describe(
    'CELLAR_HTTP_PORT: port of a worker\'s /metrics, /healthz and /readyz (0 = any free port, -1 = off). Default -1.',
  ),
  takeOver: flag('0').describe(
      'CELLAR_TAKE_OVER: `cellar run embedded`/`capture` take the single-writer lease from a live (or frozen) holder, ending its database session, instead of refusing to start (like --take-over). Default 0.',
    ),
  pgPreparedStatements: flag('1').describe(
      'CELLAR_PG_PREPARED_STATEMENTS: the embedded runtime sends each group\'s commit statement as a named prepared statement, parsed and planned once per connection (about a third of a small group\'s statement time). Set 0 behind a pooler that does not keep prepared statements across transactions (PgBouncer before 1.21 in transaction mode). Default 1.',
    ),
  stateCacheContributors: int(250_000, 1).describe(
    'CELLAR_STATE_CACHE_CONTRIBUTORS: contributions (supplier rows under a region and SKU) the aggregator of each runtime, and routes the embedded runtime, keep in memory, about 400 bytes each, and bottle sizes pinned for SKUs the catalog does not list that each normalizer keeps; beyond it the least recently used (the oldest pins) are dropped and read from Postgres again when a change needs them. Default 250000 (about 250 MB with the routes).',
  ),
  stateWholeKeyContributors: int(16, 0).describe(
    'CELLAR_STATE_WHOLE_KEY_CONTRIBUTORS: a (region, SKU) total the aggregator loads back from Postgres (it was not in memory) comes with all its contributions when it has at most this many; with more, as its totals (summed by Postgres) and only the contributions its changes touch, so that a change to a total of thousands of supplier rows reads a few of them, not thousands. Default 16.',
  ),
  skuMapRefreshMs: int(60_000, 1_000).describe(
    'CELLAR_SKU_MAP_REFRESH_MS: how often the normalizer (both runtimes) re-reads cellar.sku_map and cellar.catalog, ms. Default 60000.',
  ),
  apiPort: z.coerce.number().int().min(0).max(65535).default(8080).describe(
    'CELLAR_API_PORT: port of the read API and dashboard (`cellar run api`; 0 = any free port). Default 8080.',
  ),
  apiWorkers: z.coerce.number().int().min(1).max(64).default(1).describe(
    'CELLAR_API_WORKERS: processes of `cellar run api` sharing its port (node:cluster), e.g. one per core. Default 1.',
  ),
  apiHost: z.string().min(1).default('127.0.0.1').describe(
    'CELLAR_API_HOST: address the read API listens on (`0.0.0.0` for every interface). Default `127.0.0.1`.',
  ),
  apiScrapeUrls: z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(z.string().url()))
    .default([])
    .describe('CELLAR_API_SCRAPE_URLS: comma-separated worker /metrics URLs the API reads for the dashboard\'s pipeline health. Default none.'),
  connectUrl: z.string().url().optional().describe(
    'CELLAR_CONNECT_URL: Kafka Connect REST URL. The read API\'s connector status answers 503 while it is unset; `cellar connectors` then uses http://127.0.0.1:8083.',
  ),
  historyRetentionDays: int(30, 0).describe(
    'CELLAR_HISTORY_RETENTION_DAYS: days of stock history kept (every effective change of a total, `cellar.stock_history`, partitioned by day; older days are dropped whole, hourly), and of stock events (`cellar.stock_events`). 0 = no history and no stock events. Default 30.',
  ),
  stockEventsKafka: flag('0').describe(
      'CELLAR_STOCK_EVENTS_KAFKA: the embedded runtime also publishes stock events to the `<prefix>.stock-events` topic on CELLAR_KAFKA_BROKERS (the Kafka runtime always does). Default 0.',
    ),
  webhookTimeoutMs: int(5_000, 50).describe(
    'CELLAR_WEBHOOK_TIMEOUT_MS: a webhook endpoint that has not answered after this long failed the attempt (retried with backoff), ms. Default 5000.',
  ),
  webhookMaxAttempts: int(8, 1).describe(
    'CELLAR_WEBHOOK_MAX_ATTEMPTS: attempts before a webhook delivery is dead (visible per subscription, redelivered on request), for subscriptions without their own. Default 8.',
  ),
  webhookMaxInFlight: int(32, 1).describe(
    'CELLAR_WEBHOOK_MAX_IN_FLIGHT: webhook requests in flight at once per runtime process, over every subscription. Default 32.',
  ),
  webhookMaxInFlightPerSubscription: int(4, 1).describe(
    'CELLAR_WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION: webhook requests in flight at once to one subscription per process: a slow or dead endpoint holds at most this many. Default 4.',
  ),
  ...ConnectivitySpec,
}).superRefine((c, ctx) => {
  const need = (when: boolean, key: keyof typeof CONNECTIVITY_ENV, why: string) => {
    if (when) ctx.addIssue({ code: 'custom', path: [key], message: why });
  };
  const m = c.kafkaSaslMechanism;
  need((m === 'plain' || m?.startsWith('scram')) === true && !c.kafkaSaslUsername, 'kafkaSaslUsername', `required with CELLAR_KAFKA_SASL_MECHANISM=${m}`);
  need((m === 'plain' || m?.startsWith('scram')) === true && !c.kafkaSaslPassword, 'kafkaSaslPassword', `required with CELLAR_KAFKA_SASL_MECHANISM=${m}`);
  for (const k of ['kafkaSaslOauthTokenUrl', 'kafkaSaslOauthClientId', 'kafkaSaslOauthClientSecret'] as const) need(m === 'oauthbearer' && !c[k], k, 'required with CELLAR_KAFKA_SASL_MECHANISM=oauthbearer');
  for (const [cert, key] of [['kafkaTlsCertFile', 'kafkaTlsKeyFile'], ['schemaRegistryCertFile', 'schemaRegistryKeyFile'], ['connectCertFile', 'connectKeyFile'], ['pgSslCertFile', 'pgSslKeyFile'], ['redisTlsCertFile', 'redisTlsKeyFile'], ['apiTlsCertFile', 'apiTlsKeyFile']] as const) {
    need(!!c[cert] !== !!c[key], c[cert] ? key : cert, `give both ${CONNECTIVITY_ENV[cert]} and ${CONNECTIVITY_ENV[key]}`);
  }
});

export type RuntimeConfig = z.output<typeof RuntimeConfigSpec>;

const ENV_NAMES: Record<keyof RuntimeConfig, string> = {
  kafkaBrokers: 'CELLAR_KAFKA_BROKERS',
  kafkaClientId: 'CELLAR_KAFKA_CLIENT_ID',
  kafkaCompat: 'CELLAR_KAFKA_COMPAT',
  kafkaSessionTimeoutMs: 'CELLAR_KAFKA_SESSION_TIMEOUT_MS',
  kafkaStallMs: 'CELLAR_KAFKA_STALL_MS',
  kafkaPartitionsConcurrently: 'CELLAR_KAFKA_PARTITIONS_CONCURRENTLY',
  topicPrefix: 'CELLAR_TOPIC_PREFIX',
  groupPrefix: 'CELLAR_GROUP_PREFIX',
  topicPartitions: 'CELLAR_TOPIC_PARTITIONS',
  topicReplication: 'CELLAR_TOPIC_REPLICATION',
  schemaRegistryUrl: 'CELLAR_SCHEMA_REGISTRY_URL',
  pgUrl: 'CELLAR_PG_URL',
  redisUrl: 'CELLAR_REDIS_URL',
  redisTtlSeconds: 'CELLAR_REDIS_TTL_SECONDS',
  suppliersDir: 'CELLAR_SUPPLIERS_DIR',
  skuMapRefreshMs: 'CELLAR_SKU_MAP_REFRESH_MS',
  stateCacheContributors: 'CELLAR_STATE_CACHE_CONTRIBUTORS',
  stateWholeKeyContributors: 'CELLAR_STATE_WHOLE_KEY_CONTRIBUTORS',
  pgPreparedStatements: 'CELLAR_PG_PREPARED_STATEMENTS',
  takeOver: 'CELLAR_TAKE_OVER',
  httpPort: 'CELLAR_HTTP_PORT',
  apiPort: 'CELLAR_API_PORT',
  apiHost: 'CELLAR_API_HOST',
  apiWorkers: 'CELLAR_API_WORKERS',
  apiScrapeUrls: 'CELLAR_API_SCRAPE_URLS',
  connectUrl: 'CELLAR_CONNECT_URL',
  historyRetentionDays: 'CELLAR_HISTORY_RETENTION_DAYS',
  stockEventsKafka: 'CELLAR_STOCK_EVENTS_KAFKA',
  webhookTimeoutMs: 'CELLAR_WEBHOOK_TIMEOUT_MS',
  webhookMaxAttempts: 'CELLAR_WEBHOOK_MAX_ATTEMPTS',
  webhookMaxInFlight: 'CELLAR_WEBHOOK_MAX_IN_FLIGHT',
  webhookMaxInFlightPerSubscription: 'CELLAR_WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION',
  ...CONNECTIVITY_ENV,
};

/** The environment variable behind each runtime setting. */
export const RUNTIME_ENV = ENV_NAMES;

/**
 * Reads the runtime configuration from `env` (default `process.env`); `overrides` win. Throws one
 * ConfigError naming every bad variable.
 */
export function loadRuntimeConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<RuntimeConfig> = {},
): RuntimeConfig {
  const raw: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, name] of Object.entries(ENV_NAMES)) {
    const v = envValue(env, name, problems);
    if (v !== undefined && v !== '') raw[key] = v;
  }
  if (problems.length) throw new ConfigError('invalid configuration in environment', problems);
  const parsed = parseSpec(RuntimeConfigSpec, raw, 'environment', (path) =>
    path.length ? (ENV_NAMES[path[0] as keyof RuntimeConfig] ?? String(path[0])) : '(root)',
  );
  for (const k of SECRET_SETTINGS) if (typeof parsed[k as keyof RuntimeConfig] === 'string') rememberSecret(parsed[k as keyof RuntimeConfig] as string);
  for (const url of [parsed.pgUrl, parsed.redisUrl, parsed.schemaRegistryUrl, parsed.connectUrl]) {
    const password = url ? passwordOf(url) : undefined;
    if (password) rememberSecret(password);
  }
  const schemaRegistryUrl = withHttpSettings(parsed.schemaRegistryUrl, { username: parsed.schemaRegistryUsername, password: parsed.schemaRegistryPassword, caFile: parsed.schemaRegistryCaFile, certFile: parsed.schemaRegistryCertFile, keyFile: parsed.schemaRegistryKeyFile });
  const connectUrl = parsed.connectUrl && withHttpSettings(parsed.connectUrl, { username: parsed.connectUsername, password: parsed.connectPassword, caFile: parsed.connectCaFile, certFile: parsed.connectCertFile, keyFile: parsed.connectKeyFile });
  return { ...parsed, pgUrl: withPgTls(parsed), redisUrl: withRedisAuth(parsed), schemaRegistryUrl, ...(connectUrl ? { connectUrl } : {}), ...overrides };
}

/**
 * A variable's value, or the content of the file `<NAME>_FILE` names (a trailing newline dropped), as
 * container platforms mount secrets. Both at once is a mistake; an unreadable file is named, never read out.
 */
function envValue(env: NodeJS.ProcessEnv, name: string, problems: string[]): string | undefined {
  const path = env[`${name}_FILE`];
  if (path === undefined || path === '') return env[name];
  if (env[name] !== undefined && env[name] !== '') {
    problems.push(`environment: ${name}: set both ${name} and ${name}_FILE; keep one`);
    return env[name];
  }
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    problems.push(`environment: ${name}_FILE: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return undefined;
  }
}

function passwordOf(url: string): string | undefined {
  try {
    return decodeURIComponent(new URL(url).password) || undefined;
  } catch {
    return undefined;
  }
}

/** Cellar's Postgres URL with its TLS settings (sslmode, CA, client certificate) as libpq's parameters (`createPgPool` reads them). */
function withPgTls(c: z.output<typeof RuntimeConfigSpec>): string {
  if (!c.pgSslMode && !c.pgSslCaFile && !c.pgSslCertFile) return c.pgUrl;
  const u = new URL(c.pgUrl);
  if (c.pgSslMode) u.searchParams.set('sslmode', c.pgSslMode);
  if (c.pgSslCaFile) u.searchParams.set('sslrootcert', c.pgSslCaFile);
  if (c.pgSslCertFile) u.searchParams.set('sslcert', c.pgSslCertFile);
  if (c.pgSslKeyFile) u.searchParams.set('sslkey', c.pgSslKeyFile);
  return u.toString();
}

/** The Redis URL with CELLAR_REDIS_USERNAME/PASSWORD and the TLS files as parameters (`createRedis` reads them, as {@link withHttpSettings} writes them). */
function withRedisAuth(c: z.output<typeof RuntimeConfigSpec>): string {
  return withHttpSettings(c.redisUrl, { username: c.redisUsername, password: c.redisPassword, caFile: c.redisTlsCaFile, certFile: c.redisTlsCertFile, keyFile: c.redisTlsKeyFile });
}

/**
 * A dependency named for a "waiting for …" line: where it is (credentials removed) and the variable that
 * sets it, e.g. `Kafka at 127.0.0.1:9092 (CELLAR_KAFKA_BROKERS)`. `what` is what the caller waits for
 * (`Kafka topics`, `Postgres (cellar.sku_map)`, `Schema Registry`, `Redis` …); anything else is returned as is.
 */
export function dependencyAt(cfg: RuntimeConfig, what: string): string {
  const host = (url: string) => {
    try {
      const u = new URL(url);
      return `${u.host}${u.pathname.length > 1 ? u.pathname : ''}`;
    } catch {
      return 'an unparseable URL';
    }
  };
  if (/^(Kafka|raw topics|consumer group|producing|committing)/i.test(what)) return `${what} at ${cfg.kafkaBrokers.join(',')} (${ENV_NAMES.kafkaBrokers})`;
  if (/^(Postgres|migrating|writing checkpoint|taking the .* lease)/i.test(what)) return `${what} at ${host(cfg.pgUrl)} (${ENV_NAMES.pgUrl})`;
  if (/^Redis/i.test(what)) return `${what} at ${host(cfg.redisUrl)} (${ENV_NAMES.redisUrl})`;
  if (/^Schema Registry/i.test(what)) return `${what} at ${host(cfg.schemaRegistryUrl)} (${ENV_NAMES.schemaRegistryUrl})`;
  return what;
}
