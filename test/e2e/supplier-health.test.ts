import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../../infra/local/postgres.js';
import { supplierHealth, type SupplierHealth } from '../../pipelines/state/supplier-health.js';
import { call, keysByRole, startTestApi, type TestApi } from '../api/api-support.js';
import { runCellar } from '../support/cli.js';
import { freePort } from '../../infra/local/process.js';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import { artifactDir, cellarEnv, eventually, rid, supplierDir } from '../support/services.js';

/**
 * Per-supplier health as an on-call engineer sees it: a supplier whose database goes down shows as failing,
 * with the error, within 30 s in the API, the metrics and `cellar status`, and as ok again once it is back;
 * while it streams, the distance to its WAL (the slot's retained bytes) is measured.
 */
describe('per-supplier health', () => {
  const R = rid('west');
  const logDir = artifactDir('supplier-health');
  let server: LocalPostgres;
  let e: EmbeddedUnderTest;
  let api: TestApi;
  let reader: string;
  let env: Record<string, string>;
  const yaml = (port: number, id = 'acme') => `id: ${id}
name: ${id}
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${port}, database: supplier, user: postgres }
  topicPrefix: ${rid(id)}
  tables: [{ name: public.stock }]
mapping: { sku: sku, warehouse: wh, quantity: qty, regions: { a: ${R} } }
`;

  beforeAll(async () => {
    server = await startLocalPostgres();
    const url = await createDatabase(server.url, 'supplier');
    const c = new pg.Client(url);
    await c.connect();
    await c.query('CREATE TABLE public.stock (id int PRIMARY KEY, sku text NOT NULL, wh text NOT NULL, qty int NOT NULL)');
    await c.query(`INSERT INTO public.stock SELECT g, 'sku-' || (g % 5), 'a', g % 9 FROM generate_series(1, 50) g`);
    await c.end();
    e = await startEmbeddedUnderTest({ acme: yaml(server.port) }, 'supplier-health');
    api = await startTestApi({ pgUrl: e.cellar.url, redisUrl: e.redisUrl });
    reader = (await keysByRole(e.cellar.pool, rid('k'))).reader;
    env = cellarEnv({ CELLAR_PG_URL: e.cellar.url, CELLAR_REDIS_URL: e.redisUrl, CELLAR_SUPPLIERS_DIR: supplierDir({ acme: yaml(server.port) }), CELLAR_LOG_LEVEL: 'warn' });
  }, 120_000);

  afterAll(async () => {
    await api?.close();
    await e?.stop();
    await server?.destroy();
  });

  const health = async (id = 'acme') => (await supplierHealth(e.cellar.pool, { only: id }))[0]!;
  const waitFor = async (what: string, ok: (h: SupplierHealth) => boolean, ms: number, id = 'acme') => {
    let last: SupplierHealth | undefined;
    const done = await eventually(async () => ok((last = await health(id))), ms, 250);
    expect(done, `${what}; last seen: ${JSON.stringify(last)}`).toBe(true);
  };

  it('streams as ok, with the slot\'s retained WAL measured', async () => {
    await waitFor('acme ok with its source lag measured', (h) => h.status === 'ok' && h.capture?.lagBytes !== null && /slot cellar_/.test(h.capture?.lagDetail ?? ''), 40_000);
    const r = await call(`${api.url}/v1/suppliers`, reader);
    expect(r.status).toBe(200);
    expect(r.body.suppliers.find((s: { supplierId: string }) => s.supplierId === 'acme').status).toBe('ok');
    const st = await runCellar(['status'], env, logDir);
    expect(st.code, st.out).toBe(0);
    expect(st.out).toMatch(/acme\s+ok\s+embedded/);
    expect(st.out).not.toMatch(/Redis/);
    expect(await e.metrics.value('cellar_source_up', { supplier: 'acme' })).toBe(1);
    // Cellar's Redis not answering: said once under the suppliers, without the URL's password, and exit 1.
    const deadPort = await freePort();
    const down = await runCellar(['status'], { ...env, CELLAR_REDIS_URL: `redis://cellar:s3cret-pw@127.0.0.1:${deadPort}/0` }, logDir);
    expect(down.code, down.out).toBe(1);
    expect(down.out).toMatch(/acme\s+ok\s+embedded/);
    expect(down.out).toContain(`Redis at 127.0.0.1:${deadPort}/0 (CELLAR_REDIS_URL) does not answer (connect ECONNREFUSED 127.0.0.1:${deadPort}): totals still go to Postgres`);
    expect(down.out).not.toContain('s3cret-pw');
  }, 60_000);

  it('shows a supplier whose database is down as failing within 30 s, with why, then ok once it is back', async () => {
    const t0 = Date.now();
    await server.stop();
    await waitFor('acme failing', (h) => h.status === 'failing', 30_000);
    expect(Date.now() - t0).toBeLessThan(30_000);
    const h = await health();
    expect(h.detail).toMatch(/reader restarting since .*: /);
    const one = await call(`${api.url}/v1/suppliers/acme`, reader);
    expect(one.status).toBe(200);
    expect(one.body.status).toBe('failing');
    expect(await eventually(async () => (await e.metrics.value('cellar_source_up', { supplier: 'acme' })) === 0, 10_000)).toBe(true);
    const st = await runCellar(['status', '--supplier', 'acme'], env, logDir);
    expect(st.code, st.out).toBe(1);
    expect(st.out).toMatch(/acme: failing: reader restarting since/);
    expect((await call(`${api.url}/v1/suppliers/nope`, reader)).status).toBe(404);
    expect(e.failed(), 'the runtime keeps running').toBeUndefined();

    await server.start();
    await waitFor('acme ok again', (x) => x.status === 'ok', 60_000);
    expect((await health()).capture?.restarts).toBeGreaterThanOrEqual(1);
    expect(await eventually(async () => (await e.metrics.value('cellar_source_up', { supplier: 'acme' })) === 1, 10_000)).toBe(true);
  }, 150_000);

  it('reloads the supplier files without a restart: a new supplier captures, a removed one stops, a broken file changes nothing', async () => {
    writeFileSync(join(e.suppliersDir, 'beta.yaml'), yaml(server.port, 'beta'));
    expect(await e.rt.reload()).toMatchObject({ ok: true, added: ['beta'], removed: [], changed: [] });
    await waitFor('beta captured after the reload', (h) => h.status === 'ok' && (h.capture?.changes ?? 0) >= 50, 40_000, 'beta');

    writeFileSync(join(e.suppliersDir, 'gamma.yaml'), 'id: gamma\nsource: { kind: postgres }\n');
    const bad = await e.rt.reload();
    expect(bad.ok).toBe(false);
    expect(bad.error).toContain('gamma.yaml');
    rmSync(join(e.suppliersDir, 'gamma.yaml'));

    rmSync(join(e.suppliersDir, 'beta.yaml'));
    expect(await e.rt.reload()).toMatchObject({ ok: true, added: [], removed: ['beta'], changed: [] });
    await waitFor('beta stopped after its file was removed', (h) => h.status === 'stopped', 20_000, 'beta');
    expect((await health()).status, 'acme untouched').toBe('ok');
    expect(e.failed()).toBeUndefined();
  }, 120_000);

  it('tells reconciliation the capture is stopped: drift while it is blamed on capture, not on a lost change', async () => {
    const file = join(e.suppliersDir, 'acme.yaml');
    const kept = readFileSync(file, 'utf8');
    // A registry needs one file: a MongoDB supplier, which the embedded runtime does not read.
    copyFileSync('connectors/suppliers/examples/harbor-spirits.yaml', join(e.suppliersDir, 'harbor-spirits.yaml'));
    rmSync(file);
    expect(await e.rt.reload()).toMatchObject({ ok: true, removed: ['acme'] });
    await waitFor('acme stopped', (h) => h.status === 'stopped', 20_000);
    const c = new pg.Client(`postgres://postgres@127.0.0.1:${server.port}/supplier`);
    await c.connect();
    await c.query('UPDATE public.stock SET qty = qty + 5 WHERE id <= 3');
    await c.end();
    const r = await runCellar(['reconcile', '--supplier', 'acme', '--settle', '200', '--rounds', '1'], env, logDir);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/capture of acme is stopped since .*: the change is probably not read yet/);
    writeFileSync(file, kept);
    expect(await e.rt.reload()).toMatchObject({ ok: true, added: ['acme'] });
    await waitFor('acme streaming again, the changes read from its slot', (h) => h.status === 'ok', 30_000);
    const again = await runCellar(['reconcile', '--supplier', 'acme', '--settle', '500', '--rounds', '3'], env, logDir);
    expect(again.code, again.out).toBe(0);
  }, 120_000);
});
