import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { finishRun, startRun } from '../../pipelines/state/runs.js';
import { runCellar } from '../support/cli.js';
import { artifactDir, freshDatabase } from '../support/services.js';

/**
 * `cellar reconcile runs --supplier X` lists only X's runs. `reconcile` has a `--supplier` of its own, which
 * commander used to take for itself when it came after `runs`, so the filter was silently dropped and every
 * supplier's runs were listed; an unknown supplier now says it has none.
 */
describe('cellar reconcile runs --supplier', () => {
  let cellar: { url: string; pool: pg.Pool };
  const logDir = artifactDir('reconcile-runs');
  const cli = (args: string[]) => runCellar(['reconcile', 'runs', ...args], { CELLAR_PG_URL: cellar.url, CELLAR_LOG_LEVEL: 'warn' }, logDir);
  /** The supplier column of the table `runs` printed, top to bottom. */
  const suppliers = (out: string) => out.split('\n').filter((l) => /^\s*\d+\s/.test(l)).map((l) => l.trim().split(/\s+/)[1]);

  beforeAll(async () => {
    cellar = await freshDatabase();
    for (const [supplier, outcome] of [['acme', 'clean'], ['bravo', 'drift'], ['acme', 'repaired'], ['bravo', 'clean']] as const) {
      const id = await startRun(cellar.pool, supplier, 'manual');
      await finishRun(cellar.pool, id, { rowsCompared: 10, drifted: outcome === 'clean' ? 0 : 1, repaired: outcome === 'repaired' ? 1 : 0, unsettled: 0, outcome });
    }
  });
  afterAll(async () => {
    await cellar?.pool.end();
  });

  it('lists only the runs of the supplier asked for', async () => {
    const all = await cli([]);
    expect(all.code, all.out).toBe(0);
    expect(suppliers(all.out)).toEqual(['bravo', 'acme', 'bravo', 'acme']);

    const acme = await cli(['--supplier', 'acme']);
    expect(acme.code, acme.out).toBe(0);
    expect(suppliers(acme.out)).toEqual(['acme', 'acme']);
    expect(acme.out).toMatch(/repaired/);

    const limited = await cli(['--supplier', 'bravo', '--limit', '1']);
    expect(suppliers(limited.out)).toEqual(['bravo']);
  }, 60_000);

  it('says an unknown supplier has no runs instead of listing everyone\'s', async () => {
    const r = await cli(['--supplier', 'nope']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('no reconciliation runs for supplier nope');
    expect(r.out).not.toMatch(/acme|bravo/);
  }, 30_000);

  it('names a bad --limit', async () => {
    const r = await cli(['--limit', '0']);
    expect(r.code).toBe(2);
    expect(r.out).toContain('--limit "0"');
  }, 30_000);
});
