import type { TestProject } from 'vitest/node';
import { startLocalStack, type LocalStack } from '../infra/local/stack.js';

/** Addresses of the real services of this test run (see infra/local/stack.ts for overrides). */
export interface TestServices {
  kafkaBrokers: string[];
  kafkaCompat: 'standard' | 'librdkafka-mock';
  schemaRegistryUrl: string;
  pgUrl: string;
  redisUrl: string;
  mariadbUrl: string | null;
}

declare module 'vitest' {
  export interface ProvidedContext {
    services: TestServices;
  }
}

let stack: LocalStack | undefined;

/** Starts Kafka (mock cluster), the Schema Registry contract server, Postgres, Redis and MariaDB once per run. */
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const t0 = Date.now();
  stack = await startLocalStack({ mariadb: true });
  const services: TestServices = {
    kafkaBrokers: stack.kafkaBrokers,
    kafkaCompat: stack.kafkaCompat,
    schemaRegistryUrl: stack.schemaRegistryUrl,
    pgUrl: stack.pgUrl,
    redisUrl: stack.redisUrl,
    mariadbUrl: stack.mariadbUrl ?? null,
  };
  project.provide('services', services);
  console.log(`test services up in ${Date.now() - t0} ms: kafka ${services.kafkaCompat}, ${stack.notes.join('; ')}`);
  return async () => {
    await stack?.stop();
  };
}
