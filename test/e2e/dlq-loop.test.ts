import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { createDatabase } from '../../infra/local/postgres.js';
import { stopChild } from '../../infra/local/process.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { runCellar } from '../support/cli.js';
import type { Totals } from '../support/pipeline.js';
import { addRow, storesConverged } from '../support/stores.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';

/**
 * The operator's loop on dead letters, in the embedded runtime: changes are refused (a mapped column
 * renamed), `cellar dlq list` shows them per supplier with their status, a replay before the fix says each
 * one was refused again and why (exit 1), and after the file is fixed and reloaded into the running runtime
 * (`cellar reload`, no restart; a broken file is refused naming it) a replay applies them, resolves the letters
 * (who, when, how) and the totals equal the supplier's rows; reconciliation then finds nothing.
 */
describe('dead letters: list, replay refused again, fix the file, reload without restart, replay applied, resolved', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  const logDir = artifactDir('dlq-loop');
  let supplier: pg.Client;
  let cellarPool: pg.Pool;
  let redis: Redis;
  let env: Record<string, string>;
  let dir: string;
  let proc: ChildProcess | undefined;
  let runs = 0;
  const start = () => (proc = spawnCellar(['run', 'embedded'], env, join(logDir, `embedded-${++runs}.log`)));
  const cli = (args: string[]) => runCellar(args, { ...env, CELLAR_LOG_LEVEL: 'warn', CELLAR_ACTOR: 'on-call' }, logDir);
  const letters = async () => (await cellarPool.query<{ id: string; status: string; replay_of: string | null; replayed_by: string | null; resolved_by: string | null; resolution: string | null }>(
    `SELECT id, status, replay_of, replayed_by, resolved_by, resolution FROM cellar.dead_letters WHERE reason = 'missing_field' ORDER BY id`)).rows;

  beforeAll(async () => {
    const s = await stockSupplier({ rows: 60, skus: 5, maxQty: 10 });
    supplier = s.client;
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    cellarPool = createPgPool(cellarUrl, { max: 2 });
    redis = new Redis(services().redisUrl);
    dir = supplierDir({ acme: postgresSupplierYaml(s.url, { regions: { d1: R1, d2: R2 } }) });
    env = cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_SUPPLIERS_DIR: dir });
    start();
  }, 60_000);

  afterAll(async () => {
    if (proc) await stopChild(proc, 'SIGTERM', 15_000);
    await supplier?.end();
    await cellarPool?.end();
    redis?.disconnect();
  });

  let qty = 'qty';
  async function truth(): Promise<Totals> {
    const { rows } = await supplier.query<{ sku: string; depot: string; q: string }>(`SELECT sku, depot, ${qty}::text AS q FROM public.stock`);
    const out: Totals = new Map();
    for (const r of rows) addRow(out, region[r.depot]!, r.sku, Number(r.q));
    return out;
  }
  const converged = () => storesConverged(truth, cellarPool, redis, [R1, R2]);

  it('walks the loop', async () => {
    expect(await converged(), `initial snapshot (${logDir})`).toEqual([]);
    await supplier.query('ALTER TABLE public.stock RENAME COLUMN qty TO cases');
    qty = 'cases';
    await supplier.query('UPDATE public.stock SET cases = cases + 2 WHERE id % 5 = 0');
    const refused = (await supplier.query<{ n: number }>('SELECT count(*)::int AS n FROM public.stock WHERE id % 5 = 0')).rows[0]!.n;
    expect(await eventually(async () => (await letters()).length === refused, 60_000), `${refused} changes dead-lettered (${logDir})`).toBe(true);

    // Listed per supplier, counted by status; another supplier has none; a bad flag is named.
    const listed = await cli(['dlq', 'list', '--supplier', 'acme']);
    expect(listed.out).toMatch(new RegExp(`normalizer\\s+missing_field\\s+${refused}\\s+${refused}\\s+0\\s+0`));
    expect((await cli(['dlq', 'list', '--supplier', 'nope'])).out).toContain('no dead letters match');
    const bad = await cli(['dlq', 'list', '--since', 'yesterdayish']);
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('--since: "yesterdayish"');
    expect((await cli(['dlq', 'list', '--since', '1h', '--supplier', 'acme'])).out).toContain('missing_field');

    // Replayed before the fix: each is refused again, the replay says why and fails.
    const early = await cli(['dlq', 'replay', '--supplier', 'acme', '--wait', '30']);
    expect(early.code, early.out).toBe(1);
    expect(early.out).toContain(`handed ${refused} back to the embedded runtime`);
    expect(early.out).toMatch(/letter \d+ \(missing_field\) refused again as letter \d+: missing_field: quantity field "qty" is missing/);
    const afterEarly = await letters();
    expect(afterEarly.filter((l) => l.replay_of === null).every((l) => l.status === 'replayed' && l.replayed_by === 'on-call')).toBe(true);
    expect(afterEarly.filter((l) => l.replay_of !== null)).toHaveLength(refused);

    // Reconciliation with the fixed file, while the runtime still runs the old one: its corrections are
    // refused by the pipeline, and the report says so, naming the letters, instead of claiming a repair.
    const good = readFileSync(join(dir, 'acme.yaml'), 'utf8');
    const fixedDir = supplierDir({ acme: good.replace('quantity: qty', 'quantity: cases') });
    const recon1 = await runCellar(['reconcile', '--supplier', 'acme', '--repair', '--settle', '500', '--rounds', '2', '--verify-timeout', '8000'], { ...env, CELLAR_SUPPLIERS_DIR: fixedDir, CELLAR_LOG_LEVEL: 'warn' }, logDir);
    expect(recon1.code, recon1.out).toBe(1);
    expect(recon1.out).toMatch(new RegExp(`${refused} corrections dead-lettered by the running pipeline`));
    expect(recon1.out).toMatch(/the correction was dead-lettered \(letter \d+, missing_field\)/);

    // A broken file is refused before anything is asked of the runtime, naming the problem.
    writeFileSync(join(dir, 'acme.yaml'), good.replace('mapping:', 'mapping: [oops'));
    const broken = await cli(['reload']);
    expect(broken.code, broken.out).toBe(2);
    expect(broken.out).toContain('acme.yaml');

    // The fix: the supplier file names the new column; the running runtime reloads it, no restart.
    writeFileSync(join(dir, 'acme.yaml'), good.replace('quantity: qty', 'quantity: cases'));
    const reloaded = await cli(['reload']);
    expect(reloaded.code, reloaded.out).toBe(0);
    expect(reloaded.out).toMatch(/reloaded by embedded .*: 1 supplier files; added none; removed none; changed acme/);
    expect(proc!.exitCode, 'the same process').toBeNull();
    const open = (await letters()).filter((l) => l.status !== 'resolved').length;
    const fixed = await cli(['dlq', 'replay', '--supplier', 'acme', '--reason', 'missing_field']);
    expect(fixed.code, fixed.out).toBe(0);
    expect(fixed.out).toMatch(new RegExp(`applied ${open} \\(.*\\): resolved`));
    expect(await converged(), `after the fix and the replay (${logDir})`).toEqual([]);
    const done = await letters();
    expect(done.every((l) => l.status === 'resolved' && l.resolved_by === 'on-call' && l.resolution === 'replayed and applied'), JSON.stringify(done.slice(0, 3))).toBe(true);
    expect((await cli(['dlq', 'list', '--supplier', 'acme', '--status', 'pending'])).out).toContain('no dead letters match');

    // SIGHUP reloads too (nothing changed: nothing restarts).
    proc!.kill('SIGHUP');
    expect(await eventually(async () => readFileSync(join(logDir, `embedded-${runs}.log`), 'utf8').includes('"changed":[],') , 10_000), 'SIGHUP reloaded').toBe(true);
    await supplier.query('UPDATE public.stock SET cases = cases + 1 WHERE id % 7 = 0');
    expect(await converged(), `after SIGHUP (${logDir})`).toEqual([]);

    // Closing letters by hand needs a filter and a note.
    const unnamed = await cli(['dlq', 'resolve', '--note', 'x']);
    expect(unnamed.code).toBe(2);
    expect(unnamed.out).toContain('name the letters');

    const recon = await cli(['reconcile', '--supplier', 'acme']);
    expect(recon.code, recon.out).toBe(0);
    expect(recon.out).toMatch(/0 drifted|no drift/);
  }, 240_000);
});
