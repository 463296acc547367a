import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import type { Totals } from '../support/pipeline.js';
import { rid } from '../support/services.js';
import { addRow, storesConverged } from '../support/stores.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';

const ROWS = 3_000;

/**
 * The embedded runtime with far more state than it keeps in memory (200 contributions of about 3,000), so
 * groups read routes and contributions from Postgres and read them ahead of each other while earlier groups
 * commit. Writers race moves, quantity changes, deletes and inserts of the same rows in back-to-back
 * transactions: whatever a group took read ahead must have been current, or a total ends wrong.
 */
describe.each([
  // About 2.5 contributors a total: keys are loaded whole.
  { SKUS: 600, shape: 'narrow totals' },
  // About 75 a total, beyond WHOLE_KEY_UP_TO: keys are loaded as summaries, contributors as changes touch them.
  { SKUS: 20, shape: 'wide totals' },
])('reading ahead with state beyond memory (embedded runtime, $shape)', ({ SKUS }) => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  let supplier: pg.Client;
  let supplierUrl: string;
  let e: EmbeddedUnderTest;

  beforeAll(async () => {
    const s = await stockSupplier({ rows: ROWS, skus: SKUS, maxQty: 50 });
    supplier = s.client;
    supplierUrl = s.url;
    e = await startEmbeddedUnderTest({ acme: postgresSupplierYaml(s.url, { regions: { d1: R1, d2: R2 } }) }, 'read-ahead', { env: { CELLAR_STATE_CACHE_CONTRIBUTORS: '200' } });
  }, 120_000);

  afterAll(async () => {
    await e?.stop();
    await supplier?.end();
  });

  async function truth(): Promise<Totals> {
    const out: Totals = new Map();
    const { rows } = await supplier.query<{ sku: string; depot: string; qty: number }>('SELECT sku, depot, qty FROM public.stock');
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  }

  const converged = () => storesConverged(truth, e.cellar.pool, e.redis, [R1, R2]);
  /** `n` random ids of one writer's half of the rows (odd or even: writers on the same row would deadlock). */
  const ids = (n: number, half: number) => Array.from({ length: n }, () => 2 * Math.floor(Math.random() * ((ROWS + 400) / 2)) + half);

  /** One writer: transactions of quantity changes, moves to another SKU or depot, deletes and inserts of random rows. */
  async function writer(client: pg.Client, transactions: number, half: number): Promise<void> {
    for (let t = 0; t < transactions; t++) {
      await client.query('BEGIN');
      await client.query('UPDATE public.stock SET qty = (qty * 7 + $2) % 50 WHERE id = ANY($1)', [ids(40, half), t]);
      await client.query(`UPDATE public.stock SET sku = 'sku-' || ((id * 13 + $2) % ${SKUS}), depot = 'd' || (1 + (id + $2) % 2) WHERE id = ANY($1)`, [ids(10, half), t + half]);
      await client.query('DELETE FROM public.stock WHERE id = ANY($1)', [ids(5, half)]);
      await client.query(`INSERT INTO public.stock SELECT g, 'sku-' || (g % ${SKUS}), 'd' || (1 + g % 2), (g + $2) % 50 FROM (SELECT DISTINCT unnest($1::int[])) AS u(g) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty`, [ids(8, half), t]);
      await client.query('COMMIT');
    }
  }

  it('stays exact under racing moves, deletes and inserts, with groups taking state read ahead', async () => {
    expect(await converged(), 'after the snapshot').toEqual([]);
    const before = await e.metrics.value('cellar_state_keys_loaded_total', { from: 'read_ahead' });
    const pg2 = new pg.Client(supplierUrl);
    await pg2.connect();
    try {
      await Promise.all([writer(supplier, 80, 0), writer(pg2, 80, 1)]);
    } finally {
      await pg2.end();
    }
    const diff = await converged();
    const readAhead = (await e.metrics.value('cellar_state_keys_loaded_total', { from: 'read_ahead' })) - before;
    const byGroup = await e.metrics.value('cellar_state_keys_loaded_total', { from: 'group' });
    expect(diff, `totals after the writers (keys read ahead: ${readAhead}, read by groups: ${byGroup}; runtime stopped on: ${e.failed()?.message ?? 'nothing'})`).toEqual([]);
    expect(readAhead, `keys groups took read ahead (read by groups themselves: ${byGroup}): the read ahead was never used`).toBeGreaterThan(0);
  }, 180_000);
});
