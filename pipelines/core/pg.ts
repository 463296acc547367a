import { createHash } from 'node:crypto';
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

/**
 * A transaction left open on one client, to be finished later (see {@link beginTransaction}): a runtime can
 * write part of a group before the previous group has committed.
 */
export interface OpenTransaction {
  readonly client: pg.PoolClient;
  /** Runs `fn` in the transaction; on an error rolls back, releases the client and throws it converted. */
  run<T>(what: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  /** Commits and releases the client; on an error as {@link OpenTransaction.run}. */
  commit(what: string): Promise<void>;
  /** Rolls back and releases the client if it is still held (never throws; safe twice). */
  abandon(): Promise<void>;
  /** The rows of each statement of `opening` (see {@link beginTransaction}), in order. */
  readonly opened: pg.QueryResultRow[][];
}

/**
 * Begins a transaction on a client of `pool`, held until it is committed or abandoned; converts errors.
 * `opening`: statements without parameters (`;`-separated) sent with the BEGIN, in the same round trip.
 */
export async function beginTransaction(pool: pg.Pool, what: string, opening?: string): Promise<OpenTransaction> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw fromPgError(err, `${what}: connecting`);
  }
  let broken = false;
  let held = true;
  // A checked-out client has no pool listener: without this one, a server restart mid-transaction emits an
  // unhandled 'error' event and ends the process. The query in flight fails (and is retried by the caller).
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  const release = () => {
    if (!held) return;
    held = false;
    client.off('error', onError);
    client.release(broken);
  };
  const abandon = async () => {
    if (!held) return;
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    release();
  };
  const run = async <T>(w: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> => {
    try {
      return await fn(client);
    } catch (err) {
      await abandon();
      throw fromPgError(err, w);
    }
  };
  const began = await run(what, (c) => c.query(opening ? `BEGIN; ${opening}` : 'BEGIN') as unknown as Promise<pg.QueryResult | pg.QueryResult[]>);
  return {
    opened: Array.isArray(began) ? began.slice(1).map((r) => r.rows) : [],
    client,
    run,
    commit: async (w) => {
      await run(w, (c) => c.query('COMMIT'));
      release();
    },
    abandon,
  };
}

/** Runs `fn` in a transaction on one client; converts errors. */
export async function inTransaction<T>(pool: pg.Pool, what: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const tx = await beginTransaction(pool, what);
  const out = await tx.run(what, fn);
  await tx.commit(what);
  return out;
}

/** Runs one query, converting errors. */
export async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(
  pool: pg.Pool | pg.PoolClient,
  what: string,
  text: string,
  values?: unknown[],
  /** Sent as the named prepared statement `name` (parsed and planned once per connection). */
  name?: string,
): Promise<pg.QueryResult<R>> {
  try {
    return await (name ? pool.query<R>({ name, text, values }) : pool.query<R>(text, values));
  } catch (err) {
    throw fromPgError(err, what);
  }
}

/** One SQL statement with its parameters (`$1`… numbered from 1), to run alone or with others ({@link queryAll}). */
export interface Statement {
  text: string;
  values: unknown[];
}

/**
 * Runs data-modifying statements as one: each becomes a `WITH` query of a single statement, parameters
 * renumbered, so a commit's writes cost one round trip to the server instead of one each (on a loaded
 * machine every round trip waits to be scheduled twice). Postgres runs every data-modifying `WITH` query,
 * all on one snapshot: the statements must write different rows and none may read what another writes.
 * `read` (a SELECT, which may lock what it reads) runs in the same statement; its rows are returned.
 *
 * `prepare` (default off) sends it as a named prepared statement, one per distinct text and connection:
 * the server parses and plans it once per connection instead of at every call (about 0.5 ms of a
 * 1–1.5 ms statement for 50 rows). Off behind a pooler that does not keep prepared statements (PgBouncer
 * before 1.21 in transaction mode): see CELLAR_PG_PREPARED_STATEMENTS.
 */
