import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { describe, expect, it } from 'vitest';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { mariadbAvailable } from '../../infra/local/mariadb.js';
import { artifactDir } from '../support/services.js';

/** True when something accepts connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** `cellar demo` as a user runs it: its own services, four suppliers (three with MariaDB absent), a check, a clean exit. */
describe('cellar demo (the main job)', () => {
  it('captures every supplier, ends with every regional total equal to the suppliers\' rows, and stops what it started', async () => {
    const log = join(artifactDir('demo'), 'demo.log');
    const child = spawnCellar(['demo', '--rate', '400', '--duration', '4'], { CELLAR_LOG_LEVEL: 'warn' }, log);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    const out = readFileSync(log, 'utf8');
    expect(code, out).toBe(0);
    expect(out).toContain('All regional totals equal the sums over the suppliers\' rows.');
    const withMariaDb = await mariadbAvailable();
    const captured = /captured: (.*)/.exec(out)?.[1]?.split(', ') ?? [];
    expect(captured.sort()).toEqual([...(withMariaDb ? ['cascade-wines'] : []), 'northsea-wines', 'pacific-cellars', 'rhone-imports']);
    // Three regions, each checked in Postgres and Redis.
    expect(out.match(/^(eu-west|us-east|us-west) .* yes +yes$/gm)).toHaveLength(3);
    expect(out).toMatch(/dead letters 0\n/);
    expect(Number(/changes +([\d,]+) in/.exec(out)?.[1]?.replace(/,/g, ''))).toBeGreaterThan(500);
    // The private servers it started are gone.
    const ports = [...out.matchAll(/(?:Postgres|Redis|MariaDB) :(\d+)/g)].map((m) => Number(m[1]));
    expect(ports.length).toBe(withMariaDb ? 3 : 2);
    // The read API and dashboard were served, and are gone too.
    const api = /Read API http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
    expect(api, 'the demo serves the read API').not.toBeNull();
    expect(out).toMatch(/Dashboard: http:\/\/127\.0\.0\.1:\d+\/dashboard#key=/);
    ports.push(Number(api![1]));
    for (const port of ports) expect(await listening(port), `port ${port}`).toBe(false);
  }, 180_000);
});
