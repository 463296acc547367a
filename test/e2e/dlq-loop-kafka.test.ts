import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { stopChild } from '../../infra/local/process.js';
import { call, keysByRole, startTestApi, type TestApi } from '../api/api-support.js';
import { runCellar } from '../support/cli.js';
import { PipelineUnderTest, type Totals } from '../support/pipeline.js';
import { addRow } from '../support/stores.js';
import { artifactDir, eventually, freshDatabase, rid, services } from '../support/services.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';

/**
 * The operator's loop in the Kafka runtime: `cellar run capture` reading a real Postgres supplier and the
 * four worker processes. A renamed column makes the normalizer dead-letter the supplier's changes; the
 * letters show per supplier in the read API; a replay before the fix says each was refused again; the
 * fixed file is reloaded by `cellar reload` into the running normalizer and capture (each answers, no
 * restart); a replay then applies them, the letters are resolved, the totals equal the rows and
 * reconciliation finds nothing.
 */
describe('dead letters in the Kafka runtime: per-supplier view, fix, reload without restart, replay, reconcile', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const logDir = artifactDir('dlq-loop-kafka');
  let supplier: pg.Client;
  let db: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;
  let capture: ChildProcess | undefined;
  let api: TestApi;
  let reader: string;
  let yaml: string;
  let otherUrl: string;
  const cli = (args: string[]) => runCellar(args, { ...p.env, CELLAR_LOG_LEVEL: 'warn', CELLAR_ACTOR: 'on-call' }, logDir);
  const letters = async () => (await db.pool.query<{ id: string; status: string; replay_of: string | null; resolved_by: string | null }>(
    `SELECT id, status, replay_of, resolved_by FROM cellar.dead_letters WHERE reason = 'missing_field' ORDER BY id`)).rows;

  beforeAll(async () => {
    const s = await stockSupplier({ rows: 60, skus: 5, maxQty: 10 });
    supplier = s.client;
    const other = await stockSupplier({ rows: 5 });
    otherUrl = other.url;
    await other.client.end();
    db = await freshDatabase();
    yaml = postgresSupplierYaml(s.url, { regions: { d1: R1, d2: R2 } });
    p = new PipelineUnderTest(db.url, db.pool, { acme: yaml }, logDir);
    capture = spawnCellar(['run', 'capture', '--supplier', 'acme'], p.env, join(logDir, 'capture.log'));
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
    api = await startTestApi({ pgUrl: db.url, redisUrl: services().redisUrl });
    reader = (await keysByRole(db.pool, rid('k'))).reader;
  }, 60_000);

  afterAll(async () => {
    await api?.close();
    if (capture) await stopChild(capture, 'SIGTERM', 15_000);
    await p?.stop();
    await supplier?.end();
    await db?.pool.end();
  });

  let qty = 'qty';
  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; q: number }>(`SELECT sku, depot, ${qty} AS q FROM public.stock`);
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.q);
    return out;
  }

  it('walks the loop', async () => {
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
    await supplier.query('ALTER TABLE public.stock RENAME COLUMN qty TO cases');
    qty = 'cases';
    await supplier.query('UPDATE public.stock SET cases = cases + 2 WHERE id % 5 = 0');
    const refused = (await supplier.query<{ n: number }>('SELECT count(*)::int AS n FROM public.stock WHERE id % 5 = 0')).rows[0]!.n;
    expect(await eventually(async () => (await letters()).length === refused, 90_000), `${refused} changes dead-lettered (${logDir})\n${p.explain()}`).toBe(true);

    // The per-supplier view shows them: count by reason, the newest messages naming the missing field.
    const seen = await call(`${api.url}/v1/suppliers/acme`, reader);
    expect(seen.status).toBe(200);
    expect(seen.body.deadLetters.pending).toBe(refused);
    expect(seen.body.deadLetters.byReason).toEqual([{ reason: 'missing_field', pending: refused, total: refused }]);
    expect(seen.body.deadLetters.newest[0].message).toContain('quantity field "qty" is missing');
    expect(seen.body.capture.runtime).toBe('capture');

    // Replayed before the fix: refused again, and the replay says why (exit 1).
    const early = await cli(['dlq', 'replay', '--supplier', 'acme', '--wait', '90']);
    expect(early.code, early.out).toBe(1);
    expect(early.out.match(/refused again as letter \d+: missing_field/g), early.out).toHaveLength(refused);

    // A broken file is refused before anything is asked of the running processes.
    const dir = p.env.CELLAR_SUPPLIERS_DIR!;
    writeFileSync(join(dir, 'acme.yaml'), yaml.replace('mapping:', 'mapping: [oops'));
    const broken = await cli(['reload']);
    expect(broken.code, broken.out).toBe(2);
    expect(broken.out).toContain('acme.yaml');

    // The fix, reloaded by every process that reads the file: the normalizer and the capture each answer.
    writeFileSync(join(dir, 'acme.yaml'), yaml.replace('quantity: qty', 'quantity: cases'));
    const pids = [p.workers.get('normalizer')!.pid, capture!.pid];
    const reloaded = await cli(['reload']);
    expect(reloaded.code, reloaded.out).toBe(0);
    expect(reloaded.out).toMatch(new RegExp(`reloaded by normalizer \\S+ pid ${pids[0]}: 1 supplier files; added none; removed none; changed acme`));
    expect(reloaded.out).toMatch(new RegExp(`reloaded by capture:acme \\S+ pid ${pids[1]}: 1 supplier files; added none; removed none; changed acme`));
    expect([p.workers.get('normalizer')!.exitCode, capture!.exitCode], 'the same processes').toEqual([null, null]);

    const open = (await letters()).filter((l) => l.status !== 'resolved').length;
    const fixed = await cli(['dlq', 'replay', '--supplier', 'acme', '--reason', 'missing_field', '--wait', '90']);
    expect(fixed.code, fixed.out).toBe(0);
    expect(fixed.out).toMatch(new RegExp(`applied ${open} \\(.*\\): resolved`));
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);
    const done = await letters();
    expect(done.every((l) => l.status === 'resolved' && l.resolved_by === 'on-call'), JSON.stringify(done.slice(0, 3))).toBe(true);
    const after = await call(`${api.url}/v1/suppliers/acme`, reader);
    expect(after.body.deadLetters.pending).toBe(0);

    // Changes after the reload flow with the new column, through the restarted reader.
    await supplier.query('UPDATE public.stock SET cases = cases + 1 WHERE id % 7 = 0');
    await supplier.query("INSERT INTO public.stock VALUES (1000, 'sku-new', 'd2', 9)");
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);

    // Removed from the files: capture stops (its slot kept) and says so; changes made meanwhile wait in the
    // slot and flow once the file is back.
    const fixedYaml = readFileSync(join(dir, 'acme.yaml'), 'utf8');
    rmSync(join(dir, 'acme.yaml'));
    writeFileSync(join(dir, 'other.yaml'), postgresSupplierYaml(otherUrl, { id: 'other', regions: { d1: R1 } }));
    const removed = await cli(['reload']);
    expect(removed.code, removed.out).toBe(0);
    expect(removed.out).toMatch(/reloaded by capture:acme .*: 1 supplier files; added none; removed acme; changed none/);
    expect(removed.out).toMatch(/reloaded by normalizer .*: 1 supplier files; added other; removed acme; changed none/);
    const stopped = await call(`${api.url}/v1/suppliers/acme`, reader);
    expect([stopped.body.status, stopped.body.detail]).toEqual(['stopped', 'removed from the supplier files']);
    await supplier.query('UPDATE public.stock SET cases = cases + 3 WHERE id % 4 = 0');
    rmSync(join(dir, 'other.yaml'));
    writeFileSync(join(dir, 'acme.yaml'), fixedYaml);
    const back = await cli(['reload']);
    expect(back.code, back.out).toBe(0);
    expect(back.out).toMatch(/reloaded by capture:acme .*; added acme; removed none/);
    expect(await p.converged(await truth(), [R1, R2])).toEqual([]);

    const recon = await cli(['reconcile', '--supplier', 'acme', '--settle', '1000']);
    expect(recon.code, recon.out).toBe(0);
    const health = await call(`${api.url}/v1/suppliers/acme`, reader);
    expect(health.body.lastReconciliation).toMatchObject({ driftedKeys: 0 });
    expect(health.body.status).toBe('ok');
    expect(readFileSync(join(logDir, 'capture.log'), 'utf8')).toContain('configuration reloaded');
  }, 360_000);
});
