import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { RawMessage } from '../../pipelines/demo/simulated-table.js';
import { TwoSupplierWorkload } from '../support/workload.js';
import { artifactDir, eventually, freshDatabase } from '../support/services.js';
import { PipelineUnderTest, type Totals } from '../support/pipeline.js';
import { eventDisagreements, historyDisagreements } from '../support/stores.js';
import { collect } from '../support/kafka.js';
import { setThreshold } from '../../pipelines/events/thresholds.js';
import { cellarTopics } from '../../pipelines/kafka/topics.js';
import { createCodecs } from '../../schemas/registry.js';
import type { StockEventRecord } from '../../schemas/records.js';

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
    // Set before the aggregator starts: events across the whole run follow one rule.
    await setThreshold(db.pool, { region: '*', skuPattern: '*', threshold: 6 });
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

    // History and stock events across the kill: each effective change once, exactly the events it implies,
    // and every event on the stock-events topic (twice only with the same id and content).
    const why: string[][] = [[], []];
    const settled = await eventually(async () => (why[0] = await historyDisagreements(db.pool, w.regions)).length === 0 && (why[1] = await eventDisagreements(db.pool, w.regions)).length === 0, 30_000);
    expect(settled, `${why.flat().slice(0, 10).join('\n')}\n${p.explain()}`).toBe(true);
    const table = new Set((await db.pool.query<{ id: string }>('SELECT id FROM cellar.stock_events')).rows.map((r) => r.id));
    expect((await db.pool.query('SELECT DISTINCT type FROM cellar.stock_events ORDER BY type')).rows.map((r) => r.type)).toEqual(['back_in_stock', 'low_stock', 'sold_out']);
    const codecs = createCodecs(p.cfg.schemaRegistryUrl);
    const topic = await collect<StockEventRecord>(p.cfg, cellarTopics(p.cfg).stockEvents, (v) => codecs.stockEvent.decode(v));
    try {
      const ids = () => new Set(topic.out.map((e) => e.id));
      expect(await eventually(async () => ids().size === table.size, 60_000), `${ids().size} of ${table.size} events on the topic`).toBe(true);
      expect([...ids()].filter((id) => !table.has(id))).toEqual([]);
      const byId = new Map<string, string>();
      for (const e of topic.out) {
        expect(byId.get(e.id) ?? JSON.stringify(e), `event ${e.id} published twice with different content`).toBe(JSON.stringify(e));
        byId.set(e.id, JSON.stringify(e));
      }
    } finally {
      await topic.stop();
    }
  }, 240_000);
});
