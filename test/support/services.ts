import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';
import type pg from 'pg';
import { createDatabase } from '../../infra/local/postgres.js';
import { REPO_ROOT } from '../../infra/local/cellar-process.js';
import { tempDir } from '../../infra/local/process.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { migrate } from '../../pipelines/state/migrate.js';
import type { TestServices } from '../global-setup.js';

/** The run's real services. */
export function services(): TestServices {
  return inject('services');
}

/** A short random lowercase id, for topic, group, database and region names. */
export function rid(prefix = 't'): string {
  return `${prefix}${randomBytes(4).toString('hex')}`;
}

/** A new migrated database on the run's Postgres; the pool is closed by the caller. */
export async function freshDatabase(): Promise<{ url: string; pool: pg.Pool }> {
  const url = await createDatabase(services().pgUrl, rid('cellar_'));
  const pool = createPgPool(url, { max: 4 });
  await migrate(pool);
  return { url, pool };
}

/** A folder for a test's artifacts (worker logs, screenshots), kept after the run. */
export function artifactDir(name: string): string {
  const dir = join(REPO_ROOT, 'test-artifacts', `${name}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Polls `check` until it returns true; returns false on timeout (the caller asserts what it saw). */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 60_000, everyMs = 250): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return true;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return false;
}

/** Environment for Cellar processes talking to the run's services. */
export function cellarEnv(extra: Record<string, string>): Record<string, string> {
  const s = services();
  return {
    CELLAR_KAFKA_BROKERS: s.kafkaBrokers.join(','),
    CELLAR_KAFKA_COMPAT: s.kafkaCompat,
    CELLAR_SCHEMA_REGISTRY_URL: s.schemaRegistryUrl,
    CELLAR_REDIS_URL: s.redisUrl,
    CELLAR_LOG_LEVEL: 'info',
    CELLAR_KAFKA_SESSION_TIMEOUT_MS: '6000',
    CELLAR_KAFKA_STALL_MS: '20000',
    // Far below most tests' contributors: every suite runs the aggregator evicting and loading keys again.
    CELLAR_STATE_CACHE_CONTRIBUTORS: '100',
    // Totals of more than two contributors loaded back as sums and the contributors their changes touch
    // (the embedded runtime's tests keep the default: both ways run in every suite).
    CELLAR_STATE_WHOLE_KEY_CONTRIBUTORS: '2',
    ...extra,
  };
}

/** A fresh folder of supplier files (`<name>.yaml` → its text), for CELLAR_SUPPLIERS_DIR. */
export function supplierDir(files: Record<string, string>): string {
  const dir = tempDir('suppliers');
  for (const [name, yaml] of Object.entries(files)) writeFileSync(join(dir, `${name}.yaml`), yaml);
  return dir;
}
