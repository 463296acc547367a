import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { HistoryEntry } from '../../pipelines/aggregate/aggregator.js';
import { copyIn, inTransaction } from '../../pipelines/core/pg.js';
import { historyOf, maintainHistory, saveHistory } from '../../pipelines/state/history.js';
import { freshDatabase, rid } from '../support/services.js';

/**
 * The stock history's writes (COPY in the writer's transaction) against a real Postgres, as an adversary
 * would feed them: text that COPY's format gives a meaning to (tabs, newlines, backslashes, `\N`, the NULL
 * marker), numbers at their limits, times with no partition, and changes written twice (a second writer
 * replaying them), which must be kept once without breaking the rest of the writer's transaction.
 */
describe('stock history writes', () => {
  let db: { url: string; pool: pg.Pool };
  const region = rid('h');
  const day = Date.UTC(2026, 10, 30);
  const entry = (sku: string, version: number, over: Partial<HistoryEntry> = {}): HistoryEntry => ({
    region, sku, version, bottles: 10 * version, delta: 10, contributorId: `s1/${sku}/${version}`, supplierId: 's1', warehouseId: 'napa', op: 'UPSERT', sourceTsMs: day + version * 1_000, ...over,
  });
  const read = (sku: string) => historyOf(db.pool, region, sku, { fromMs: 0, toMs: 8.64e15, limit: 100 });

  beforeAll(async () => {
    db = await freshDatabase();
    await maintainHistory(db.pool, 30, day);
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  it('keeps text with tabs, newlines, backslashes and \\N exactly as written', async () => {
    const hostile = ['tab\there', 'line\nbreak', 'cr\rlf\r\n', 'back\\slash\\', '\\N', '', 'ünïcödé 🍷', '\\t literal'];
    const entries = hostile.map((text, i) => entry('odd-sku\t\n\\', i + 1, { contributorId: text, supplierId: `sup-${text}`, warehouseId: text }));
    await inTransaction(db.pool, 'test', (tx) => saveHistory(tx, entries));
    const rows = await read('odd-sku\t\n\\');
    expect(rows.map((r) => [r.version, r.contributorId, r.supplierId, r.warehouseId])).toEqual(hostile.map((t, i) => [i + 1, t, `sup-${t}`, t]));
  });

  it('keeps numbers at their limits and times outside the kept days', async () => {
    const big = Number.MAX_SAFE_INTEGER;
    const entries = [
      entry('limits', 1, { bottles: big, delta: big }),
      entry('limits', 2, { bottles: 0, delta: -big, op: 'DELETE' }),
      // No partition for these days: the default partition takes them.
      entry('limits', 3, { bottles: 1, delta: 1, sourceTsMs: Date.UTC(1999, 0, 1, 0, 0, 0, 7) }),
      entry('limits', 4, { bottles: 2, delta: 1, sourceTsMs: Date.UTC(2099, 11, 31, 23, 59, 59, 999) }),
    ];
    await inTransaction(db.pool, 'test', (tx) => saveHistory(tx, entries));
    const rows = await read('limits');
    expect(rows.map((r) => [r.version, r.bottles, r.delta, r.op, r.sourceTsMs])).toEqual(entries.map((e) => [e.version, e.bottles, e.delta, e.op, e.sourceTsMs]));
  });

  it('keeps changes written twice once, and the rest of the second writer\'s transaction commits', async () => {
    const first = [1, 2, 3].map((v) => entry('replayed', v));
    await inTransaction(db.pool, 'test', (tx) => saveHistory(tx, first));
    // A second writer replays 2 and 3 (identical rows) with a new change 4, then writes something else.
    const marker = rid('m');
    await inTransaction(db.pool, 'test', async (tx) => {
      await saveHistory(tx, [...first.slice(1), entry('replayed', 4)]);
      await tx.query('INSERT INTO cellar.stock_thresholds (region, sku_pattern, threshold) VALUES ($1, $2, 3)', [region, marker]);
    });
    expect((await read('replayed')).map((r) => r.version)).toEqual([1, 2, 3, 4]);
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM cellar.stock_thresholds WHERE sku_pattern = $1', [marker]);
    expect(rows[0].n).toBe(1);
  });

  it('rolls back with the writer\'s transaction', async () => {
    await expect(inTransaction(db.pool, 'test', async (tx) => {
      await saveHistory(tx, [entry('rolled-back', 1)]);
      throw new Error('the commit failed after the history was written');
    })).rejects.toThrow(/commit failed/);
    expect(await read('rolled-back')).toEqual([]);
    await inTransaction(db.pool, 'test', (tx) => saveHistory(tx, [entry('rolled-back', 1)]));
    expect((await read('rolled-back')).map((r) => r.version)).toEqual([1]);
  });
  // copyIn writes the rows right behind the query, before the server has entered copy mode.
  it('a COPY that fails before copy mode reports its error and the session goes on; a killed session fails it', async () => {
    const client = await db.pool.connect();
    try {
      const err = await copyIn(client, 'copying into a missing table', 'COPY cellar.no_such_table FROM STDIN', 'a\tb\n').catch((e: Error) => e);
      expect(String(err)).toMatch(/copying into a missing table.*no_such_table/);
      // The rows sent early were discarded, not read as commands: the session answers, and a good COPY works.
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await client.query('CREATE TEMP TABLE copy_probe (a text, b int)');
      await copyIn(client, 'copying', 'COPY copy_probe FROM STDIN', 'x\t1\ny\t2\n');
      expect((await client.query('SELECT count(*)::int AS n FROM copy_probe')).rows[0].n).toBe(2);
      const bad = await copyIn(client, 'copying a bad row', 'COPY copy_probe FROM STDIN', 'z\tnot-a-number\n').catch((e: Error) => e);
      expect(String(bad)).toMatch(/copying a bad row.*integer/);
      expect((await client.query('SELECT count(*)::int AS n FROM copy_probe')).rows[0].n).toBe(2);
    } finally {
      client.release(true);
    }
    const victim = await db.pool.connect();
    victim.on('error', () => undefined);
    try {
      const pid = (await victim.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
      await victim.query('CREATE TEMP TABLE copy_slow (a text)');
      // A COPY of many rows in flight while its session is terminated from another: it must settle with an error.
      const rows = 'r\n'.repeat(2_000_000);
      const inFlight = copyIn(victim, 'copying while terminated', 'COPY copy_slow FROM STDIN', rows).then(() => 'done', (e: Error) => String(e));
      await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      const outcome = await Promise.race([inFlight, new Promise((r) => setTimeout(() => r('still waiting after 10 s'), 10_000))]);
      expect(outcome === 'done' || /copying while terminated|terminat/i.test(String(outcome)), String(outcome)).toBe(true);
    } finally {
      victim.release(true);
    }
  });
});
