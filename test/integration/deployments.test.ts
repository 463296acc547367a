import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createLogger } from '../../pipelines/core/logger.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { startWorker, type RunningWorker } from '../../pipelines/runtime/kafka-runtime.js';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import { testConfig } from '../support/kafka.js';
import { freshDatabase, supplierDir } from '../support/services.js';
import { createPgPool } from '../../pipelines/core/pg.js';

/**
 * One deployment per Cellar database: the embedded runtime and the workers of a Kafka deployment (or two
 * Kafka deployments with different topic prefixes) writing one database would count every supplier twice.
 * The one that comes second is refused, naming the other; a stopped embedded runtime leaves at once.
 */
describe('deployments sharing one Cellar database', () => {
  let cellar: { url: string; pool: pg.Pool };
  const running: RunningWorker[] = [];
  const log = createLogger('deployments-test', 'error');
  /** A supplier the embedded runtime skips (no native reader for its kind): the runtime starts with nothing to read. */
  const skipped = { mongo: `id: mongo
name: Mongo
source: { kind: mongodb, connection: { host: h }, topicPrefix: mongo, tables: [{ name: inv.stock }] }
mapping: { sku: sku, warehouse: wh, quantity: qty, regions: { w1: r1 } }
` };
  const worker = (prefix: string) => {
    const cfg = testConfig({ CELLAR_PG_URL: cellar.url, CELLAR_SUPPLIERS_DIR: supplierDir(skipped), CELLAR_TOPIC_PREFIX: prefix, CELLAR_HTTP_PORT: '-1' });
    return startWorker('sink-postgres', cfg, log, new CellarMetrics(false)).then((w) => (running.push(w), w));
  };

  beforeAll(async () => {
    cellar = await freshDatabase();
  });
  afterAll(async () => {
    for (const w of running) await w.stop();
    await cellar?.pool.end();
  });

  it('refuses Kafka workers beside a running embedded runtime, then takes them once it stopped', async () => {
    const e: EmbeddedUnderTest = await startEmbeddedUnderTest(skipped, 'deployments', { cellar: { url: cellar.url, pool: createPgPool(cellar.url, { max: 2 }) } });
    try {
      await expect(worker('dep-a.cellar')).rejects.toThrow(/written by another deployment: embedded .* this process belongs to kafka:dep-a\.cellar/);
    } finally {
      await e.stop();
    }
    await worker('dep-a.cellar');
    // A second worker of the same deployment is welcome.
    await worker('dep-a.cellar');
  }, 90_000);

  it('refuses a second Kafka deployment (another topic prefix) and the embedded runtime beside a live one', async () => {
    await expect(worker('dep-b.cellar')).rejects.toThrow(/another deployment: kafka:dep-a\.cellar \(its sink-postgres on .* pid \d+, seen \d+ s ago\)/);
    await expect(startEmbeddedUnderTest(skipped, 'deployments-2', { cellar: { url: cellar.url, pool: createPgPool(cellar.url, { max: 2 }) } })).rejects.toThrow(/kafka:dep-a\.cellar/);
    const { rows } = await cellar.pool.query<{ id: string }>('SELECT id FROM cellar.deployments ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual(['kafka:dep-a.cellar']);
  }, 60_000);
});
