import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { freePort } from '../../infra/local/process.js';
import { createApiKey } from '../../pipelines/api/keys-store.js';
import { upsertRegionalStock } from '../../sinks/postgres/sink.js';
import { migrate } from '../../pipelines/state/migrate.js';
import { artifactDir, cellarEnv, eventually, freshDatabase, rid } from '../support/services.js';

/** Processes whose parent is `pid`. */
function children(pid: number): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try {
      return Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === pid;
    } catch {
      return false;
    }
  }).map(Number);
}

/** `cellar run api` with CELLAR_API_WORKERS: several processes on one port, a replaced worker, a clean stop. */
describe('read API workers (CELLAR_API_WORKERS)', () => {
  it('serves from every worker on one port, replaces a worker that dies, and stops them all on SIGTERM', async () => {
    const db = await freshDatabase();
    await migrate(db.pool);
    const region = rid('west');
    await upsertRegionalStock(db.pool, [{ region, sku: 'wine-1', bottleSizeMl: 750, bottles: 12, contributors: 1, version: 1, sourceTsMs: Date.now(), updatedTsMs: Date.now() }]);
    const { key } = await createApiKey(db.pool, { name: 'workers', role: 'reader', rateLimitPerS: 0 });
    const port = await freePort();
    const env = cellarEnv({ CELLAR_PG_URL: db.url, CELLAR_API_PORT: String(port), CELLAR_API_WORKERS: '2' });
    const api = spawnCellar(['run', 'api'], env, join(artifactDir('api-workers'), 'api.log'));
    const read = () => fetch(`http://127.0.0.1:${port}/v1/stock/${region}/wine-1`, { headers: { authorization: `Bearer ${key}` } }).then(async (r) => (r.ok ? ((await r.json()) as { bottles: number }).bottles : r.status), () => -1);
    try {
      const up = await eventually(async () => (await read()) === 12 && children(api.pid!).length === 2, 60_000);
      expect(up, `read ${await read()}, workers ${children(api.pid!).length}`).toBe(true);
      // Many requests over fresh connections: all answered while both workers serve.
      const answers = await Promise.all(Array.from({ length: 40 }, read));
      expect(answers.every((a) => a === 12)).toBe(true);
      const [victim] = children(api.pid!);
      process.kill(victim!, 'SIGKILL');
      expect(await eventually(async () => children(api.pid!).length === 2 && !children(api.pid!).includes(victim!) && (await read()) === 12, 30_000)).toBe(true);
    } finally {
      const exited = new Promise<number | null>((resolve) => api.once('exit', resolve));
      api.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(await read()).toBe(-1); // nothing listens any more
      await db.pool.end();
    }
  }, 120_000);
});
