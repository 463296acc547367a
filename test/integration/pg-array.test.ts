import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { pgArray } from '../../pipelines/core/pg.js';
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
