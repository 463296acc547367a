import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { SimulatedTable } from '../../pipelines/demo/simulated-table.js';
import { tempDir } from '../../infra/local/process.js';
import { runCellar } from '../support/cli.js';
import { PipelineUnderTest, type Totals } from '../support/pipeline.js';
import { artifactDir, eventually, freshDatabase, rid } from '../support/services.js';
import { addRow } from '../support/stores.js';

/**
 * The same rule in the Kafka runtime (four worker processes): a supplier code listed in three bottle
 * sizes, mapped by the supplier code alone, sends only the catalog's size to the totals and dead-letters
 * the others; after the mapping is keyed by size and the normalizer restarted, `cellar dlq replay`
 * produces the letters again and each counts once, under its own canonical SKU.
 */
describe('bottle sizes in the Kafka runtime', () => {
  const R1 = rid('west');
  const prefix = rid('a');
  const logDir = artifactDir('bottle-sizes-kafka');
  const table = new SimulatedTable(
    { connector: 'postgresql', name: prefix, db: 'inv', schema: 'public', table: 'stock' },
    [{ name: 'id', type: 'int32', optional: false }, { name: 'code', type: 'string' }, { name: 'depot', type: 'string' }, { name: 'ml', type: 'int32' }, { name: 'qty', type: 'int32' }],
    ['id'],
  );
  const supplierYaml = (skus: string) => `id: acme
name: Acme
source:
  kind: postgres
  connection: { host: acme.internal, database: inv, user: cdc, password: "\${ACME_PASSWORD}" }
  topicPrefix: ${prefix}
  tables: [{ name: public.stock }]
mapping:
  sku: code
  warehouse: depot
  quantity: qty
  bottleSizeMl: ml
  skus:
${skus}
  regions: { d1: ${R1} }
`;
  let db: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;
  const cli = (args: string[]) => runCellar(args, { ...p.env, CELLAR_LOG_LEVEL: 'warn' }, logDir);

  beforeAll(async () => {
    db = await freshDatabase();
    p = new PipelineUnderTest(db.url, db.pool, { acme: supplierYaml('    inline: { HER-18: hermitage-2018 }') }, logDir);
    const file = join(tempDir('catalog'), 'catalog.csv');
    writeFileSync(file, 'sku,bottle_size_ml\nhermitage-2018,750\nhermitage-2018-375,375\nhermitage-2018-1500,1500\n');
    const imported = await cli(['catalog', 'import', file]);
    expect(imported.code, imported.out).toBe(0);
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
  }, 60_000);

  afterAll(async () => {
    await p?.stop();
    await db?.pool.end();
  });

  function truth(): Totals {
    const out: Totals = new Map();
    for (const r of table.rows.values()) addRow(out, R1, r.ml === 750 ? 'hermitage-2018' : `hermitage-2018-${String(r.ml)}`, r.qty as number);
    return out;
  }

  const letters = async () => (await db.pool.query<{ stage: string; message: string }>(`SELECT stage, message FROM cellar.dead_letters WHERE reason = 'bottle_size_mismatch' ORDER BY id`)).rows;

  it('counts only the catalog size and dead-letters the others', async () => {
    await p.publish([
      ...table.insert({ id: 1, code: 'HER-18', depot: 'd1', ml: 750, qty: 30 }),
      ...table.insert({ id: 2, code: 'HER-18', depot: 'd1', ml: 375, qty: 12 }),
      ...table.insert({ id: 3, code: 'HER-18', depot: 'd1', ml: 1500, qty: 4 }),
    ], [table.topic]);
    expect(await p.converged(new Map([[`${R1}|hermitage-2018`, { bottles: 30, contributors: 1 }]]), [R1])).toEqual([]);
    expect(await eventually(async () => (await letters()).length === 2, 60_000)).toBe(true);
    const ls = await letters();
    expect(ls.map((l) => l.stage)).toEqual(['normalizer', 'normalizer']);
    // Rows 2 and 3 sit on different partitions: their letters come in either order.
    const messages = ls.map((l) => l.message).sort((a, b) => a.length - b.length || (a < b ? -1 : 1));
    expect(messages.some((m) => m.includes('375 ml of "HER-18" → "hermitage-2018", a 750 ml SKU'))).toBe(true);
    expect(messages.some((m) => m.includes('1500 ml of "HER-18" → "hermitage-2018", a 750 ml SKU'))).toBe(true);
    const { rows } = await db.pool.query('SELECT bottle_size_ml FROM cellar.regional_stock WHERE region = $1', [R1]);
    expect(rows).toEqual([{ bottle_size_ml: 750 }]);
    // No reader of Cellar's runs this Debezium supplier: `cellar status` gives its last change as the normalizer received it.
    let status = '';
    const shown = await eventually(async () => /^acme\s+unknown\s+-\s+\d+ s ago/m.test((status = (await cli(['status', '--supplier', 'acme'])).out)), 30_000, 1_000);
    expect(shown, status).toBe(true);
    expect(status).toMatch(/its raw topics last delivered a change at .* \(3 received in all\)/);
  }, 180_000);

  it('after the mapping is keyed by size, replay counts each letter once', async () => {
    // Replayed before the fix: the normalizer refuses them again, and the replay says so (the header names the letter).
    const early = await cli(['dlq', 'replay', '--reason', 'bottle_size_mismatch', '--wait', '90']);
    expect(early.code, early.out).toBe(1);
    expect(early.out.match(/refused again as letter \d+: bottle_size_mismatch/g), early.out).toHaveLength(2);
    writeFileSync(join(p.env.CELLAR_SUPPLIERS_DIR!, 'acme.yaml'), supplierYaml(`    inline:
      - { supplierSku: HER-18, sku: hermitage-2018 }
      - { supplierSku: HER-18, bottleSizeMl: 375, sku: hermitage-2018-375 }
      - { supplierSku: HER-18, bottleSizeMl: 1500, sku: hermitage-2018-1500 }`));
    // The running normalizer reads the fixed file on SIGHUP: no restart.
    const normalizer = p.workers.get('normalizer')!;
    normalizer.kill('SIGHUP');
    const log = join(p.logDir, 'normalizer.log');
    expect(await eventually(async () => /"changed":\["acme"\].*configuration reloaded/.test(readFileSync(log, 'utf8')), 30_000), `the normalizer reloaded (${log})`).toBe(true);
    expect(normalizer.exitCode, 'the same process').toBeNull();
    const replay = await cli(['dlq', 'replay', '--reason', 'bottle_size_mismatch']);
    expect(replay.code, replay.out).toBe(0);
    expect(replay.out).toContain('replayed 4 dead letters to their Kafka topics');
    expect(replay.out).toMatch(/applied 4 \(.*\): resolved/);
    expect(await p.converged(truth(), [R1])).toEqual([]);
    expect(truth().get(`${R1}|hermitage-2018-375`)).toEqual({ bottles: 12, contributors: 1 });
    // Later changes of the half bottles keep counting under their own SKU; replaying again is a no-op.
    await p.publish(table.update({ id: 2 }, { qty: 7 }));
    await cli(['dlq', 'replay', '--reason', 'bottle_size_mismatch']);
    expect(await p.converged(truth(), [R1])).toEqual([]);
    const sizes = await db.pool.query<{ sku: string; bottle_size_ml: number }>('SELECT sku, bottle_size_ml FROM cellar.regional_stock WHERE region = $1 ORDER BY sku', [R1]);
    expect(sizes.rows).toEqual([
      { sku: 'hermitage-2018', bottle_size_ml: 750 },
      { sku: 'hermitage-2018-1500', bottle_size_ml: 1500 },
      { sku: 'hermitage-2018-375', bottle_size_ml: 375 },
    ]);
  }, 240_000);
});
