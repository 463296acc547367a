import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { stockEventId, type StockLevelEvent } from '../../pipelines/events/derive.js';
import { readEventsAfter, saveEvents, withCursor, type EventCursor } from '../../pipelines/events/log.js';
import { freshDatabase, rid } from '../support/services.js';

/**
 * The stock event log's reading order against a real Postgres, as an adversary would try it: transaction
 * ids of different lengths (9 < 10 < 99 < 100 as numbers, not as text), a transaction that commits after
 * later ones, and two followers of one cursor at once.
 */
describe('stock event log', () => {
  let db: { url: string; pool: pg.Pool };
  const region = rid('r');
  const ev = (version: number): StockLevelEvent => ({ id: stockEventId(region, 's', version, 'sold_out'), type: 'sold_out', region, sku: 's', version, before: 1, after: 0, threshold: null, sourceTsMs: 1 });
  const all = async (from: EventCursor = { xid: '0', seq: '-1' }, batch = 2) => {
    const out: string[] = [];
    for (let at = from; ;) {
      const { events, cursor } = await readEventsAfter(db.pool, at, batch);
      out.push(...events.filter((e) => e.region === region).map((e) => String(e.version)));
      if (!events.length) return out;
      at = cursor;
    }
  };

  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  it('orders by transaction id as a number: a follower never skips from 999 to 1000', async () => {
    // Transaction ids far below any running one (a cluster uses hundreds at initdb), given explicitly.
    for (const [xid, version] of [[100, 4], [9, 1], [99, 3], [10, 2]] as const) {
      await db.pool.query('INSERT INTO cellar.stock_events (id, xid, type, region, sku, version, before, after, source_ts) VALUES ($1, $2::text::xid8, $3, $4, $5, $6, 1, 0, now())', [ev(version).id, xid, 'sold_out', region, 's', version]);
    }
    expect(await all()).toEqual(['1', '2', '3', '4']);
  });

  it('does not pass a transaction that commits after later ones; it is read once it commits', async () => {
    const before = (await readEventsAfter(db.pool, { xid: '0', seq: '-1' }, 10_000)).cursor;
    const slow = await db.pool.connect();
    try {
      await slow.query('BEGIN');
      await saveEvents(slow, [ev(10)]); // its transaction id is taken now, before the next ones
      await saveEvents(db.pool, [ev(11)]);
      await saveEvents(db.pool, [ev(12)]);
      const meanwhile = await readEventsAfter(db.pool, before, 100);
      expect(meanwhile.events.map((e) => e.version)).toEqual([]);
      await slow.query('COMMIT');
    } finally {
      slow.release();
    }
    expect(await all(before)).toEqual(['10', '11', '12']);
  });

  it('lets one follower at a time hold a cursor, and moves it only when the handler succeeds', async () => {
    const consumer = rid('test:');
    let inside!: () => void;
    const entered = new Promise<void>((r) => (inside = r));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const first = withCursor(db.pool, consumer, async (_tx, at) => {
      inside();
      await held;
      return at;
    });
    await entered;
    expect(await withCursor(db.pool, consumer, async (_tx, at) => at)).toBe(false);
    release();
    expect(await first).toBe(true);
    await expect(withCursor(db.pool, consumer, async () => {
      throw new Error('handler failed');
    })).rejects.toThrow('handler failed');
    const saved = (await db.pool.query<{ seq: string }>('SELECT seq FROM cellar.event_cursors WHERE consumer = $1', [consumer])).rows[0]!;
    expect(saved.seq).toBe('-1');
  });
});
