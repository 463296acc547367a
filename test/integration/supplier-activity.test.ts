import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createPgPool } from '../../pipelines/core/pg.js';
import { readSupplierActivity, SupplierActivityBoard } from '../../pipelines/state/supplier-activity.js';
import { supplierHealth } from '../../pipelines/state/supplier-health.js';
import { formatStatus } from '../../pipelines/cli/status.js';
import { freshDatabase, rid } from '../support/services.js';

/**
 * `cellar.supplier_activity` as the Kafka runtime's normalizers write it (against a real Postgres): the only
 * sign Cellar has that a Debezium supplier's changes arrive, shown by `cellar status` and `/v1/suppliers`.
 */
describe('supplier activity on the raw topics', () => {
  let db: { url: string; pool: pg.Pool };
  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  it('two normalizers add up; the newest times win, whichever flushes last', async () => {
    const supplier = rid('deb');
    const a = new SupplierActivityBoard();
    const b = new SupplierActivityBoard();
    a.note(supplier, 3, Date.parse('2026-12-02T08:00:02Z'));
    a.note(supplier, 2, Date.parse('2026-12-02T08:00:01Z'));
    a.note(supplier, 0, Date.parse('2026-12-02T09:00:00Z')); // nothing received: not a change
    await new Promise((r) => setTimeout(r, 20));
    b.note(supplier, 4, Date.parse('2026-12-02T08:00:05Z'));
    // b received later and flushes first; a's older receipt, flushed after, does not move the time back.
    await b.flush(db.pool);
    const [first] = await readSupplierActivity(db.pool, supplier);
    await a.flush(db.pool);
    await new SupplierActivityBoard().flush(db.pool); // nothing noted: no statement, no row touched
    const [row] = await readSupplierActivity(db.pool, supplier);
    expect(row!.changes).toBe(9);
    expect(row!.lastChangeAt.getTime()).toBe(first!.lastChangeAt.getTime());
    expect(row!.lastSourceTs!.toISOString()).toBe('2026-12-02T08:00:05.000Z');
    // A batch without a source time keeps the newest one known.
    b.note(supplier, 1, null);
    await b.flush(db.pool);
    const [again] = await readSupplierActivity(db.pool, supplier);
    expect(again!.changes).toBe(10);
    expect(again!.lastChangeAt.getTime()).toBeGreaterThan(first!.lastChangeAt.getTime());
    expect(again!.lastSourceTs!.toISOString()).toBe('2026-12-02T08:00:05.000Z');
  });

  it('counts noted while Cellar\'s Postgres does not answer are written at the next flush, none lost', async () => {
    const supplier = rid('deb');
    const board = new SupplierActivityBoard();
    const dead = createPgPool('postgres://postgres@127.0.0.1:1/nothing', { max: 1 });
    board.note(supplier, 5, Date.parse('2026-12-02T08:00:00Z'));
    await expect(board.flush(dead)).rejects.toThrow();
    await dead.end();
    board.note(supplier, 2, Date.parse('2026-12-02T08:00:09Z'));
    await board.flush(db.pool);
    const [row] = await readSupplierActivity(db.pool, supplier);
    expect(row!.changes).toBe(7);
    expect(row!.lastSourceTs!.toISOString()).toBe('2026-12-02T08:00:09.000Z');
  });

  it('cellar status shows when a supplier no reader of Cellar\'s reports on last changed, from its raw topics', async () => {
    const seen = rid('deb');
    const silent = rid('deb');
    const board = new SupplierActivityBoard();
    board.note(seen, 12, Date.now() - 3_000);
    await board.flush(db.pool);
    const list = await supplierHealth(db.pool, { supplierIds: [seen, silent] });
    const s = list.find((h) => h.supplierId === seen)!;
    expect(s.status).toBe('unknown');
    expect(s.capture).toBeNull();
    expect(s.rawTopics?.changes).toBe(12);
    expect(s.lastChangeAt).toBeInstanceOf(Date);
    expect(s.detail).toMatch(/its raw topics last delivered a change at .* \(12 received in all\)/);
    expect(list.find((h) => h.supplierId === silent)!.lastChangeAt).toBeNull();
    const out = formatStatus(list);
    const line = (id: string) => out.split('\n').find((l) => l.startsWith(id))!;
    expect(line(seen)).toMatch(/\d+ s ago/);
    expect(line(silent)).toContain('never');
  });

  it('status still answers from a database not migrated to this version yet (no cellar.supplier_activity)', async () => {
    const old = await freshDatabase();
    try {
      await old.pool.query('DROP TABLE cellar.supplier_activity');
      const id = rid('deb');
      const [h] = await supplierHealth(old.pool, { supplierIds: [id] });
      expect(h).toMatchObject({ supplierId: id, status: 'unknown', rawTopics: null, lastChangeAt: null });
    } finally {
      await old.pool.end();
    }
  });
});
