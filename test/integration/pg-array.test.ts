import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { inTransaction, pgArray, queryAll } from '../../pipelines/core/pg.js';
import { freshDatabase } from '../support/services.js';

/**
 * Array literals built for upserts (contributions, totals), read back by a real Postgres: every value as
 * given, including what an array literal gives a meaning to (quotes, backslashes, braces, commas, spaces,
 * the word NULL) and numbers at their limits.
 */
describe('pgArray', () => {
  let db: { url: string; pool: pg.Pool };
  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  it('passes text exactly, NULL as NULL and the string "NULL" as a string', async () => {
    const values = ['plain', 'with "quotes"', 'back\\slash\\', '{braces}', 'a,b', ' lead and trail ', 'NULL', '', 'tab\tnew\nline', 'ünïcödé 🍷', '\\"', null];
    const { rows } = await db.pool.query<{ a: Array<string | null> }>('SELECT $1::text[] AS a', [pgArray(values)]);
    expect(rows[0]!.a).toEqual(values);
  });

  it('passes numbers at their limits, booleans and empty arrays', async () => {
    const big = [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 0, 1_796_055_246_664, null];
    const { rows } = await db.pool.query<{ b: string[]; d: number[]; t: boolean[]; e: string[] }>(
      'SELECT $1::bigint[]::text[] AS b, $2::double precision[] AS d, $3::boolean[] AS t, $4::text[] AS e',
      [pgArray(big), pgArray([1_796_055_246_664.5, 0.25]), pgArray([true, false, null]), pgArray([])]);
    expect(rows[0]!.b).toEqual(big.map((n) => (n === null ? null : String(n))));
    expect(rows[0]!.d).toEqual([1_796_055_246_664.5, 0.25]);
    expect(rows[0]!.t).toEqual([true, false, null]);
    expect(rows[0]!.e).toEqual([]);
  });
});

/** Writes of a group commit sent as one statement: each runs with its own parameters, and all or none land. */
describe('queryAll', () => {
  let db: { url: string; pool: pg.Pool };
  beforeAll(async () => {
    db = await freshDatabase();
    await db.pool.query('CREATE TABLE a (k text PRIMARY KEY, n bigint); CREATE TABLE b (k text PRIMARY KEY, t text); CREATE TABLE lock_me (k text PRIMARY KEY, v int)');
    await db.pool.query("INSERT INTO lock_me VALUES ('x', 7)");
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  // Eleven parameters in the first statement: $1 of the next one must not be read as part of $11.
  const upsertA = (rows: Array<[string, number]>) => ({
    text: `INSERT INTO a (k, n) SELECT u.k, u.n + $3 + $4 + $5 + $6 + $7 + $8 + $9 + $10 + $11 FROM unnest($1::text[], $2::bigint[]) AS u(k, n)
           ON CONFLICT (k) DO UPDATE SET n = excluded.n`,
    values: [pgArray(rows.map((r) => r[0])), pgArray(rows.map((r) => r[1])), 0, 0, 0, 0, 0, 0, 0, 0, 1],
  });
  const insertB = (k: string, t: string) => ({ text: 'INSERT INTO b (k, t) VALUES ($1, $2)', values: [k, t] });

  it('runs every statement with its own parameters in one round trip and returns the read\'s rows', async () => {
    const rows = await inTransaction(db.pool, 'test', (tx) =>
      queryAll<{ v: number }>(tx, 'test', [upsertA([['p', 1], ['q', 2]]), insertB('p', 'one $1 two'), insertB('q', '$2')], { text: 'SELECT v FROM lock_me WHERE k = $1 FOR SHARE', values: ['x'] }));
    expect(rows).toEqual([{ v: 7 }]);
    expect((await db.pool.query('SELECT k, n::int FROM a ORDER BY k')).rows).toEqual([{ k: 'p', n: 2 }, { k: 'q', n: 3 }]);
    expect((await db.pool.query('SELECT k, t FROM b ORDER BY k')).rows).toEqual([{ k: 'p', t: 'one $1 two' }, { k: 'q', t: '$2' }]);
    expect(await queryAll(db.pool, 'test', [])).toEqual([]);
  });

  it('lands nothing when one statement fails, and names what was being written', async () => {
    await expect(queryAll(db.pool, 'writing the test tables', [upsertA([['r', 1]]), insertB('p', 'taken')])).rejects.toThrow(/writing the test tables/);
    expect((await db.pool.query("SELECT count(*)::int AS n FROM a WHERE k = 'r'")).rows[0].n).toBe(0);
  });

  it('prepared: each mix of statements is parsed once per connection, and stays usable after a failed call', async () => {
    const c = await db.pool.connect();
    try {
      const prepared = async () => (await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'cellar\\_%'")).rows[0]!.n;
      const read = { text: 'SELECT v FROM lock_me WHERE k = $1 FOR SHARE', values: ['x'] };
      for (let i = 0; i < 7; i++) {
        expect(await queryAll<{ v: number }>(c, 'test', [upsertA([['pp', i]]), insertB(`pp${i}`, 'x')], read, { prepare: true })).toEqual([{ v: 7 }]);
      }
      expect(await prepared()).toBe(1);
      // Another mix (one write fewer) is a statement of its own; the first is still there.
      await queryAll(c, 'test', [insertB('pq', 'y')], read, { prepare: true });
      expect(await prepared()).toBe(2);
      // A call that fails (the key is taken) leaves the statement prepared and the next call works.
      await expect(queryAll(c, 'writing b', [upsertA([['pp', 0]]), insertB('pp0', 'taken')], read, { prepare: true })).rejects.toThrow(/writing b/);
      await queryAll(c, 'test', [upsertA([['pp', 100]]), insertB('pp100', 'z')], read, { prepare: true });
      expect(await prepared()).toBe(2);
      expect((await db.pool.query("SELECT n::int FROM a WHERE k = 'pp'")).rows[0].n).toBe(101);
      expect((await db.pool.query("SELECT count(*)::int AS n FROM b WHERE k LIKE 'pp%'")).rows[0].n).toBe(8);
    } finally {
      c.release();
    }
  });

  it('holds what the read locks until the transaction ends', async () => {
    const tx = await db.pool.connect();
    try {
      await tx.query('BEGIN');
      await queryAll(tx, 'test', [insertB('s', 'held')], { text: 'SELECT v FROM lock_me WHERE k = $1 FOR SHARE', values: ['x'] });
      const other = await db.pool.connect();
      try {
        await other.query("SET lock_timeout = '200ms'");
        await expect(other.query("UPDATE lock_me SET v = 8 WHERE k = 'x'")).rejects.toThrow(/lock timeout/);
      } finally {
        other.release();
      }
      await tx.query('COMMIT');
    } finally {
      tx.release();
    }
  });
});