export async function queryAll<R extends pg.QueryResultRow = pg.QueryResultRow>(
  q: pg.Pool | pg.PoolClient,
  what: string,
  statements: Statement[],
  read?: Statement,
  opts: { prepare?: boolean } = {},
): Promise<R[]> {
  const all = read ? [read, ...statements] : statements;
  if (all.length === 0) return [];
  let text: string;
  let values: unknown[];
  if (all.length === 1) ({ text, values } = all[0]!);
  else {
    values = [];
    const parts = all.map((st, i) => {
      const base = values.length;
      values.push(...st.values);
      return `w${i} AS (${st.text.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + base}`)}\n)`;
    });
    text = `WITH ${parts.join(',\n')}\n${read ? 'SELECT * FROM w0' : 'SELECT 1 WHERE false'}`;
  }
  return (await query<R>(q, what, text, values, opts.prepare ? preparedName(text) : undefined)).rows;
}

/** Names of prepared statements by text (texts are few: one per mix of statements a caller sends). */
const preparedNames = new Map<string, string>();

/** A name for `text` as a prepared statement: the same text gets the same name on every connection. */
function preparedName(text: string): string {
  let name = preparedNames.get(text);
  if (name === undefined) {
    name = `cellar_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    // Bounded: callers build texts from a few shapes, but a bug must not make this grow without end.
    if (preparedNames.size >= 1_000) preparedNames.clear();
    preparedNames.set(text, name);
  }
  return name;
}

/** The parts of node-postgres' connection a COPY FROM STDIN writes to. */
interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/**
 * Sends `data` (COPY text format: rows of tab-separated fields, each line ending in `\n`) through
 * `COPY … FROM STDIN` on one client, converting errors. Rows are parsed by the server without a query
 * plan per row: the cheapest way to append many rows.
 *
 * A query object in node-postgres' queue (its submittable protocol) writes the data right behind the
 * query, not when the server's CopyInResponse is read: that answer waits for this process' event loop,
 * often busy with the next batch, and the server would sit idle meanwhile. The server reads the data once
 * in copy mode; should the COPY fail before that, it discards copy messages outside copy mode (as the
 * protocol says) and the error is reported as usual.
 */
export function copyIn(client: pg.PoolClient, what: string, copySql: string, data: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let done = false;
    // An error settles at once: a broken connection sends no ReadyForQuery after it.
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      if (err === undefined) resolve();
      else reject(fromPgError(err, what));
    };
    const submittable = {
      submit: (connection: CopyConnection) => {
        connection.query(copySql);
        connection.sendCopyFromChunk(Buffer.from(data, 'utf8'));
        connection.endCopyFrom();
      },
      handleCopyInResponse: () => undefined,
      handleCommandComplete: () => undefined,
      handleError: (err: unknown) => finish(err),
      handleReadyForQuery: () => finish(),
      handleRowDescription: () => undefined,
      handleDataRow: () => undefined,
      handleEmptyQuery: () => undefined,
      handlePortalSuspended: () => undefined,
      handleCopyData: () => undefined,
    };
    client.query(submittable as unknown as pg.Submittable);
  });
}

const COPY_SPECIAL = /[\\\t\n\r]/;

/** A text value as a field of COPY's text format (backslash, tab, newline and carriage return escaped). */
export function copyField(s: string): string {
  return COPY_SPECIAL.test(s) ? s.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r')) : s;
}

const ARRAY_SPECIAL = /["\\]/;

/**
 * Values as a Postgres array literal (`{"a","b\"c",NULL,1,t}`), to pass as one text parameter cast to the
 * array type: what `pg` does for a JavaScript array, without its per-element escaping by two regular
 * expression replacements (the bulk of a group commit's time in the runtime's thread). Strings are always
 * quoted; null and undefined are NULL; numbers are written as JavaScript prints them (finite integers and
 * milliseconds here); booleans as t/f.
 */
export function pgArray(values: ReadonlyArray<string | number | boolean | null | undefined>): string {
  // Elements are joined once (concatenating them one by one left a chain of string pieces per element).
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) parts[i] = 'NULL';
    else if (typeof v === 'string') parts[i] = ARRAY_SPECIAL.test(v) ? `"${v.replace(/["\\]/g, '\\$&')}"` : `"${v}"`;
    else if (typeof v === 'boolean') parts[i] = v ? 't' : 'f';
    else parts[i] = String(v);
  }
  return `{${parts.join(',')}}`;
}
