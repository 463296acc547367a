import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { HistoryEntry } from '../../pipelines/aggregate/aggregator.js';
import { inTransaction } from '../../pipelines/core/pg.js';
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
});
