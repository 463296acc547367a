import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { HistoryEntry } from '../../pipelines/aggregate/aggregator.js';
import { CellarError } from '../../pipelines/core/errors.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { withRetry } from '../../pipelines/core/retry.js';
import { CommitAhead, type OpenedAhead } from '../../pipelines/runtime/commit-ahead.js';
import { maintainHistory, saveHistory } from '../../pipelines/state/history.js';
import { freshDatabase, rid } from '../support/services.js';

/**
 * Group commits with the stock history written ahead, against a real Postgres, driven as the embedded
 * runtime's group-commit loop drives them (the next group opened while the previous one commits), with an
 * adversary failing writes, killing connections of transactions opened ahead and stopping mid-way. What
 * must hold: every group committed once with its history, nothing of an uncommitted group visible, and
 * group transactions taking their ids in commit order (the stock event log is read in that order).
 */
describe('commit ahead', () => {
  let db: { url: string; pool: pg.Pool };
  let pool: pg.Pool;
  const retry = <T>(_what: string, fn: () => Promise<T>) => withRetry(fn, { minDelayMs: 5, maxDelayMs: 50 });
  const retriable = (m: string) => new CellarError('postgres_unavailable', m, { retriable: true });

  beforeAll(async () => {
    db = await freshDatabase();
    pool = createPgPool(db.url, { max: 6 });
    await maintainHistory(db.pool, 30);
    await db.pool.query('CREATE TABLE public.groups (n int PRIMARY KEY, xid xid8 NOT NULL, ahead boolean NOT NULL)');
  });
  afterAll(async () => {
    await pool?.end();
    await db?.pool.end();
  });

  const historyOf = (region: string, n: number): HistoryEntry[] => [1, 2, 3].map((k) => ({
    region, sku: `s${k}`, version: n, bottles: n, delta: 1, contributorId: `c${k}`, supplierId: 'sup', warehouseId: 'w', op: 'UPSERT', sourceTsMs: Date.now(),
  }));

  /**
   * Runs `groups` groups as the group-commit loop does. `adversary(n, historyWritten, attempt)` runs inside
   * each write attempt of group n before its row goes in: it may throw, or kill the connection.
   */
  async function run(region: string, groups: number, adversary: (n: number, historyWritten: boolean, attempt: number, tx: pg.PoolClient) => Promise<void>) {
    const counts = { ahead: 0, whole: 0 };
    const commits = new CommitAhead(pool, retry, (path) => counts[path]++);
    let committing: Promise<void> = Promise.resolve();
    for (let n = 1; n <= groups; n++) {
      const ahead: Promise<OpenedAhead | undefined> = commits.ahead(historyOf(region, n));
      await committing;
      let attempt = 0;
      committing = commits.commit(ahead, async (tx, historyWritten) => {
        await adversary(n, historyWritten, attempt++, tx);
        if (!historyWritten) await saveHistory(tx, historyOf(region, n));
        await tx.query('INSERT INTO public.groups (n, xid, ahead) VALUES ($1, pg_current_xact_id(), $2)', [n + offsets.get(region)!, historyWritten]);
      });
    }
    await committing;
    return counts;
  }
  const offsets = new Map<string, number>();

  async function check(region: string, groups: number) {
    const base = offsets.get(region)!;
    const { rows } = await db.pool.query<{ n: number; xid: string }>('SELECT n, xid::text AS xid FROM public.groups WHERE n > $1 AND n <= $2 ORDER BY n', [base, base + groups]);
    expect(rows.map((r) => r.n - base)).toEqual(Array.from({ length: groups }, (_, i) => i + 1));
    const xids = rows.map((r) => BigInt(r.xid));
    const outOfOrder = xids.flatMap((x, i) => (i > 0 && x <= xids[i - 1]! ? [`group ${i + 1} took ${x}, after ${xids[i - 1]}`] : []));
    expect(outOfOrder).toEqual([]);
    const { rows: h } = await db.pool.query<{ version: string; n: number }>('SELECT version, count(*)::int AS n FROM cellar.stock_history WHERE region = $1 GROUP BY version ORDER BY version', [region]);
    expect(h.map((r) => [Number(r.version), r.n])).toEqual(Array.from({ length: groups }, (_, i) => [i + 1, 3]));
  }

  it('commits every group once, in its transaction opened ahead when nothing goes wrong', async () => {
    const region = rid('a');
    offsets.set(region, 0);
    const counts = await run(region, 40, async () => undefined);
    await check(region, 40);
    // The first group may be opened before the loop commits anything; from then on each is opened ahead.
    expect(counts.ahead).toBeGreaterThanOrEqual(39);
  });

  it('keeps commit order in transaction ids when commits fail and are retried, and connections opened ahead die', async () => {
    const region = rid('b');
    offsets.set(region, 1_000);
    const counts = await run(region, 60, async (n, historyWritten, attempt, tx) => {
      // A third of the groups fail their first attempt (it is retried whole, with a new transaction id,
      // after the next group may have opened its own transaction ahead).
      if (n % 3 === 0 && attempt === 0) throw retriable(`group ${n}: first attempt fails`);
      // Some groups lose the connection of their transaction opened ahead just before writing the rest.
      if (n % 7 === 0 && historyWritten) {
        const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
        await tx.query('SELECT 1');
      }
    });
    await check(region, 60);
    expect(counts.whole).toBeGreaterThan(0);
    expect(counts.ahead).toBeGreaterThan(0);
  });

  it('leaves nothing of a group opened ahead and never committed, and returns its connection', async () => {
    const region = rid('c');
    const commits = new CommitAhead(pool, retry);
    const opened = await commits.ahead(historyOf(region, 1));
    expect(opened).toBeDefined();
    expect(pool.totalCount - pool.idleCount).toBe(1);
    await commits.abandonAll();
    await commits.abandonAll();
    expect(pool.totalCount - pool.idleCount).toBe(0);
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM cellar.stock_history WHERE region = $1', [region]);
    expect(rows[0].n).toBe(0);
  });

  it('opens a group without history ahead too, and commits it in that transaction', async () => {
    const counts = { ahead: 0, whole: 0 };
    const commits = new CommitAhead(pool, retry, (path) => counts[path]++);
    const ahead = commits.ahead([]);
    const opened = await ahead;
    expect(opened?.xid).toBeGreaterThan(0n);
    const n = 900_000 + Math.floor(Math.random() * 90_000);
    await commits.commit(ahead, async (tx, historyWritten) => {
      expect(historyWritten).toBe(true);
      await tx.query('INSERT INTO public.groups (n, xid, ahead) VALUES ($1, pg_current_xact_id(), true)', [n]);
    });
    expect(counts).toEqual({ ahead: 1, whole: 0 });
    const { rows } = await db.pool.query<{ xid: string }>('SELECT xid::text FROM public.groups WHERE n = $1', [n]);
    expect(BigInt(rows[0]!.xid)).toBe(opened!.xid);
    expect(pool.totalCount - pool.idleCount).toBe(0);
  });

  it('writes a group whole when its history cannot be written ahead, and the commit reports the error', async () => {
    const region = rid('d');
    const commits = new CommitAhead(pool, retry);
    const bad: HistoryEntry[] = [{ ...historyOf(region, 1)[0]!, sourceTsMs: Number.NaN }];
    const ahead = commits.ahead(bad);
    expect(await ahead).toBeUndefined();
    await expect(commits.commit(ahead, async (tx, historyWritten) => {
      expect(historyWritten).toBe(false);
      await saveHistory(tx, bad);
    })).rejects.toThrow(/Invalid time value/);
    expect(pool.totalCount - pool.idleCount).toBe(0);
  });
});
