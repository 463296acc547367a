import { existsSync } from 'node:fs';
import type { StartedTestContainer } from 'testcontainers';

/**
 * The testcontainers path of the local stack, used where a Docker engine is reachable: real Redpanda
 * (Kafka API and its built-in Schema Registry), Postgres with wal_level=logical, Redis and MySQL 8 with
 * a ROW binlog. Machines without an engine use the private processes of infra/local instead.
 */
export interface ContainerStack {
  kafkaBrokers: string[];
  schemaRegistryUrl: string;
  pgUrl: string;
  redisUrl: string;
  mysqlUrl: string;
  containers: StartedTestContainer[];
  stop(): Promise<void>;
}

/** Whether a Docker engine answers (a socket or DOCKER_HOST and a successful ping). */
export async function dockerAvailable(): Promise<{ ok: boolean; reason: string }> {
  if (!process.env.DOCKER_HOST && !existsSync('/var/run/docker.sock')) {
    return { ok: false, reason: 'no Docker engine: neither DOCKER_HOST nor /var/run/docker.sock' };
  }
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const client = await getContainerRuntimeClient();
    return { ok: true, reason: `Docker engine ${client.info.containerRuntime.host}` };
  } catch (err) {
    return { ok: false, reason: `Docker engine not reachable: ${(err as Error).message}` };
  }
}

/** Starts the containers; each one's image can be overridden by CELLAR_TEST_IMAGE_<NAME>. */
export async function startContainerStack(): Promise<ContainerStack> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const img = (name: string, def: string) => process.env[`CELLAR_TEST_IMAGE_${name}`] ?? def;
  const started: StartedTestContainer[] = [];
  try {
    const redpanda = await new GenericContainer(img('REDPANDA', 'docker.redpanda.com/redpandadata/redpanda:v24.2.7'))
      .withExposedPorts({ container: 9092, host: 19092 }, 8081)
      .withCommand([
        'redpanda', 'start', '--mode', 'dev-container', '--smp', '1', '--overprovisioned',
        '--kafka-addr', 'PLAINTEXT://0.0.0.0:9092',
        '--advertise-kafka-addr', 'PLAINTEXT://127.0.0.1:19092',
        '--schema-registry-addr', '0.0.0.0:8081',
      ])
      .withWaitStrategy(Wait.forLogMessage(/Successfully started Redpanda/))
      .start();
    started.push(redpanda);
    const postgres = await new GenericContainer(img('POSTGRES', 'postgres:16'))
      .withEnvironment({ POSTGRES_PASSWORD: 'cellar', POSTGRES_USER: 'postgres' })
      .withCommand(['postgres', '-c', 'wal_level=logical', '-c', 'max_replication_slots=64', '-c', 'max_wal_senders=64', '-c', 'max_connections=300'])
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    started.push(postgres);
    const redis = await new GenericContainer(img('REDIS', 'redis:7')).withExposedPorts(6379).start();
    started.push(redis);
    const mysql = await new GenericContainer(img('MYSQL', 'mysql:8.4'))
      .withEnvironment({ MYSQL_ALLOW_EMPTY_PASSWORD: 'yes' })
      .withCommand(['--log-bin=bin', '--binlog-format=ROW', '--binlog-row-metadata=FULL', '--server-id=1', '--gtid-mode=ON', '--enforce-gtid-consistency=ON'])
      .withExposedPorts(3306)
      .withWaitStrategy(Wait.forLogMessage(/port: 3306\s+MySQL Community Server/))
      .start();
    started.push(mysql);
    return {
      kafkaBrokers: [`127.0.0.1:${redpanda.getMappedPort(9092)}`],
      schemaRegistryUrl: `http://127.0.0.1:${redpanda.getMappedPort(8081)}`,
      pgUrl: `postgres://postgres:cellar@127.0.0.1:${postgres.getMappedPort(5432)}/postgres`,
      redisUrl: `redis://127.0.0.1:${redis.getMappedPort(6379)}/0`,
      mysqlUrl: `mysql://root@127.0.0.1:${mysql.getMappedPort(3306)}/`,
      containers: started,
      stop: async () => {
        await Promise.allSettled(started.map((c) => c.stop()));
      },
    };
  } catch (err) {
    await Promise.allSettled(started.map((c) => c.stop()));
    throw err;
  }
}
