import { describe, expect, it } from 'vitest';
import { compareCheckpoints, createNativeSource, type ChangeBatch, type NativeKind, type NativeSource, type SourceCheckpoint } from '../../connectors/native-source.js';
import type { Supplier } from '../../connectors/registry/loader.js';
import { createLogger, type Logger } from '../../pipelines/core/logger.js';
import type { ChangeEvent } from '../../pipelines/normalize/debezium.js';
import { decodeChecked } from '../support/decode.js';
import { eventually } from '../support/services.js';

/** A row of the conformance table `stock(id int primary key, sku text, depot text, qty int)`. */
export interface StockRow {
  id: number;
  sku: string;
  depot: string;
  qty: number;
}

/** A fresh source database a harness made for one case: the captured `stock` table and an uncaptured one. */
export interface SourceDatabase {
  /** The supplier (parsed from registry YAML) capturing only {@link SourceDatabase.stock}. */
  supplier: Supplier;
  /** The captured table as SQL names it (`public.stock`, `<database>.stock`). */
  stock: string;
  /** A table of the same database the supplier does not capture: `(id int primary key, note text)`. */
  other: string;
  /** Runs statements on the database, in one transaction when there are several. */
  sql(statements: string | string[]): Promise<void>;
  /** The stock table's rows now, by id. */
  rows(): Promise<Map<number, StockRow>>;
  /** Moves the server's log to a new file or segment (checkpoints then span files). */
  rotateLog(): Promise<void>;
  /** Bytes of log the server keeps for this supplier's source beyond what it confirmed (Postgres: the slot). */
  retainedLog?(): Promise<number>;
  /** The server's current log position, in bytes. */
  logPosition?(): Promise<number>;
  /** Drops what setup made; called after every source of the database stopped. */
  drop(): Promise<void>;
}

/** What {@link describeNativeSourceConformance} needs to run the suite against one kind of source. */
export interface NativeSourceHarness {
  kind: NativeKind;
  /** A new database with an empty `stock` table (random names), and its supplier. */
  setup(): Promise<SourceDatabase>;
  /** Why retained log cannot be measured for this kind (the case is then skipped with this reason). */
  retainedLogSkipReason?: string;
  /** Builds the source under test; default {@link createNativeSource} (a wrapper here lets the suite be checked). */
  create?(supplier: Supplier, log: Logger): NativeSource;
}

/** Latest row per id from the events, with the pipeline's version rule; a truncate removes every older row. */
export function applyEvents(events: ChangeEvent[]): Map<number, Record<string, unknown>> {
  const rows = new Map<number, { v: string; row: Record<string, unknown> | null }>();
  for (const e of events) {
    if (e.op === 't') {
      for (const [k, r] of rows) if (r.v < e.sourceVersion) rows.set(k, { v: e.sourceVersion, row: null });
      continue;
    }
    const id = Number(e.key!.id);
    const cur = rows.get(id);
    if (cur && cur.v >= e.sourceVersion) continue;
    rows.set(id, { v: e.sourceVersion, row: e.op === 'd' ? null : e.after });
  }
  return new Map([...rows].filter(([, r]) => r.row).map(([k, r]) => [k, r.row!]));
}

/** What a consumer keeps between runs of a source: its last acknowledged checkpoint, and whether the snapshot completed. */
interface Progress {
  checkpoint?: SourceCheckpoint;
  snapshotDone: boolean;
}

/** One started source as its consumer sees it. */
interface Run {
  source: NativeSource;
  batches: ChangeBatch[];
  /** Each batch's decoded events (index as in `batches`). */
  batchEvents: ChangeEvent[][];
  /** Decoded events of every batch, in delivery order. */
  events: ChangeEvent[];
  /** Cleared to model a consumer that stopped: handled batches are then not acknowledged. */
  acking: boolean;
}

type Hook = (b: ChangeBatch, events: ChangeEvent[]) => Promise<void>;

const WAIT_MS = 30_000;
/** Retained log a caught-up idle source may keep (the server's own records since its last keepalive). */
const RETAINED_BOUND = 256 * 1024;
const tag = (e: ChangeEvent) => `${e.op}:${e.key ? String(e.key.id) : '-'}`;
const values = (rows: Array<[number, string, string, number]>) => rows.map(([id, sku, depot, qty]) => `(${id}, '${sku}', '${depot}', ${qty})`).join(', ');
const seedRows = (from: number, to: number): Array<[number, string, string, number]> => Array.from({ length: to - from + 1 }, (_, i) => [from + i, `sku-${(from + i) % 7}`, `d${1 + ((from + i) % 2)}`, from + i]);

