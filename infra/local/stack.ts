import { startKafkaMock, type KafkaMockCluster } from './kafka-mock.js';
import { startLocalPostgres, type LocalPostgres } from './postgres.js';
import { startLocalRedis, type LocalRedis } from './redis.js';
import { mariadbAvailable, startLocalMariaDb, type LocalMariaDb } from './mariadb.js';
import { startLocalSchemaRegistry, type LocalSchemaRegistry } from './schema-registry.js';
import { dockerAvailable, startContainerStack, type ContainerStack } from './containers.js';
import { onInterrupt } from './process.js';

/** Addresses of the services a Cellar run needs, and handles to stop them. */
export interface LocalStack {
  kafkaBrokers: string[];
  /** `librdkafka-mock` for the kcat mock cluster, `standard` for real brokers. */
  kafkaCompat: 'standard' | 'librdkafka-mock';
  schemaRegistryUrl: string;
  pgUrl: string;
  redisUrl: string;
  /** Absent when MariaDB was not requested or its binaries are missing (see `notes`). */
  mariadbUrl?: string;
  /** How each service was provided, for the run's log. */
  notes: string[];
  /** Restartable handles of the private processes this stack started (absent for external services). */
  handles: { postgres?: LocalPostgres; redis?: LocalRedis; mariadb?: LocalMariaDb; kafka?: KafkaMockCluster };
  /** Stops everything this stack started. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StackOptions {
  mariadb?: boolean;
  /** Prefix of override variables; default `CELLAR_TEST_` (e.g. CELLAR_TEST_PG_URL). */
  envPrefix?: string;
  /** `auto` (default: containers when a Docker engine answers), `never`, `always`. */
  docker?: 'auto' | 'never' | 'always';
}

/**
 * Starts what is not provided by the environment. Each address can point at an existing service via
 * `<prefix>KAFKA_BROKERS` (+ `<prefix>KAFKA_COMPAT`), `<prefix>SCHEMA_REGISTRY_URL`, `<prefix>PG_URL`,
 * `<prefix>REDIS_URL`, `<prefix>MARIADB_URL`. Otherwise, when a Docker engine is reachable, real Redpanda,
 * Postgres, Redis and MySQL run in containers; without one, private processes run in temp folders on
 * free ports: the kcat mock cluster, an in-process Schema Registry, embedded Postgres, redis-server
 * and mariadbd.
 */
export async function startLocalStack(options: StackOptions = {}): Promise<LocalStack> {
  const prefix = options.envPrefix ?? 'CELLAR_TEST_';
  const env = (name: string) => process.env[`${prefix}${name}`] || undefined;
  const stops: Array<() => Promise<void>> = [];
  const notes: string[] = [];
  const handles: LocalStack['handles'] = {};
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    unhook();
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  const unhook = onInterrupt(stop);
  try {
    const dockerMode = (env('DOCKER') as StackOptions['docker']) ?? options.docker ?? 'auto';
    let containers: ContainerStack | undefined;
    const needsAny = !env('KAFKA_BROKERS') || !env('PG_URL') || !env('REDIS_URL');
    if (dockerMode !== 'never' && needsAny) {
      const docker = await dockerAvailable();
      if (docker.ok) {
        containers = await startContainerStack();
        stops.push(() => containers!.stop());
        notes.push(`containers: ${docker.reason}`);
      } else if (dockerMode === 'always') {
        throw new Error(docker.reason);
      } else {
        notes.push(`private processes (${docker.reason})`);
      }
    }

    let kafkaBrokers: string[];
    let kafkaCompat: LocalStack['kafkaCompat'] = 'standard';
    if (env('KAFKA_BROKERS')) {
      kafkaBrokers = env('KAFKA_BROKERS')!.split(',');
      kafkaCompat = (env('KAFKA_COMPAT') as LocalStack['kafkaCompat']) ?? 'standard';
    } else if (containers) {
      kafkaBrokers = containers.kafkaBrokers;
    } else {
      const mock = await startKafkaMock(3);
      stops.push(() => mock.stop());
      handles.kafka = mock;
      kafkaBrokers = mock.brokers;
      kafkaCompat = 'librdkafka-mock';
    }

    let schemaRegistryUrl = env('SCHEMA_REGISTRY_URL') ?? (env('KAFKA_BROKERS') ? undefined : containers?.schemaRegistryUrl);
    if (!schemaRegistryUrl) {
      const sr: LocalSchemaRegistry = await startLocalSchemaRegistry();
      stops.push(() => sr.close());
      schemaRegistryUrl = sr.url;
    }

    let pgUrl = env('PG_URL') ?? containers?.pgUrl;
    if (!pgUrl) {
      const pg = await startLocalPostgres();
      stops.push(() => pg.destroy());
      handles.postgres = pg;
      pgUrl = pg.url;
    }

    let redisUrl = env('REDIS_URL') ?? containers?.redisUrl;
    if (!redisUrl) {
      const redis = await startLocalRedis();
      stops.push(() => redis.destroy());
      handles.redis = redis;
      redisUrl = redis.url;
    }

    let mariadbUrl = env('MARIADB_URL') ?? (options.mariadb ? containers?.mysqlUrl : undefined);
    if (options.mariadb && !mariadbUrl) {
      if (await mariadbAvailable()) {
        const maria = await startLocalMariaDb();
        stops.push(() => maria.destroy());
        handles.mariadb = maria;
        mariadbUrl = maria.url;
      } else {
        notes.push('MariaDB binaries (mariadbd, mariadb-install-db) not found: MySQL/MariaDB sources are not available');
      }
    }
    return { kafkaBrokers, kafkaCompat, schemaRegistryUrl, pgUrl, redisUrl, mariadbUrl, notes, handles, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
