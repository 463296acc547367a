import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase } from '../../infra/local/postgres.js';
import { stopChild } from '../../infra/local/process.js';
import { PipelineUnderTest, type Totals } from '../support/pipeline.js';
import { addRow } from '../support/stores.js';
import { artifactDir, freshDatabase, rid, services } from '../support/services.js';

/** `cellar run capture` (native pgoutput reader → Kafka raw topics) feeding the four Kafka-runtime workers. */
describe('native capture into the Kafka runtime', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  let supplier: pg.Client;
  let cellar: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;
  let capture: ChildProcess | undefined;
  const logDir = artifactDir('capture');

  beforeAll(async () => {
    const supplierUrl = await createDatabase(services().pgUrl, rid('supplier_'));
    supplier = new pg.Client(supplierUrl);
    await supplier.connect();
    await supplier.query('CREATE TABLE public.inventory (sku text, store text, bottles int NOT NULL, PRIMARY KEY (sku, store))');
    await supplier.query(`INSERT INTO public.inventory SELECT 'w-' || (g % 9), 's' || (g % 4), g FROM generate_series(1, 120) g ON CONFLICT DO NOTHING`);
    cellar = await freshDatabase();
    const u = new URL(supplierUrl);
    p = new PipelineUnderTest(cellar.url, cellar.pool, {
      valley: `id: valley
name: Valley
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: ${u.pathname.slice(1)}, user: postgres }
  topicPrefix: ${rid('valley')}
  tables: [{ name: public.inventory }]
mapping:
  sku: sku
  warehouse: store
  quantity: bottles
  regions: { s0: ${R1}, s1: ${R1}, s2: ${R2}, s3: ${R2}, s4: ${R2} }
`,
    }, logDir);
    capture = spawnCellar(['run', 'capture', '--supplier', 'valley'], p.env, join(logDir, 'capture.log'));
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
  }, 60_000);

  afterAll(async () => {
    if (capture) await stopChild(capture, 'SIGTERM', 15_000);
    await p?.stop();
    await supplier?.end();
    await cellar?.pool.end();
  });

  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; store: string; bottles: number }>('SELECT sku, store, bottles FROM public.inventory');
    const region: Record<string, string> = { s0: R1, s1: R1, s2: R2, s3: R2, s4: R2 };
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.store]!, r.sku, r.bottles);
    return out;
  }

  it('snapshot and changes of a real Postgres supplier reach Postgres and Redis exactly', async () => {
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
    await supplier.query(`UPDATE public.inventory SET bottles = bottles + 5 WHERE store = 's1'`);
    await supplier.query(`UPDATE public.inventory SET store = 's4' WHERE sku = 'w-1' AND store = 's0'`); // region move
    await supplier.query(`UPDATE public.inventory SET sku = 'w-renamed' WHERE sku = 'w-3' AND store = 's2'`); // SKU move
    await supplier.query(`DELETE FROM public.inventory WHERE sku = 'w-2'`);
    await supplier.query(`INSERT INTO public.inventory VALUES ('w-new', 's2', 77)`);
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
  }, 150_000);
});
