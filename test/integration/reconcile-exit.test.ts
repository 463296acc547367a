import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { freePort } from '../../infra/local/process.js';
import { runCellar } from '../support/cli.js';
import { artifactDir, cellarEnv, freshDatabase, rid, supplierDir } from '../support/services.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';

/**
 * `cellar reconcile` tells "could not look" from "looked and found drift": a supplier whose database does
 * not answer is named with why, the other suppliers are still reconciled, and the exit code is 3.
 */
describe('reconcile exit codes', () => {
  const logDir = artifactDir('reconcile-exit');
  let db: { url: string; pool: pg.Pool };
  let env: Record<string, string>;
  let close: () => Promise<void> = async () => undefined;

  beforeAll(async () => {
    db = await freshDatabase();
    const live = await stockSupplier({ rows: 20, skus: 3, maxQty: 5 });
    close = () => live.client.end();
    const dead = `postgres://postgres@127.0.0.1:${await freePort()}/nowhere`;
    const R = rid('r');
    env = cellarEnv({
      CELLAR_PG_URL: db.url,
      CELLAR_LOG_LEVEL: 'warn',
      CELLAR_SUPPLIERS_DIR: supplierDir({
        live: postgresSupplierYaml(live.url, { id: 'live', regions: { d1: R, d2: R } }),
        gone: postgresSupplierYaml(dead, { id: 'gone', regions: { d1: R, d2: R } }),
      }),
    });
  }, 60_000);

  afterAll(async () => {
    await close();
    await db?.pool.end();
  });

  it('names the supplier it could not reach, still reconciles the others, and exits 3', async () => {
    const r = await runCellar(['reconcile', '--settle', '200', '--rounds', '1'], env, logDir);
    expect(r.code, r.out).toBe(3);
    expect(r.out).toMatch(/gone: could not reconcile: .*(ECONNREFUSED|connect)/);
    expect(r.out, 'the reachable supplier was still compared').toMatch(/live: 20 source rows compared/);
  }, 120_000);

  it('exits 2 for a supplier that is not in the registry', async () => {
    const r = await runCellar(['reconcile', '--supplier', 'nope'], env, logDir);
    expect(r.code, r.out).toBe(2);
  }, 60_000);
});
