import { describe, expect, it } from 'vitest';
import { createDatabase } from '../../infra/local/postgres.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { appliedMigrations, listMigrations, migrate } from '../../pipelines/state/migrate.js';
import { rid, services } from '../support/services.js';

describe('cellar migrate', () => {
  it('applies the migrations once; a second and concurrent runs are no-ops', async () => {
    const pool = createPgPool(await createDatabase(services().pgUrl, rid('mig_')), { max: 6 });
    try {
      const all = listMigrations().map((m) => m.version);
      const runs = await Promise.all([migrate(pool), migrate(pool), migrate(pool)]);
      expect(runs.flat().sort((a, b) => a - b)).toEqual(all);
      expect(await migrate(pool)).toEqual([]);
      expect(await appliedMigrations(pool)).toEqual(all);
      const { rows } = await pool.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'cellar' ORDER BY 1`);
      expect(rows.map((r) => r.table_name)).toEqual(expect.arrayContaining(['regional_stock', 'stock_contributions', 'dead_letters', 'checkpoints', 'contributor_routes']));
    } finally {
      await pool.end();
    }
  });

  it('refuses to run when an applied migration was edited', async () => {
    const pool = createPgPool(await createDatabase(services().pgUrl, rid('mig_')));
    try {
      const ms = listMigrations();
      await migrate(pool, ms);
      await expect(migrate(pool, [{ ...ms[0]!, checksum: 'changed' }])).rejects.toThrow(/was changed after it was applied/);
    } finally {
      await pool.end();
    }
  });
});
