import pg from 'pg';
import { pgConfig } from './pg-tls.js';
import { fromPgError } from './errors.js';

/**
 * A pg pool whose idle-client errors (a server restart) are absorbed: the pool drops the client and
 * the next query reconnects. Query errors are converted with fromPgError by callers.
 */
export function createPgPool(url: string, options: { max?: number; applicationName?: string } = {}): pg.Pool {
  const pool = new pg.Pool(pgConfig(url, {
    max: options.max ?? 4,
    application_name: options.applicationName ?? 'cellar',
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // A peer that vanished without closing the connection (a host gone, a dropped NAT entry) is found by
    // TCP keepalive instead of leaving a query waiting forever.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  }));
  pool.on('error', () => undefined);
  return pool;
}

/** Runs `fn` in a transaction on one client; converts errors. */
export async function inTransaction<T>(pool: pg.Pool, what: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw fromPgError(err, `${what}: connecting`);
  }
  let broken = false;
  // A checked-out client has no pool listener: without this one, a server restart mid-transaction emits an
  // unhandled 'error' event and ends the process. The query in flight fails (and is retried by the caller).
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw fromPgError(err, what);
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/** Runs one query, converting errors. */
export async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(
  pool: pg.Pool | pg.PoolClient,
  what: string,
  text: string,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>(text, values);
  } catch (err) {
    throw fromPgError(err, what);
  }
}
