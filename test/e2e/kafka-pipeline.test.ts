import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { RawMessage } from '../../pipelines/demo/simulated-table.js';
import { TwoSupplierWorkload } from '../support/workload.js';
import { artifactDir, eventually, freshDatabase } from '../support/services.js';
import { PipelineUnderTest, type Totals } from '../support/pipeline.js';

/**
 * The walking skeleton through real processes: Debezium JSON events on raw topics → `cellar run
 * normalizer | aggregator | sink-postgres | sink-redis` (four OS processes, each a consumer-group
 * member) → cellar.regional_stock and Redis hashes. Two suppliers, two regions.
 */
describe('Kafka runtime end to end', () => {
  const w = new TwoSupplierWorkload();
  const { R1, R2, acme, bodega } = w;

  let db: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;

  beforeAll(async () => {
    db = await freshDatabase();
    p = new PipelineUnderTest(db.url, db.pool, w.suppliers(), artifactDir('e2e-kafka'));
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
  });

  afterAll(async () => {
    await p?.stop();
    await db?.pool.end();
  });

  const converged = (expected: Totals) => p.converged(expected, w.regions);

  it('moves totals on inserts, updates, moves and deletes; duplicates change nothing', async () => {
    const script: RawMessage[] = [
      ...acme.insert({ id: 1, item_code: 'X', depot: 'd1', qty: 10 }),
      ...acme.insert({ id: 2, item_code: 'X', depot: 'd3', qty: 20 }),
      ...acme.insert({ id: 3, item_code: 'Y', depot: 'd2', qty: 5 }),
      ...bodega.insert({ sku: 'X', wh: 'w1', bottles: 7 }),
      ...bodega.insert({ sku: 'Y', wh: 'w2', bottles: 3 }),
    ];
    const sale = acme.update({ id: 1 }, { qty: 4 });
    script.push(
      ...sale,
      ...acme.update({ id: 3 }, { depot: 'd3' }),
      ...acme.delete({ id: 2 }),
      ...bodega.update({ sku: 'X', wh: 'w1' }, { bottles: 9 }),
      ...sale,
      ...bodega.delete({ sku: 'Y', wh: 'w2' }),
      ...sale,
    );
    await p.publish(script, w.rawTopics);
    // Worked out by hand from the script above, independently of the truth() helper.
    const expected: Totals = new Map([
      [`${R1}|X`, { bottles: 4 + 9, contributors: 2 }],
      [`${R2}|X`, { bottles: 0, contributors: 0 }],
      [`${R1}|Y`, { bottles: 0, contributors: 0 }],
      [`${R2}|Y`, { bottles: 5, contributors: 1 }],
    ]);
    expect(w.truth()).toEqual(new Map([...expected].filter(([, v]) => v.contributors > 0)));
    expect(await converged(expected)).toEqual([]);
  }, 180_000);

  it('stays exact when the aggregator is SIGKILLed mid-stream and restarted', async () => {
    const randomChanges = (n: number) => w.randomChanges(n);
    const versionSum = async () => Number((await db.pool.query('SELECT coalesce(sum(version),0) AS v FROM cellar.regional_stock')).rows[0].v);
    const before = await versionSum();
    await p.publish(randomChanges(600));
    expect(await eventually(async () => (await versionSum()) > before, 60_000, 100)).toBe(true);
    await p.publish(randomChanges(600));
    await p.kill('aggregator', 'SIGKILL');
    await p.publish(randomChanges(600));
    p.start('aggregator');
    await p.publish(randomChanges(600));
    expect(await converged(w.truth())).toEqual([]);
  }, 240_000);
});