/**
 * The conformance suite every native source passes (see connectors/native-source.ts): what a consumer
 * observes through the contract alone (batches, checkpoints, acks) after a snapshot, while streaming,
 * across restarts, on key changes and truncates, and while idle. Each case runs on a fresh database.
 */
export function describeNativeSourceConformance(name: string, harness: NativeSourceHarness): void {
  const log = createLogger(`conformance-${harness.kind}`, 'warn');

  describe(`native source conformance: ${name}`, () => {
    /** A fresh database, the consumer's progress and helpers; stops every source and drops the database after `fn`. */
    async function withSource(seed: number, fn: (t: ReturnType<typeof tools>) => Promise<void>): Promise<void> {
      const db = await harness.setup();
      const t = tools(db);
      try {
        if (seed) await db.sql(`INSERT INTO ${db.stock} VALUES ${values(seedRows(1, seed))}`);
        await fn(t);
        expect(t.problems, `${name}: contract problems seen by the consumer`).toEqual([]);
      } finally {
        for (const r of t.gates.splice(0)) r();
        for (const s of t.sources.splice(0)) await s.stop().catch(() => undefined);
        await db.drop();
      }
    }

    function tools(db: SourceDatabase) {
      const progress: Progress = { snapshotDone: false };
      const sources: NativeSource[] = [];
      const problems: string[] = [];
      const gates: Array<() => void> = [];
      let marker = 900_000;
      const all: ChangeEvent[] = [];

      /** Starts a source from the consumer's progress; the handler decodes, runs `hook`, then acknowledges. */
      async function open(hook?: Hook): Promise<Run> {
        const source = (harness.create ?? ((s, l) => createNativeSource(s, l)!))(db.supplier, log);
        sources.push(source);
        const run: Run = { source, batches: [], batchEvents: [], events: [], acking: true };
        let active = 0;
        await source.start(async (b) => {
          if (active++) problems.push('a batch was handed over while the handler of another had not resolved');
          try {
            const evs: ChangeEvent[] = [];
            for (const m of b.changes) {
              try {
                evs.push(decodeChecked(m));
              } catch (err) {
                problems.push(`undecodable message: ${(err as Error).message.slice(0, 300)}`);
              }
            }
            if (b.snapshot && evs.some((e) => e.op !== 'r' && e.op !== 't')) problems.push(`snapshot batch with ${evs.map(tag).join(' ')}`);
            if (!b.snapshot && evs.some((e) => e.op === 'r')) problems.push('op r outside a snapshot batch');
            if (b.snapshotComplete && !b.snapshot) problems.push('snapshotComplete on a batch not marked snapshot');
            run.batches.push(b);
            run.batchEvents.push(evs);
            run.events.push(...evs);
            all.push(...evs);
            await hook?.(b, evs);
            if (!run.acking) return;
            await source.ack(b.checkpoint);
            progress.checkpoint = b.checkpoint;
            if (b.snapshotComplete) progress.snapshotDone = true;
          } finally {
            active--;
          }
        }, { ...(progress.checkpoint ? { checkpoint: progress.checkpoint } : {}), snapshotDone: progress.snapshotDone });
        return run;
      }

      /** Waits for `check`, failing with `what` and the run's last events. */
      async function waitFor(run: Run, what: string, check: () => boolean | Promise<boolean>): Promise<void> {
        const ok = await eventually(async () => check(), WAIT_MS);
        expect(ok, `${name}: ${what}; the source delivered ${run.batches.length} batches, last events: ${run.events.slice(-12).map(tag).join(' ')}`).toBe(true);
      }

      /**
       * Inserts a marker row and waits until `run` delivered it: batches come in source order, so every
       * change committed before it (a repeat too) has been delivered by then.
       */
      async function barrier(run: Run): Promise<number> {
        const id = ++marker;
        await db.sql(`INSERT INTO ${db.stock} VALUES (${id}, 'marker', 'd1', 0)`);
        await waitFor(run, `marker row ${id} arrives`, () => run.events.some((e) => e.op === 'c' && Number(e.key?.id) === id));
        return id;
      }

      /** Starts the first source and waits until its snapshot completed and was acknowledged. */
      async function snapshotted(hook?: Hook): Promise<Run> {
        const run = await open(hook);
        await waitFor(run, 'the snapshot completes and is acknowledged', () => progress.snapshotDone);
        return run;
      }

      /** The applied events (every run so far) equal the table. */
      async function expectTable(): Promise<void> {
        const table = await db.rows();
        const got = applyEvents(all);
        expect([...got.keys()].sort((a, b) => a - b), `${name}: ids after applying every event`).toEqual([...table.keys()].sort((a, b) => a - b));
        for (const [id, row] of table) expect(got.get(id), `${name}: row ${id}`).toEqual({ ...row });
      }

      return { db, progress, sources, problems, gates, all, open, waitFor, barrier, snapshotted, expectTable };
    }

    const ids = (events: ChangeEvent[], op: string) => events.filter((e) => e.op === op).map((e) => Number(e.key!.id)).sort((a, b) => a - b);
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

    it('hands over from snapshot to stream: snapshot rows once, rows written during the snapshot once from the stream', async () => {
      await withSource(200, async (t) => {
        let wrote = false;
        const run = await t.open(async (b) => {
          if (!b.snapshot || wrote) return;
          wrote = true;
          // Committed while the snapshot is being read: not in it, so they must come from the stream.
          await t.db.sql(`INSERT INTO ${t.db.stock} VALUES ${values(seedRows(1001, 1020))}`);
          await t.db.sql(`UPDATE ${t.db.stock} SET qty = qty + 1000 WHERE id <= 10`);
          await t.db.sql(`DELETE FROM ${t.db.stock} WHERE id BETWEEN 21 AND 25`);
        });
        await t.waitFor(run, 'the deletes written during the snapshot arrive', () => ids(run.events, 'd').length >= 5);
        const m = await t.barrier(run);
        const snapshotBatches = run.batches.filter((b) => b.snapshot);
        const first = run.batches.findIndex((b) => !b.snapshot);
        expect(first, `${name}: every snapshot batch comes before the stream`).toBe(snapshotBatches.length);
        expect(run.batches.filter((b) => b.snapshotComplete), `${name}: one batch ends the snapshot`).toHaveLength(1);
        expect(snapshotBatches.at(-1)!.snapshotComplete, `${name}: the snapshot ends with its snapshotComplete batch`).toBe(true);
        expect(ids(run.events, 'r'), `${name}: every existing row once as op r`).toEqual(range(1, 200));
        const streamed = run.batchEvents.filter((_, i) => !run.batches[i]!.snapshot).flat();
        const expected = [...range(1001, 1020).map((id) => `c:${id}`), ...range(1, 10).map((id) => `u:${id}`), ...range(21, 25).map((id) => `d:${id}`), `c:${m}`];
        expect(streamed.map(tag).sort(), `${name}: the writes made during the snapshot, each once, from the stream`).toEqual(expected.sort());
        await t.expectTable();
      });
    }, 120_000);

    it('releases a batch only on its acknowledgement: a restart before the handler resolved, or before the ack, delivers it again; after the ack not', async () => {
      await withSource(5, async (t) => {
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        t.gates.push(release);
        let blocked = false;
        let note = 0;
        /** Unrelated log and some time: a source that acknowledges on its own (keepalives, timers) would now. */
        const idle = async () => {
          await t.db.sql(`INSERT INTO ${t.db.other} VALUES (${++note}, 'x')`);
          await new Promise((r) => setTimeout(r, 1500));
        };
        const first = await t.snapshotted(async (_b, evs) => {
          if (evs.some((e) => e.op === 'c' && e.key?.id === 500)) {
            blocked = true;
            await gate;
          }
        });
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES (500, 'blocker', 'd1', 1)`);
        await t.waitFor(first, 'the handler receives the blocker row', () => blocked);
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES (501, 'queued', 'd1', 1)`);
        await idle();
        // The consumer goes away with the handler still running: it never acknowledges the blocker.
        first.acking = false;
        const stopping = first.source.stop();
        const second = await t.open();
        await t.waitFor(second, 'a restart delivers the blocker whose handler had not resolved, and what followed it', () => ids(second.events, 'c').includes(501));
        release();
        await stopping;
        expect(second.events.map(tag), `${name}: after a restart from the last acknowledged checkpoint`).toEqual(['c:500', 'c:501']);
        await t.waitFor(second, 'the restarted consumer acknowledged both', () => t.progress.checkpoint === second.batches.at(-1)!.checkpoint);

        // A handler that resolved without its consumer acknowledging (not durable yet): still not released.
        second.acking = false;
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES (502, 'unacked', 'd1', 1)`);
        await t.waitFor(second, 'the unacknowledged row is handled', () => ids(second.events, 'c').includes(502));
        await idle();
        await second.source.stop();
        const third = await t.open();
        await t.waitFor(third, 'a restart delivers the handled but unacknowledged row again', () => ids(third.events, 'c').includes(502));
        const m = await t.barrier(third);
        expect(third.events.map(tag), `${name}: a restart after a handler resolved but before its ack`).toEqual(['c:502', `c:${m}`]);
        await t.waitFor(third, 'the consumer acknowledged every batch', () => t.progress.checkpoint === third.batches.at(-1)!.checkpoint);

        await third.source.stop();
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES (503, 'later', 'd1', 1)`);
        const fourth = await t.open();
        await t.waitFor(fourth, 'a restart after the acknowledgement delivers the later row', () => ids(fourth.events, 'c').includes(503));
        expect(fourth.events.map(tag), `${name}: nothing acknowledged comes again, every later change does`).toEqual(['c:503']);
        await t.expectTable();
      });
    }, 120_000);

    it('resumes after the last acknowledged batch: changes made while stopped arrive exactly once', async () => {
      await withSource(5, async (t) => {
        const first = await t.snapshotted();
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES ${values(seedRows(10, 12))}`);
        await t.db.sql(`UPDATE ${t.db.stock} SET qty = 77 WHERE id = 10`);
        await t.barrier(first);
        await t.waitFor(first, 'every batch is acknowledged', () => t.progress.checkpoint === first.batches.at(-1)!.checkpoint);
        await first.source.stop();
        await expect(first.source.done, `${name}: done resolves on stop()`).resolves.toBeUndefined();
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES ${values(seedRows(20, 24))}`);
        await t.db.sql([`UPDATE ${t.db.stock} SET qty = 5 WHERE id = 1`, `DELETE FROM ${t.db.stock} WHERE id = 2`]);
        await t.db.rotateLog();
        await t.db.sql(`UPDATE ${t.db.stock} SET sku = 'moved' WHERE id = 3`);
        const second = await t.open();
        const m = await t.barrier(second);
        expect(second.events.map(tag), `${name}: exactly the changes made while stopped, in order`).toEqual(['c:20', 'c:21', 'c:22', 'c:23', 'c:24', 'u:1', 'd:2', 'u:3', `c:${m}`]);
        await t.expectTable();
      });
    }, 120_000);

    it('delivers a primary-key change as a delete of the old key and a create of the new one', async () => {
      await withSource(5, async (t) => {
        const run = await t.snapshotted();
        const n = run.events.length;
        await t.db.sql(`UPDATE ${t.db.stock} SET id = 100, qty = 9 WHERE id = 3`);
        const m = await t.barrier(run);
        const got = run.events.slice(n);
        expect(got.map(tag), `${name}: a key change`).toEqual(['d:3', 'c:100', `c:${m}`]);
        expect(got[0], `${name}: the delete names the old key`).toMatchObject({ op: 'd', key: { id: 3 }, after: null });
        expect(got[1], `${name}: the create carries the new row`).toMatchObject({ op: 'c', key: { id: 100 }, after: { id: 100, sku: 'sku-3', depot: 'd2', qty: 9 } });
        const batchOf = (e: ChangeEvent) => run.batchEvents.findIndex((evs) => evs.includes(e));
        expect(batchOf(got[0]!), `${name}: both halves in the transaction's batch`).toBe(batchOf(got[1]!));
        await t.expectTable();
      });
    }, 60_000);

    it('delivers a truncate as op t, and applying the events removes every row', async () => {
      await withSource(5, async (t) => {
        const run = await t.snapshotted();
        // A reader may begin the snapshot with a truncate of its own: count past it.
        const before = run.events.filter((e) => e.op === 't').length;
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES ${values(seedRows(6, 8))}`);
        await t.db.sql(`TRUNCATE TABLE ${t.db.stock}`);
        await t.waitFor(run, 'a truncate event arrives', () => run.events.filter((e) => e.op === 't').length > before);
        const at = run.events.map((e) => e.op).lastIndexOf('t');
        expect(run.events[at], `${name}: the truncate names the table`).toMatchObject({ op: 't', table: t.db.stock });
        expect(run.batches[run.batchEvents.findIndex((evs) => evs.includes(run.events[at]!))]!.snapshot, `${name}: the truncate is streamed`).toBe(false);
        expect(applyEvents(t.all.slice(0, t.all.indexOf(run.events[at]!) + 1)).size, `${name}: rows left after applying the truncate`).toBe(0);
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES (7, 'again', 'd1', 3)`);
        await t.barrier(run);
        await t.expectTable();
      });
    }, 60_000);

    it.skipIf(!!harness.retainedLogSkipReason)(`does not retain log while its tables are idle${harness.retainedLogSkipReason ? ` (skipped: ${harness.retainedLogSkipReason})` : ''}`, async () => {
      await withSource(5, async (t) => {
        const run = await t.snapshotted();
        await t.db.sql(`UPDATE ${t.db.stock} SET qty = 1 WHERE id = 1`);
        await t.barrier(run);
        const from = await t.db.logPosition!();
        const note = 'x'.repeat(200);
        for (let i = 0; i < 4; i++) await t.db.sql(`INSERT INTO ${t.db.other} VALUES ${range(i * 2000 + 1, (i + 1) * 2000).map((id) => `(${id}, '${note}')`).join(', ')}`);
        const written = (await t.db.logPosition!()) - from;
        expect(written, `${name}: the uncaptured writes make enough log for the bound to mean something`).toBeGreaterThan(4 * RETAINED_BOUND);
        let retained = Number.NaN;
        const ok = await eventually(async () => (retained = await t.db.retainedLog!()) < RETAINED_BOUND, WAIT_MS, 500);
        expect(ok, `${name}: an idle source keeps ${retained} bytes of log after ${written} bytes written to an uncaptured table (bound ${RETAINED_BOUND})`).toBe(true);
        expect(run.events.filter((e) => e.table.endsWith('.other')), `${name}: uncaptured table`).toEqual([]);
      });
    }, 90_000);

    it('ends the stream when a handler rejects: done rejects, nothing later is handed over, a restart delivers the batch again', async () => {
      await withSource(5, async (t) => {
        let failed = false;
        const first = await t.snapshotted(async (_b, evs) => {
          if (!failed && evs.some((e) => e.op === 'c' && e.key?.id === 600)) {
            failed = true;
            throw new Error('conformance: the consumer could not store this batch');
          }
        });
        let outcome = 'pending';
        first.source.done.then(() => (outcome = 'resolved'), () => (outcome = 'rejected'));
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES (600, 'fails', 'd1', 1)`);
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES (601, 'after', 'd1', 1)`);
        await t.waitFor(first, 'done settles once the handler rejected', () => outcome !== 'pending');
        expect(outcome, `${name}: done after a handler rejection`).toBe('rejected');
        await first.source.stop();
        expect(ids(first.events, 'c'), `${name}: nothing after the failed batch is handed over`).not.toContain(601);
        const second = await t.open();
        await t.waitFor(second, 'a restart delivers the failed batch and the next', () => ids(second.events, 'c').includes(601));
        expect(second.events.map(tag), `${name}: after a restart`).toEqual(['c:600', 'c:601']);
      });
    }, 60_000);

    it('hands over checkpoints in order: each batch\'s is at or after the one before, across log files and a restart', async () => {
      await withSource(50, async (t) => {
        const first = await t.snapshotted();
        for (let i = 0; i < 3; i++) {
          await t.db.sql(`UPDATE ${t.db.stock} SET qty = qty + 1 WHERE id <= ${10 * (i + 1)}`);
          await t.db.sql([`INSERT INTO ${t.db.stock} VALUES ${values(seedRows(100 + i * 10, 104 + i * 10))}`, `DELETE FROM ${t.db.stock} WHERE id = ${40 + i}`]);
          await t.db.rotateLog();
        }
        await t.barrier(first);
        await t.waitFor(first, 'every batch is acknowledged', () => t.progress.checkpoint === first.batches.at(-1)!.checkpoint);
        await first.source.stop();
        await t.db.sql(`UPDATE ${t.db.stock} SET qty = 0 WHERE id = 45`);
        const second = await t.open();
        await t.db.rotateLog();
        await t.db.sql(`INSERT INTO ${t.db.stock} VALUES (300, 'late', 'd2', 1)`);
        await t.barrier(second);
        const checkpoints = [...first.batches, ...second.batches].map((b) => b.checkpoint);
        const backwards = checkpoints.flatMap((c, i) => (i > 0 && compareCheckpoints(checkpoints[i - 1]!, c) > 0 ? [`${JSON.stringify(checkpoints[i - 1])} > ${JSON.stringify(c)}`] : []));
        expect(backwards, `${name}: checkpoints going backwards`).toEqual([]);
        expect(compareCheckpoints(checkpoints[0]!, checkpoints.at(-1)!), `${name}: the stream moved the checkpoint on`).toBeLessThan(0);
        await t.expectTable();
      });
    }, 90_000);
  });
}
