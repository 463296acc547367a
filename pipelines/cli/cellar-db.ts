import type pg from 'pg';

/**
 * Runs a command's `fn` with the modules `load` brings (imported when the command runs, never for `cellar
 * --help`) and a one-connection pool on CELLAR_PG_URL, closed after, whatever `fn` does.
 */
export async function withCellarDb<M, T>(load: () => Promise<M>, fn: (m: M, pool: pg.Pool) => Promise<T>): Promise<T> {
  const [m, { loadRuntimeConfig }, { createPgPool }] = await Promise.all([load(), import('../core/config.js'), import('../core/pg.js')]);
  const pool = createPgPool(loadRuntimeConfig().pgUrl, { max: 1 });
  try {
    return await fn(m, pool);
  } finally {
    await pool.end();
  }
}
