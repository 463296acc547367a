import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { SimulatedTable, type RawMessage } from '../../pipelines/demo/simulated-table.js';
import { artifactDir, eventually, freshDatabase, rid } from '../support/services.js';
import { diffTotals, PipelineUnderTest, type Totals } from '../support/pipeline.js';

/**
 * The walking skeleton through real processes: Debezium JSON events on raw topics → `cellar run
 * normalizer | aggregator | sink-postgres | sink-redis` (four OS processes, each a consumer-group
 * member) → cellar.regional_stock and Redis hashes. Two suppliers, two regions.
 */
describe('Kafka runtime end to end', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const aPrefix = rid('a');
  const bPrefix = rid('b');
  const acme = new SimulatedTable(
    { connector: 'postgresql', name: aPrefix, db: 'inv', schema: 'public', table: 'stock' },
    [{ name: 'id', type: 'int32', optional: false }, { name: 'item_code', type: 'string' }, { name: 'depot', type: 'string' }, { name: 'qty', type: 'int32' }],
    ['id'],
  );
  const bodega = new SimulatedTable(
    { connector: 'mysql', name: bPrefix, db: 'shop', table: 'levels' },
    [{ name: 'sku', type: 'string', optional: false }, { name: 'wh', type: 'string', optional: false }, { name: 'bottles', type: 'int64' }],
    ['sku', 'wh'],
  );
  const acmeRegions: Record<string, string> = { d1: R1, d2: R1, d3: R2 };
  const bodegaRegions: Record<string, string> = { w1: R1, w2: R2 };
  const suppliers = {
    acme: `id: acme
name: Acme Wines
source:
  kind: postgres
  connection: { host: acme.internal, database: inv, user: cdc, password: "\${ACME_PASSWORD}" }
  topicPrefix: ${aPrefix}
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: qty
  regions: { d1: ${R1}, d2: ${R1}, d3: ${R2} }
`,
    bodega: `id: bodega
name: Bodega
source:
  kind: mysql
  connection: { host: bodega.internal, database: shop, user: cdc, password: "\${BODEGA_PASSWORD}" }
  topicPrefix: ${bPrefix}
  tables: [{ name: shop.levels }]
mapping:
  sku: sku
  warehouse: wh
  quantity: bottles
  regions: { w1: ${R1}, w2: ${R2} }
`,
  };

  /** Totals straight from the simulated suppliers' rows (the source of truth). */
  function truth(): Totals {
    const out: Totals = new Map();
    const add = (region: string, sku: string, bottles: number) => {
      const k = `${region}|${sku}`;
      const cur = out.get(k) ?? { bottles: 0, contributors: 0 };
      out.set(k, { bottles: cur.bottles + bottles, contributors: cur.contributors + 1 });
    };
    for (const r of acme.rows.values()) add(acmeRegions[r.depot as string]!, r.item_code as string, r.qty as number);
    for (const r of bodega.rows.values()) add(bodegaRegions[r.wh as string]!, r.sku as string, r.bottles as number);
    return out;
  }

  let db: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;

  beforeAll(async () => {
    db = await freshDatabase();
    p = new PipelineUnderTest(db.url, db.pool, suppliers, artifactDir('e2e-kafka'));
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
  });

  afterAll(async () => {
    await p?.stop();
    await db?.pool.end();
  });

  async function converged(expected: Totals, timeoutMs = 120_000): Promise<string[]> {
    let diff: string[] = ['not checked'];
    await eventually(async () => {
      diff = diffTotals(expected, await p.postgresTotals(), await p.redisTotals([R1, R2]));
      return diff.length === 0;
    }, timeoutMs, 500);
    return diff;
  }

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
    await p.publish(script, [acme.topic, bodega.topic]);
    // Worked out by hand from the script above, independently of the truth() helper.
    const expected: Totals = new Map([
      [`${R1}|X`, { bottles: 4 + 9, contributors: 2 }],
      [`${R2}|X`, { bottles: 0, contributors: 0 }],
      [`${R1}|Y`, { bottles: 0, contributors: 0 }],
      [`${R2}|Y`, { bottles: 5, contributors: 1 }],
    ]);
    expect(truth()).toEqual(new Map([...expected].filter(([, v]) => v.contributors > 0)));
    expect(await converged(expected)).toEqual([]);
  }, 180_000);

  it('stays exact when the aggregator is SIGKILLed mid-stream and restarted', async () => {
    let nextId = 100;
    const skus = ['X', 'Y', 'Z', 'W'];
    const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;
    const randomChanges = (n: number): RawMessage[] => {
      const out: RawMessage[] = [];
      for (let i = 0; i < n; i++) {
        const useAcme = Math.random() < 0.6;
        const roll = Math.random();
        if (useAcme) {
          const ids = [...acme.rows.values()].map((r) => r.id as number);
          if (ids.length < 20 || roll < 0.2) out.push(...acme.insert({ id: nextId++, item_code: pick(skus), depot: pick(['d1', 'd2', 'd3']), qty: Math.floor(Math.random() * 100) }));
          else if (roll < 0.3) out.push(...acme.delete({ id: pick(ids) }));
          else if (roll < 0.45) out.push(...acme.update({ id: pick(ids) }, { depot: pick(['d1', 'd2', 'd3']), item_code: pick(skus) }));
          else out.push(...acme.update({ id: pick(ids) }, { qty: Math.floor(Math.random() * 100) }));
        } else {
          const sku = pick(skus);
          const wh = pick(['w1', 'w2']);
          const exists = bodega.rows.has(`${sku}|${wh}`);
          if (!exists) out.push(...bodega.insert({ sku, wh, bottles: Math.floor(Math.random() * 50) }));
          else if (roll < 0.2) out.push(...bodega.delete({ sku, wh }));
          else out.push(...bodega.update({ sku, wh }, { bottles: Math.floor(Math.random() * 50) }));
        }
        if (Math.random() < 0.05 && out.length) out.push(out[out.length - 1]!); // connector redelivery
      }
      return out;
    };
    const versionSum = async () => Number((await db.pool.query('SELECT coalesce(sum(version),0) AS v FROM cellar.regional_stock')).rows[0].v);
    const before = await versionSum();
    await p.publish(randomChanges(600));
    expect(await eventually(async () => (await versionSum()) > before, 60_000, 100)).toBe(true);
    await p.publish(randomChanges(600));
    await p.kill('aggregator', 'SIGKILL');
    await p.publish(randomChanges(600));
    p.start('aggregator');
    await p.publish(randomChanges(600));
    expect(await converged(truth())).toEqual([]);
  }, 240_000);
});
