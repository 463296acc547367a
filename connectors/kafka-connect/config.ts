import { z } from 'zod';
import type { RuntimeConfig } from '../../pipelines/core/config.js';
import { parseSpec } from '../../pipelines/core/spec.js';

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);

/**
 * How Cellar generates and manages Debezium connectors on Kafka Connect. Everything here is what
 * the Connect worker sees (its Kafka, its Schema Registry), which may differ from the addresses Cellar's
 * own processes use; the defaults take Cellar's own settings.
 */
export const KafkaConnectSpec = z.object({
  connectUrl: z.string().url().default('http://127.0.0.1:8083').describe(
    'CELLAR_CONNECT_URL: Kafka Connect REST base URL (basic-auth credentials may be given in the URL). Default `http://127.0.0.1:8083`.',
  ),
  converter: z.enum(['avro', 'json']).default('avro').describe(
    'CELLAR_CONNECT_CONVERTER: `avro` (Confluent AvroConverter with the Schema Registry, the default) or `json` (JsonConverter with schemas, which the normalizer needs to decode decimals and times).',
  ),
  schemaRegistryUrl: z.string().url().describe(
    'CELLAR_CONNECT_SCHEMA_REGISTRY_URL: Schema Registry URL as the Connect worker reaches it. Default: CELLAR_SCHEMA_REGISTRY_URL.',
  ),
  kafkaBootstrapServers: z.string().min(1).describe(
    'CELLAR_CONNECT_KAFKA_BOOTSTRAP: bootstrap servers as the Connect worker reaches them, for the MySQL/MariaDB/SQL Server schema history topic. Default: CELLAR_KAFKA_BROKERS.',
  ),
  namePrefix: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ -').default('cellar-').describe(
    'CELLAR_CONNECT_NAME_PREFIX: connector names are `<prefix><supplier id>`; only connectors with this prefix are managed (planned, pruned, restarted). Default `cellar-`.',
  ),
  schemaHistoryTopicPrefix: z.string().regex(/^[A-Za-z0-9._-]+$/).default('cellar.schema-history').describe(
    'CELLAR_CONNECT_SCHEMA_HISTORY_PREFIX: schema history topics are `<prefix>.<topic prefix>`. Default `cellar.schema-history`.',
  ),
  heartbeatIntervalMs: int(10_000, 0).describe(
    'CELLAR_CONNECT_HEARTBEAT_MS: Debezium heartbeat.interval.ms, so quiet suppliers still advance their replication slot / binlog offset (0 = off). Default 10000.',
  ),
  signalTable: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).default('debezium_signal').describe(
    'CELLAR_CONNECT_SIGNAL_TABLE: name of the signal table (created by the supplier next to the captured tables) through which incremental snapshots are requested. Default `debezium_signal`.',
  ),
  topicPartitions: int(12, 1).describe('Partitions of raw topics Connect creates (topic.creation.default.partitions). Default: CELLAR_TOPIC_PARTITIONS.'),
  topicReplication: z.coerce.number().int().min(-1).default(3).describe('Replication of raw topics Connect creates (-1 = broker default). Default: CELLAR_TOPIC_REPLICATION.'),
  mysqlServerIdBase: int(5_400_000, 1).describe(
    'CELLAR_CONNECT_MYSQL_SERVER_ID_BASE: MySQL/MariaDB database.server.id is this plus a stable hash of the supplier id (below 1,000,000). Default 5400000.',
  ),
  timeoutMs: int(10_000, 100).describe('CELLAR_CONNECT_TIMEOUT_MS: timeout of each REST request. Default 10000.'),
  retries: int(5, 0).describe('CELLAR_CONNECT_RETRIES: retries of a request answered 409 (rebalance in progress), 5xx or not answered. Default 5.'),
  retryMinDelayMs: int(250, 0).describe('First retry backoff ceiling in ms (doubles each retry). Default 250.'),
  retryMaxDelayMs: int(5_000, 0).describe('Largest retry backoff ceiling in ms. Default 5000.'),
});

export type KafkaConnectOptions = z.output<typeof KafkaConnectSpec>;

/** Environment variable of each option (the others take Cellar's runtime settings). */
export const CONNECT_ENV: Partial<Record<keyof KafkaConnectOptions, string>> = {
  connectUrl: 'CELLAR_CONNECT_URL',
  converter: 'CELLAR_CONNECT_CONVERTER',
  schemaRegistryUrl: 'CELLAR_CONNECT_SCHEMA_REGISTRY_URL',
  kafkaBootstrapServers: 'CELLAR_CONNECT_KAFKA_BOOTSTRAP',
  namePrefix: 'CELLAR_CONNECT_NAME_PREFIX',
  schemaHistoryTopicPrefix: 'CELLAR_CONNECT_SCHEMA_HISTORY_PREFIX',
  heartbeatIntervalMs: 'CELLAR_CONNECT_HEARTBEAT_MS',
  signalTable: 'CELLAR_CONNECT_SIGNAL_TABLE',
  mysqlServerIdBase: 'CELLAR_CONNECT_MYSQL_SERVER_ID_BASE',
  timeoutMs: 'CELLAR_CONNECT_TIMEOUT_MS',
  retries: 'CELLAR_CONNECT_RETRIES',
};

/**
 * Parses connector-management options; `input` wins over nothing: callers pass explicit values
 * (tests, CLI flags) and {@link loadKafkaConnectOptions} fills the rest from the environment.
 */
export function parseKafkaConnectOptions(input: Record<string, unknown>, where = 'kafka-connect'): KafkaConnectOptions {
  return parseSpec(KafkaConnectSpec, input, where);
}

/**
 * Options from `CELLAR_CONNECT_*` variables, defaulting to Cellar's runtime settings (Schema Registry,
 * brokers, topic partitions and replication); `overrides` (e.g. CLI flags) win. Problems name the variable.
 */
export function loadKafkaConnectOptions(
  runtime: Pick<RuntimeConfig, 'schemaRegistryUrl' | 'kafkaBrokers' | 'topicPartitions' | 'topicReplication'> & { connectUrl?: string },
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<KafkaConnectOptions> = {},
): KafkaConnectOptions {
  const raw: Record<string, unknown> = {
    schemaRegistryUrl: runtime.schemaRegistryUrl,
    kafkaBootstrapServers: runtime.kafkaBrokers.join(','),
    topicPartitions: runtime.topicPartitions,
    topicReplication: runtime.topicReplication,
    ...(runtime.connectUrl ? { connectUrl: runtime.connectUrl } : {}),
  };
  for (const [key, name] of Object.entries(CONNECT_ENV)) {
    const v = env[name];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  Object.assign(raw, Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)));
  return parseSpec(KafkaConnectSpec, raw, 'environment', (path) => {
    const k = path[0] as keyof KafkaConnectOptions;
    return CONNECT_ENV[k] ?? String(k ?? '(root)');
  });
}
