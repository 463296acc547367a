import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { readSourceStatus, SourceStatusBoard } from '../../pipelines/state/source-status.js';
import { freshDatabase, rid } from '../support/services.js';

/** `cellar.source_status` as each runtime process writes it, against a real Postgres. */
describe('source status across a restart', () => {
  let db: { url: string; pool: pg.Pool };
  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  it('a restarted process keeps the last change its predecessor recorded until it hands over one of its own', async () => {
    const supplier = rid('sup');
    const first = new SourceStatusBoard('embedded');
    first.batch(supplier, { changes: 3, snapshot: false });
    await first.flush(db.pool);
    const [before] = await readSourceStatus(db.pool, supplier);
    expect(before!.lastChangeAt).toBeInstanceOf(Date);

    // The next process (after a kill) reports streaming, and no change yet.
    const next = new SourceStatusBoard('embedded');
    next.set(supplier, 'streaming');
    await next.flush(db.pool);
    const [after] = await readSourceStatus(db.pool, supplier);
    expect(after!.state).toBe('streaming');
    expect(after!.changes).toBe(0);
    expect(after!.lastChangeAt?.getTime()).toBe(before!.lastChangeAt!.getTime());

    await new Promise((r) => setTimeout(r, 20));
    next.batch(supplier, { changes: 1, snapshot: false });
    await next.flush(db.pool);
    const [latest] = await readSourceStatus(db.pool, supplier);
    expect(latest!.lastChangeAt!.getTime()).toBeGreaterThan(before!.lastChangeAt!.getTime());
  });
});
