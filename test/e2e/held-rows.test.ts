import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { runCellar } from '../support/cli.js';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import type { Totals } from '../support/pipeline.js';
import { addRow, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, eventually, freshDatabase, rid, supplierDir } from '../support/services.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { call, keysByRole, startTestApi, type TestApi } from '../api/api-support.js';

/**
 * Rows that turn invalid (embedded runtime): an update to an unknown warehouse is dead-lettered and the
 * row keeps counting at its last valid state, marked as held: the read API gives the held count on the
 * total, `/v1/ops/held` and `cellar dlq held` list the row, and reconciliation reports it. A valid change,
 * a delete, a move to a known warehouse, or a replay after the mapping is fixed each release it.
 */
describe('rows that turn invalid are held at their last valid state', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const R3 = rid('north');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const logDir = artifactDir('held-rows');
  let supplier: { url: string; client: pg.Client };
  let cellar: { url: string; pool: pg.Pool };
  let e: EmbeddedUnderTest;
  let api: TestApi;
  let keys: Awaited<ReturnType<typeof keysByRole>>;
  /** The last valid state of each row, as the pipeline should count it. */
  const lastValid = new Map<number, { sku: string; depot: string; qty: number }>();
  const yaml = () => postgresSupplierYaml(supplier.url, { regions: region });

  const expected = (): Totals => {
    const out: Totals = new Map();
    for (const r of lastValid.values()) addRow(out, region[r.depot]!, r.sku, r.qty);
    return out;
  };
  const start = async () => {
    e = await startEmbeddedUnderTest({ acme: yaml() }, 'held-rows', { cellar: { url: cellar.url, pool: createPgPool(cellar.url, { max: 4 }) } });
    api = await startTestApi({ pgUrl: cellar.url, redisUrl: e.redisUrl, keyPrefix: 'cellar' });
  };
  const cliEnv = () => cellarEnv({ CELLAR_PG_URL: cellar.url, CELLAR_REDIS_URL: e.redisUrl, CELLAR_SUPPLIERS_DIR: supplierDir({ acme: yaml() }), CELLAR_LOG_LEVEL: 'warn' });
  /** Applies an update at the source and, when the new state is valid, to the expectation. */
  const update = async (id: number, depot: string, qty: number) => {
    await supplier.client.query('UPDATE public.stock SET depot = $2, qty = $3 WHERE id = $1', [id, depot, qty]);
    if (region[depot]) lastValid.set(id, { ...lastValid.get(id)!, depot, qty });
  };
  const heldRows = async () => (await cellar.pool.query<{ contributor_id: string }>('SELECT contributor_id FROM cellar.held_contributors ORDER BY 1')).rows.map((r) => r.contributor_id);
  const cid = (id: number) => `acme/public.stock/id=${id}`;
  const converged = () => storesConverged(async () => expected(), cellar.pool, e.redis, [R1, R2, R3]);

  beforeAll(async () => {
    supplier = await stockSupplier({ rows: 60, skus: 5, maxQty: 10 });
    const { rows } = await supplier.client.query<{ id: number; sku: string; depot: string; qty: number }>('SELECT id, sku, depot, qty FROM public.stock');
    for (const r of rows) lastValid.set(r.id, { sku: r.sku, depot: r.depot, qty: r.qty });
    cellar = await freshDatabase();
    await start();
    keys = await keysByRole(cellar.pool, rid('held'));
  }, 60_000);

  afterAll(async () => {
    await api?.close();
    await e?.stop();
    await supplier?.client.end();
    await cellar?.pool.end();
  });

  it('an update to an unknown warehouse is held: counted at its last valid state and shown as held everywhere', async () => {
    expect(await converged(), `initial snapshot (${logDir})`).toEqual([]);
    const [a, b, c, d] = [2, 4, 6, 8];
    const before = lastValid.get(d)!;
    for (const id of [a, b, c, d]) await update(id, 'd9', 99);
    expect(await eventually(async () => (await heldRows()).length === 4, 30_000), `4 held rows, got ${JSON.stringify(await heldRows())}`).toBe(true);
    expect(await converged(), 'held rows count at their last valid state').toEqual([]);

    const one = await call(`${api.url}/v1/stock/${region[before.depot]}/${before.sku}`, keys.reader);
    expect(one.status).toBe(200);
    expect(one.body.heldContributors).toBeGreaterThanOrEqual(1);
    const page = await call(`${api.url}/v1/stock/${region[before.depot]}?prefix=${before.sku}`, keys.reader);
    expect(page.body.items[0].heldContributors).toBe(one.body.heldContributors);

    const ops = await call(`${api.url}/v1/ops/held?supplierId=acme`, keys.operator);
    expect(ops.status).toBe(200);
    expect(ops.body.summary).toEqual([expect.objectContaining({ supplierId: 'acme', reason: 'unknown_warehouse', count: 4 })]);
    expect(ops.body.items.map((h: { contributorId: string }) => h.contributorId).sort()).toEqual([a, b, c, d].map(cid).sort());
    const health = await call(`${api.url}/v1/pipeline`, keys.reader);
    expect(health.body.held).toEqual([expect.objectContaining({ supplierId: 'acme', reason: 'unknown_warehouse', count: 4 })]);

    const env = cliEnv();
    const cli = await runCellar(['dlq', 'held', '--supplier', 'acme'], env, logDir);
    expect(cli.out).toContain('unknown_warehouse');
    expect(cli.out).toContain(cid(d));
    expect(cli.out).toMatch(/warehouse "d9"/);

    const rec = await runCellar(['reconcile', '--supplier', 'acme', '--settle', '300'], env, logDir);
    expect(rec.out, rec.out).toContain('4 of them still counted at their last valid state');
  }, 120_000);

  it('a valid change, a delete and a move release a held row; the rest stays held', async () => {
    await update(2, 'd1', 5); // fixed in place
    await supplier.client.query('DELETE FROM public.stock WHERE id = 4');
    lastValid.delete(4);
    await update(6, 'd2', 7); // moved to a known warehouse
    expect(await eventually(async () => (await heldRows()).join() === cid(8), 30_000), `only ${cid(8)} held, got ${JSON.stringify(await heldRows())}`).toBe(true);
    expect(await converged(), `after the releases (${logDir})`).toEqual([]);
  }, 60_000);

  it('after the mapping learns the warehouse, a replay releases the last held row and counts it where it is now', async () => {
    region.d9 = R3;
    await api.close();
    await e.stop();
    await start();
    const replay = await runCellar(['dlq', 'replay', '--supplier', 'acme', '--reason', 'unknown_warehouse'], cliEnv(), logDir);
    expect(replay.code, replay.out).toBe(0);
    for (const id of [8]) lastValid.set(id, { ...lastValid.get(id)!, depot: 'd9', qty: 99 });
    expect(await eventually(async () => (await heldRows()).length === 0, 30_000), `no held rows, got ${JSON.stringify(await heldRows())}`).toBe(true);
    expect(await converged(), `after the replay (${logDir})`).toEqual([]);
  }, 90_000);
});
