import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { TestProject } from 'vitest/node';
import { startLocalStack, type LocalStack } from '../infra/local/stack.js';
import { tempDir } from '../infra/local/process.js';

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
  // The test files' temporary folders (supplier files, feeds, private servers' data) go under one folder of
  // this run, removed at the end; test workers and the processes they start inherit TMPDIR. Caches shared
  // between runs (the PostgreSQL binaries) stay in the machine's temporary folder (CELLAR_SHARED_TMP).
  const runTmp = tempDir('test-run');
  process.env.CELLAR_SHARED_TMP ??= tmpdir();
  process.env.TMPDIR = runTmp;
  return async () => {
    await stack?.stop();
    rmSync(runTmp, { recursive: true, force: true });
  };
}
