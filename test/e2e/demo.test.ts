import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { describe, expect, it } from 'vitest';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { mariadbAvailable } from '../../infra/local/mariadb.js';
import { artifactDir } from '../support/services.js';
import { waitForOutput } from '../support/cli.js';

/** True when something accepts connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/**
 * `cellar demo --keep-running` as a user runs it: its own services, five suppliers (four with MariaDB
 * absent; one a CSV file feed), a check, the dashboard kept up until Ctrl-C (SIGINT), then everything it started stopped. The
 * terminal shows only the demo's own lines; log lines go to the file it names.
 */
describe('cellar demo (the main job)', () => {
  it('captures every supplier, ends with every regional total equal to the suppliers\' rows, keeps the dashboard up until Ctrl-C, and stops what it started', async () => {
    const log = join(artifactDir('demo'), 'demo.log');
    // An empty VITEST_WORKER_ID: the demo handles Ctrl-C as in a terminal (infra/local/process.ts leaves
    // signals to the test runner inside its workers, and the child would inherit that).
    const child = spawnCellar(['demo', '--rate', '400', '--duration', '4', '--keep-running'], { VITEST_WORKER_ID: '' }, log);
    let code: number | null | undefined;
    const exit = new Promise<number | null>((resolve) => child.once('exit', (c, signal) => resolve((code = c ?? (signal ? -1 : null)))));
    const up = await waitForOutput(log, /^Dashboard \(up until Ctrl-C\): (http:\/\/127\.0\.0\.1:\d+)\/dashboard#key=(\S+)$/m, () => code !== undefined, 170_000);
    expect(up, readFileSync(log, 'utf8')).toBeDefined();
    const [, apiUrl, key] = up!;

    // Still up a while after the summary, and counting SKUs as the demo's table does.
    await new Promise((r) => setTimeout(r, 5_000));
    expect(code, 'the demo exited before Ctrl-C').toBeUndefined();
    expect((await fetch(`${apiUrl}/dashboard`)).status).toBe(200);
    const regions = (await (await fetch(`${apiUrl}/v1/regions`, { headers: { authorization: `Bearer ${key}` } })).json()) as { regions: Array<{ region: string; skus: number; bottles: number }> };
    const running = readFileSync(log, 'utf8');
    const table = [...running.matchAll(/^(eu-west|us-east|us-west) +\d+ +(\d+) +\d+ +(\d+) +yes +yes +yes$/gm)].map(([, region, skus, bottles]) => ({ region: region!, skus: Number(skus), bottles: Number(bottles) }));
    expect(regions.regions.map((r) => ({ region: r.region, skus: r.skus, bottles: r.bottles }))).toEqual(table);
    expect(running).toContain('SKUs, magnums and bottles are counted as the dashboard counts them (GET /v1/regions)');
    const logFile = /^Logs \(JSON, level \w+\): (\S+)$/m.exec(running)?.[1];
    expect(logFile, 'the log file is named').toBeDefined();
    expect(existsSync(logFile!)).toBe(true);

    child.kill('SIGINT'); // Ctrl-C
    await exit;
    const out = readFileSync(log, 'utf8');
    expect(code, out).toBe(130);
    expect(out).toContain('SIGINT: stopping what was started');
    // Human output only: no JSON log line on the terminal, at start, during the run or on Ctrl-C.
    expect(out).not.toMatch(/^\s*\{"level"/m);
    if (process.env.CELLAR_KEEP_LOGS !== '1') expect(existsSync(logFile!), 'the log is removed with the rest').toBe(false);
    expect(out).toContain('All regional totals equal the sums over the suppliers\' rows, per (region, SKU) with bottle sizes kept apart.');
    const withMariaDb = await mariadbAvailable();
    const captured = /captured: (.*)/.exec(out)?.[1]?.split(', ') ?? [];
    expect(captured.sort()).toEqual([...(withMariaDb ? ['cascade-wines'] : []), 'northsea-wines', 'pacific-cellars', 'rhone-imports', 'valley-estate']);
    // The file-feed supplier: its exports applied, the one cut short held back, its status naming its last file.
    expect(out).toMatch(/file feed +valley-estate: \d+ exports applied, each once, only their changed rows; stock-\d{4}\.csv, cut short after 12 rows, was held back/);
    expect(out).toMatch(/its status: last file stock-\d{4}\.csv: \d+ rows/);
    // Three regions, each checked in Postgres and Redis, sizes included; each region stocks magnums too.
    const regionRows = [...out.matchAll(/^(eu-west|us-east|us-west) +\d+ +(\d+) +(\d+) +\d+ +yes +yes +yes$/gm)];
    expect(regionRows).toHaveLength(3);
    for (const [, , skus, magnums] of regionRows) {
      expect(Number(magnums)).toBeGreaterThan(0);
      expect(Number(magnums)).toBeLessThan(Number(skus));
    }
    // No row was dead-lettered, so no bottle_size_mismatch either.
    expect(out).toMatch(/dead letters 0\n/);
    expect(Number(/changes +([\d,]+) in/.exec(out)?.[1]?.replace(/,/g, ''))).toBeGreaterThan(500);

    // Bottle sizes: northsea-wines lists 750 ml bottles and magnums under one code, mapped by size.
    const int = (s: string | undefined) => Number(s?.replace(/,/g, ''));
    expect(out).toMatch(/northsea-wines: .*\([\d,]+ of 750 ml, [\d,]+ of 1500 ml\), SKU map csv keyed by bottle size/);
    // The canonical catalog is imported before the pipeline starts, each SKU with its one size.
    const imported = /([\d,]+) canonical SKUs imported: ([\d,]+) of 750 ml, ([\d,]+) of 1500 ml/.exec(out);
    expect(imported, 'the catalog import line').not.toBeNull();
    expect(int(imported![2]) + int(imported![3])).toBe(int(imported![1]));
    expect(out.indexOf('canonical SKUs imported')).toBeLessThan(out.indexOf('captured: '));
    // The final check went per (region, SKU) with sizes apart, and checked every row's size against the catalog.
    const totals = /sizes +checked per \(region, SKU\) with 750 and 1500 ml kept apart: ([\d,]+) totals against SQL sums grouped by the canonical SKU of each \(code, bottle size\)/.exec(out);
    expect(totals, 'the per-size check line').not.toBeNull();
    expect(int(totals![1])).toBeGreaterThan(2000);
    expect(out).toMatch(/every one of [\d,]+ cellar\.regional_stock rows has its SKU's bottle_size_ml from cellar\.catalog/);
    // One northsea code in one region: two canonical SKUs, two totals, never summed.
    const ex = /e\.g\. northsea-wines (\S+) in ([\w-]+): 750 ml → (\S+) ([\d,]+) bottles, 1500 ml → (\S+) ([\d,]+) bottles/.exec(out);
    expect(ex, 'an example of one code in two sizes').not.toBeNull();
    const [, , , bottleSku, bottles, magnumSku, magnums] = ex!;
    expect(magnumSku).not.toBe(bottleSku);
    expect(magnumSku).toBe(`${bottleSku}-magnum`);
    expect(int(bottles)).toBeGreaterThan(0);
    expect(int(magnums)).toBeGreaterThan(0);
    // The generator changed rows of both sizes.
    const bySize = /changes to 750 ml rows ([\d,]+), 1500 ml rows ([\d,]+)/.exec(out);
    expect(int(bySize?.[1])).toBeGreaterThan(0);
    expect(int(bySize?.[2])).toBeGreaterThan(0);
    // The private servers it started are gone.
    const ports = [...out.matchAll(/(?:Postgres|Redis|MariaDB) :(\d+)/g)].map((m) => Number(m[1]));
    expect(ports.length).toBe(withMariaDb ? 3 : 2);
    // The read API and dashboard were served, and are gone too.
    const api = /Read API http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
    expect(api, 'the demo serves the read API').not.toBeNull();
    expect(out).toMatch(/Dashboard: http:\/\/127\.0\.0\.1:\d+\/dashboard#key=/);
    ports.push(Number(api![1]));
    for (const port of ports) expect(await listening(port), `port ${port}`).toBe(false);
  }, 240_000);
});
