import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createLogger } from '../../pipelines/core/logger.js';
import { RuntimeLease } from '../../pipelines/runtime/lease.js';
import { createPgPool, inTransaction, queryAll } from '../../pipelines/core/pg.js';
import { freshDatabase, rid } from '../support/services.js';

/** The single-writer lease against a real Postgres: refusal, takeover, fencing inside a commit, release. */
describe('single-writer lease', () => {
  let db: { url: string; pool: pg.Pool };
  const log = createLogger('lease-test', 'silent');
  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  const commit = (lease: RuntimeLease) =>
    inTransaction(db.pool, 'test commit', async (tx) => {
      await lease.fence(tx);
      await tx.query('SELECT 1');
    });

  it('refuses a second holder, lets a takeover fence the first inside its commit, and frees on release', async () => {
    const name = rid('lease-');
    const a = await RuntimeLease.acquire(db.url, name, log);
    await expect(commit(a)).resolves.toBeUndefined();
    await expect(RuntimeLease.acquire(db.url, name, log)).rejects.toMatchObject({ code: 'lease_held', retriable: false });
    const b = await RuntimeLease.acquire(db.url, name, log, { takeOver: true });
    expect(b.epoch).toBe(a.epoch + 1);
    // The old holder's commit is refused by the fence, whatever its connection to the lock is doing.
    await expect(commit(a)).rejects.toMatchObject({ code: 'lease_lost' });
    await expect(a.lost).resolves.toMatchObject({ code: 'lease_lost' });
    await expect(commit(b)).resolves.toBeUndefined();
    await b.release();
    await b.release(); // safe twice
    const c = await RuntimeLease.acquire(db.url, name, log);
    expect(c.epoch).toBe(b.epoch + 1);
    await c.release();
    await a.release();
  });

  it('refuses the old holder\'s group commit, whose writes go in one statement with the fence, landing none of them', async () => {
    const name = rid('lease-');
    const table = rid('fenced_');
    await db.pool.query(`CREATE TABLE ${table} (k text PRIMARY KEY)`);
    const write = (lease: RuntimeLease, k: string) =>
      inTransaction(db.pool, 'group commit', async (tx) => {
        const rows = await queryAll<{ holder: string; epoch: string }>(tx, 'group commit', [{ text: `INSERT INTO ${table} (k) VALUES ($1)`, values: [k] }], lease.fenceRead());
        lease.checkFence(rows);
      });
    const a = await RuntimeLease.acquire(db.url, name, log);
    await write(a, 'a-before');
    const b = await RuntimeLease.acquire(db.url, name, log, { takeOver: true });
    // Straight after the takeover: the old holder has not noticed yet, the row it reads with its writes refuses them.
    await expect(write(a, 'a-after')).rejects.toMatchObject({ code: 'lease_lost' });
    await write(b, 'b');
    expect((await db.pool.query(`SELECT k FROM ${table} ORDER BY k`)).rows.map((r) => r.k)).toEqual(['a-before', 'b']);
    await b.release();
    await a.release();
  });

  it('a takeover waits for a commit in flight of the old holder, which then lands before it', async () => {
    const name = rid('lease-');
    const a = await RuntimeLease.acquire(db.url, name, log);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const inFlight = inTransaction(db.pool, 'slow commit', async (tx) => {
      await a.fence(tx);
      await held;
    });
    await new Promise((r) => setTimeout(r, 200));
    const taking = RuntimeLease.acquire(db.url, name, log, { takeOver: true });
    await new Promise((r) => setTimeout(r, 500));
    release();
    await expect(inFlight).resolves.toBeUndefined();
    const b = await taking;
    await expect(commit(a)).rejects.toMatchObject({ code: 'lease_lost' });
    await b.release();
    await a.release();
  });

  it('a takeover ends every session of a holder frozen inside a commit, whose commit then fails', async () => {
    const name = rid('lease-');
    const tag = RuntimeLease.sessionTag('test');
    const a = await RuntimeLease.acquire(db.url, name, log, { sessionTag: tag });
    const frozenPool = createPgPool(db.url, { max: 1, applicationName: tag });
    let started!: () => void;
    let wake!: () => void;
    const inside = new Promise<void>((r) => (started = r));
    const woken = new Promise<void>((r) => (wake = r));
    const frozen = inTransaction(frozenPool, 'frozen commit', async (tx) => {
      await a.fence(tx);
      started();
      await woken; // like a process under SIGSTOP: nothing happens until it is woken
      await tx.query('SELECT 1');
    });
    await inside;
    const t0 = Date.now();
    const b = await RuntimeLease.acquire(db.url, name, log, { takeOver: true });
    expect(Date.now() - t0).toBeLessThan(10_000);
    wake();
    await expect(frozen).rejects.toMatchObject({ retriable: true });
    await expect(commit(a)).rejects.toMatchObject({ code: 'lease_lost' });
    await b.release();
    await a.release();
    await frozenPool.end();
  });
});
