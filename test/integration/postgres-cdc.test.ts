import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createPostgresCdcSource, lsnToNumber, type CdcBatch, type PostgresCdcSource } from '../../connectors/postgres-cdc/index.js';
import { createDatabase, startLocalPostgres } from '../../infra/local/postgres.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { decodeDebeziumJson, type ChangeEvent } from '../../pipelines/normalize/debezium.js';
import { eventually, rid, services } from '../support/services.js';
import { decodeChecked } from '../support/decode.js';
import { applyEvents } from '../conformance/native-source.suite.js';

const log = createLogger('postgres-cdc-test', 'warn');

describe('native Postgres CDC reader (pgoutput)', () => {
  let url: string;
  let db: pg.Client;
  const sources: PostgresCdcSource[] = [];
  const prefix = rid('sup');

  beforeAll(async () => {
    url = await createDatabase(services().pgUrl, rid('supplier_'));
    db = new pg.Client(url);
    await db.connect();
    await db.query('CREATE TABLE public.stock (id int PRIMARY KEY, item_code text NOT NULL, depot text, qty numeric(10,2))');
    await db.query('CREATE TABLE public.audit (id serial PRIMARY KEY, note text)');
    await db.query(`INSERT INTO public.stock SELECT g, 'sku-' || (g % 50), 'd' || (g % 3), g FROM generate_series(1, 500) g`);
  });

  afterAll(async () => {
    for (const s of sources) await s.stop();
    await db?.end();
  });

  const slotLsn = async () => (await db.query('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [`cellar_${prefix}`])).rows[0]?.l as string;
  const start = async (handler: (b: CdcBatch) => Promise<void>, extra: Record<string, unknown> = {}) => {
    const s = createPostgresCdcSource({ url, topicPrefix: prefix, tables: ['public.stock'], snapshotFetchRows: 100, ...extra }, log);
    sources.push(s);
    await s.start(handler);
    return s;
  };

  /** Latest row per id from the events, applying the same version rule as the pipeline. */
  const apply = applyEvents;
  const tableRows = async () => new Map((await db.query('SELECT id, item_code, depot, qty::text AS qty FROM public.stock')).rows.map((r) => [r.id as number, r]));

  it('snapshots existing rows, streams rows committed during the snapshot exactly once, then every change', async () => {
    const events: ChangeEvent[] = [];
    let wroteDuringSnapshot = false;
    await start(async (b) => {
      for (const m of b.changes) events.push(decodeChecked(m));
      if (b.snapshot && !wroteDuringSnapshot) {
        wroteDuringSnapshot = true;
        // Commits while the snapshot is being read: not in the snapshot, so they must come from the stream.
        await db.query(`INSERT INTO public.stock SELECT g, 'new-' || g, 'd1', 1 FROM generate_series(1001, 1050) g`);
        await db.query('UPDATE public.stock SET qty = qty + 1000 WHERE id <= 20');
        await db.query('DELETE FROM public.stock WHERE id BETWEEN 21 AND 30');
      }
    });
    expect(await eventually(async () => events.some((e) => e.op === 'd'), 30_000)).toBe(true);
    const snapshot = events.filter((e) => e.op === 'r');
    expect(snapshot).toHaveLength(500);
    expect(new Set(snapshot.map((e) => e.key!.id)).size).toBe(500);
    expect(events.filter((e) => e.op === 'c')).toHaveLength(50);
    expect(events.filter((e) => e.op === 'u')).toHaveLength(20);
    expect(events.filter((e) => e.op === 'd').map((e) => e.before)).toContainEqual({ id: 21, item_code: null, depot: null, qty: null });
    expect(snapshot[0]!.table).toBe('public.stock');
    expect(snapshot[0]!.source).toMatchObject({ connector: 'postgresql', name: prefix, schema: 'public', table: 'stock', snapshot: 'true' });

    await db.query(`UPDATE public.stock SET depot = 'd2', qty = 7.5 WHERE id = 1001`);
    await db.query('BEGIN');
    await db.query(`INSERT INTO public.stock VALUES (2000, 'x', 'd1', 3)`);
    await db.query('UPDATE public.stock SET qty = 4 WHERE id = 2000');
    await db.query('COMMIT');
    await eventually(async () => apply(events).get(2000)?.qty === '4.00', 20_000);
    const expected = await tableRows();
    const got = apply(events);
    expect([...got.keys()].sort((a, b) => a - b)).toEqual([...expected.keys()].sort((a, b) => a - b));
    for (const [id, row] of expected) expect(got.get(id), `row ${id}`).toMatchObject({ item_code: row.item_code, depot: row.depot, qty: row.qty });

    // The snapshot began the table with a truncate of its own: wait for the one that follows.
    const truncates = events.filter((e) => e.op === 't').length;
    await db.query('TRUNCATE public.stock');
    expect(await eventually(async () => events.filter((e) => e.op === 't').length > truncates, 20_000)).toBe(true);
    expect(apply(events).size).toBe(0);
  }, 90_000);

  it('acknowledges a transaction only after the handler resolved, resumes after it on restart, and advances while idle', async () => {
    await sources.pop()!.stop();
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    const seen: ChangeEvent[] = [];
    let blockerEnd = 0;
    await start(async (b) => {
      for (const m of b.changes) seen.push(decodeChecked(m));
      if (b.changes.some((c) => Object.values(c.spec.after ?? {}).includes('blocker'))) {
        blockerEnd = lsnToNumber(b.lsn);
        await blocked;
      }
    });
    const before = lsnToNumber(await slotLsn());
    await db.query(`INSERT INTO public.stock VALUES (3000, 'blocker', 'd1', 1)`);
    expect(await eventually(async () => blockerEnd > 0, 20_000)).toBe(true);
    // Unrelated WAL meanwhile: keepalives arrive, but the blocked transaction must hold the slot back.
    await db.query(`INSERT INTO public.audit (note) SELECT 'x' FROM generate_series(1, 500)`);
    await new Promise((r) => setTimeout(r, 2000));
    expect(lsnToNumber(await slotLsn())).toBeLessThan(blockerEnd);
    release();
    expect(await eventually(async () => lsnToNumber(await slotLsn()) >= blockerEnd, 20_000)).toBe(true);
    expect(lsnToNumber(await slotLsn())).toBeGreaterThan(before);

    // Restart: nothing acknowledged is delivered again.
    await sources.pop()!.stop();
    const again: ChangeEvent[] = [];
    await start(async (b) => void again.push(...b.changes.map((m) => decodeChecked(m))));
    await db.query(`INSERT INTO public.stock VALUES (3001, 'after-restart', 'd1', 1)`);
    expect(await eventually(async () => again.some((e) => e.after?.item_code === 'after-restart'), 20_000)).toBe(true);
    expect(again.filter((e) => e.after?.item_code === 'blocker')).toEqual([]);

    // Writes to a table outside the publication: the slot still moves on, holding no WAL for them.
    const idleStart = lsnToNumber(await slotLsn());
    await db.query(`INSERT INTO public.audit (note) SELECT repeat('x', 200) FROM generate_series(1, 2000)`);
    const target = lsnToNumber((await db.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l);
    expect(await eventually(async () => lsnToNumber(await slotLsn()) >= target, 45_000, 500)).toBe(true);
    expect(lsnToNumber(await slotLsn())).toBeGreaterThan(idleStart);
  }, 120_000);

  it('refuses clearly: wal_level not logical, a table without key or replica identity, a missing table', async () => {
    const replica = await startLocalPostgres({ walLevel: 'replica' });
    try {
      const bad = createPostgresCdcSource({ url: replica.url, topicPrefix: rid('x'), tables: ['public.stock'] }, log);
      await expect(bad.prepare()).rejects.toMatchObject({ code: 'cdc_wal_level', message: expect.stringMatching(/wal_level is "replica".*wal_level=logical/) });
    } finally {
      await replica.destroy();
    }
    await db.query('CREATE TABLE public.nokey (sku text, qty int)');
    const nokey = createPostgresCdcSource({ url, topicPrefix: rid('x'), tables: ['public.nokey'] }, log);
    await expect(nokey.prepare()).rejects.toMatchObject({ code: 'cdc_replica_identity', message: expect.stringContaining('REPLICA IDENTITY FULL') });
    const missing = createPostgresCdcSource({ url, topicPrefix: rid('x'), tables: ['public.nope'] }, log);
    await expect(missing.prepare()).rejects.toMatchObject({ code: 'cdc_table' });
  }, 60_000);

  it('streams times as the snapshot reads them, whatever the server prints them in', async () => {
    // The walsender prints timestamptz in its session's time zone: UTC (rewritten without a Date) or another.
    const values = ['2026-12-01 03:04:05.123456+00', '2026-12-01 03:04:05+00', '1999-12-31 23:59:59.999999+00', '2026-06-30 12:00:00.5+05:30', '0050-01-01 00:00:00+00', '0044-03-15 12:00:00+00 BC', 'infinity', '-infinity', null];
    for (const zone of ['UTC', 'Asia/Kolkata']) {
      const zoneUrl = await createDatabase(services().pgUrl, rid('supplier_tz_'));
      const c = new pg.Client(zoneUrl);
      await c.connect();
      try {
        await c.query(`ALTER DATABASE ${new URL(zoneUrl).pathname.slice(1)} SET timezone = '${zone}'`);
        await c.query('CREATE TABLE public.times (id int PRIMARY KEY, at timestamptz, local_at timestamp, day date)');
        const insert = (offset: number) => c.query(
          'INSERT INTO public.times SELECT $1::int + i, v::timestamptz, v::timestamptz::timestamp, v::timestamptz::date FROM unnest($2::text[]) WITH ORDINALITY AS u(v, i)', [offset, values]);
        await insert(0);
        const events: ChangeEvent[] = [];
        const s = createPostgresCdcSource({ url: zoneUrl, topicPrefix: rid('tz'), tables: ['public.times'] }, log);
        sources.push(s);
        await s.start(async (b) => void events.push(...b.changes.map(decodeChecked)));
        await insert(100);
        await c.query('UPDATE public.times SET at = at WHERE id > 100');
        expect(await eventually(async () => events.filter((e) => e.op === 'u').length === values.length, 20_000), `updates streamed (${zone})`).toBe(true);
        const snapshot = new Map(events.filter((e) => e.op === 'r').map((e) => [e.key!.id as number, e.after]));
        for (const op of ['c', 'u']) {
          const streamed = events.filter((e) => e.op === op);
          expect(streamed).toHaveLength(values.length);
          for (const e of streamed) expect({ ...e.after, id: 0 }, `${zone} ${op} of ${values[(e.key!.id as number) - 101]}`).toEqual({ ...snapshot.get((e.key!.id as number) - 100), id: 0 });
        }
        expect(snapshot.get(1)?.at).toBe('2026-12-01T03:04:05.123Z');
        await s.stop();
      } finally {
        await c.end();
      }
    }
  }, 60_000);
});
