import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';
import { CellarError } from '../core/errors.js';
import { inTransaction, query } from '../core/pg.js';
import { assetPath } from '../core/paths.js';

const DIR = assetPath('schemas', 'postgres');
const LOCK_ID = 0x63656c6c; // "cell": serializes concurrent `cellar migrate` runs

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

/** The migrations shipped in schemas/postgres, `NNNN_name.sql`, in order. */
export function listMigrations(dir = DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f))
    .sort()
    .map((f) => {
      const sql = readFileSync(`${dir}/${f}`, 'utf8');
      return { version: Number(f.slice(0, 4)), name: f.slice(5, -4), sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/**
 * Applies pending migrations, each in its own transaction, under an advisory lock so concurrent runs
 * wait for each other. Already-applied migrations are skipped; one whose file changed after it was
 * applied is an error (never edit an applied migration). Returns the versions applied now.
 */
export async function migrate(pool: pg.Pool, migrations = listMigrations()): Promise<number[]> {
  const applied: number[] = [];
  await inTransaction(pool, 'migrate', async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID]);
    await client.query(`CREATE TABLE IF NOT EXISTS public.cellar_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number; checksum: string; name: string }>('SELECT version, name, checksum FROM public.cellar_migrations');
    const done = new Map(rows.map((r) => [r.version, r]));
    for (const m of migrations) {
      const prev = done.get(m.version);
      if (prev) {
        if (prev.checksum !== m.checksum) {
          throw new CellarError('migration_changed', `migration ${m.version}_${m.name} was changed after it was applied; add a new migration instead`);
        }
        continue;
      }
      await client.query(m.sql);
      await client.query('INSERT INTO public.cellar_migrations (version, name, checksum) VALUES ($1, $2, $3)', [m.version, m.name, m.checksum]);
      applied.push(m.version);
    }
  });
  return applied;
}

/** The applied migration versions (empty when none). */
export async function appliedMigrations(pool: pg.Pool): Promise<number[]> {
  const exists = await query(pool, 'reading migrations', "SELECT to_regclass('public.cellar_migrations') AS t");
  if (!exists.rows[0]?.t) return [];
  const { rows } = await query<{ version: number }>(pool, 'reading migrations', 'SELECT version FROM public.cellar_migrations ORDER BY version');
  return rows.map((r) => r.version);
}
