import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RegionalAggregator, type Contribution, type HistoryEntry } from '../../pipelines/aggregate/aggregator.js';
import { deriveEvents } from '../../pipelines/events/derive.js';
import type { ChangeEvent } from '../../pipelines/normalize/debezium.js';
import { SizeCatalog } from '../../pipelines/catalog/catalog.js';
import { compileMapping } from '../../pipelines/normalize/mapping.js';
import { contributorIdOf, normalizeChange, normalizeTruncate, type Route } from '../../pipelines/normalize/normalize.js';
import type { StockObservation } from '../../schemas/records.js';
import { northSupplier } from '../support/fixtures.js';

const DEPOTS = ['bdx-1', 'lyon-2', 'nyc-1'];
const REGION: Record<string, string> = { 'bdx-1': 'eu-west', 'lyon-2': 'eu-west', 'nyc-1': 'us-east' };
const SKUS = ['a', 'b', 'c'];
const SIZES = [375, 750, 1500];
// One supplier code per wine, told apart by a bottle-size column: a size-keyed map gives each size its
// own canonical SKU, and the catalog lists each canonical SKU with its one size.
const ENTRIES = SKUS.flatMap((sku) => SIZES.map((ml) => ({ supplierSku: sku, bottleSizeMl: ml, sku: `${sku}-${ml}` })));
const mapping = compileMapping(
  northSupplier(`  bottleSizeMl: ml
  skus:
    inline:
${ENTRIES.map((e) => `      - { supplierSku: ${e.supplierSku}, bottleSizeMl: ${e.bottleSizeMl}, sku: ${e.sku} }`).join('\n')}`),
  { catalog: new SizeCatalog(ENTRIES.map((e) => ({ sku: e.sku, bottleSizeMl: e.bottleSizeMl, origin: 'import' as const, firstSupplier: null }))) },
);

type Op =
  | { kind: 'upsert'; id: number; sku: number; depot: number; qty: number; ml: number }
  | { kind: 'delete'; id: number }
  | { kind: 'dup'; back: number }
  | { kind: 'truncate' }
  /** The reader snapshots the table again (after a crash mid-snapshot, a lost slot): a truncate, then every row. */
  | { kind: 'resnapshot' };

/** Applies supplier operations to rows (the truth) and returns the Debezium changes, Postgres-style. */
function history(ops: Op[]): { changes: ChangeEvent[]; rows: Map<number, { sku: string; depot: string; qty: number; ml: number }>; steps: Array<Map<number, { sku: string; depot: string; qty: number; ml: number }>> } {
  const rows = new Map<number, { sku: string; depot: string; qty: number; ml: number }>();
  /** The rows after each operation that changed them: the truth's sequence of states. */
  const steps: Array<Map<number, { sku: string; depot: string; qty: number; ml: number }>> = [];
  const changes: ChangeEvent[] = [];
  let lsn = 100;
  for (const op of ops) {
    if (op.kind === 'dup') {
      if (changes.length) changes.push(changes[Math.max(0, changes.length - 1 - (op.back % changes.length))]!);
      continue;
    }
    lsn += 8;
    const at = (n: number) => ({ source: {}, table: 'public.stock', sourceVersion: String(n).padStart(20, '0'), sourceTsMs: n, position: `lsn=${n}` });
    if (op.kind === 'truncate' || op.kind === 'resnapshot') {
      if (op.kind === 'truncate') rows.clear();
      // A re-snapshot as the readers emit it: every row at the snapshot's position, then a truncate just
      // below it that removes only rows not read again.
      if (op.kind === 'resnapshot') {
        for (const [id, r] of rows) changes.push({ ...at(lsn), op: 'r', key: { id }, before: null, after: { id, item_code: r.sku, depot: r.depot, qty: r.qty, ml: r.ml } });
      }
      changes.push({ ...at(op.kind === 'truncate' ? lsn : lsn - 1), op: 't', key: null, before: null, after: null });
      steps.push(new Map(rows));
      continue;
    }
    const base = { ...at(lsn), key: { id: op.id } };
    if (op.kind === 'delete') {
      if (!rows.has(op.id)) continue;
      rows.delete(op.id);
      steps.push(new Map(rows));
      changes.push({ ...base, op: 'd', before: { id: op.id, item_code: null, depot: null, qty: null, ml: null }, after: null });
    } else {
      const row = { sku: SKUS[op.sku]!, depot: DEPOTS[op.depot]!, qty: op.qty, ml: SIZES[op.ml]! };
      const existed = rows.has(op.id);
      rows.set(op.id, row);
      steps.push(new Map(rows));
      changes.push({ ...base, op: existed ? 'u' : 'c', before: null, after: { id: op.id, item_code: row.sku, depot: row.depot, qty: row.qty, ml: row.ml } });
    }
  }
  return { changes, rows, steps };
}

/** Normalizes `changes` from position `from` with the given routes; returns outputs and routes after each change. */
function normalize(changes: ChangeEvent[], from: number, routes: Map<string, Route>): { out: StockObservation[][]; routesAt: Array<Map<string, Route>> } {
  const out: StockObservation[][] = [];
  const routesAt: Array<Map<string, Route>> = [];
  for (let i = from; i < changes.length; i++) {
    const c = changes[i]!;
    if (c.op === 't') {
      const t = normalizeTruncate(c, [...routes.values()].filter((r) => r.sourceTable === c.table), 0);
      for (const r of t.routes) routes.set(r.contributorId, r);
      out.push(t.observations);
      routesAt.push(new Map(routes));
      continue;
    }
    const id = contributorIdOf('north-cellars', c);
    const r = normalizeChange(c, mapping, id, routes.get(id), 0);
    if (r.kind === 'changed') routes.set(id, r.route);
    out.push(r.kind === 'changed' ? r.observations : []);
    routesAt.push(new Map(routes));
  }
  return { out, routesAt };
}

/** Interleaves observations as separate partitions would: per-key order kept, keys shuffled by `seed`. */
function partitions(obs: StockObservation[], seed: number): StockObservation[] {
  const queues = new Map<string, StockObservation[]>();
  for (const o of obs) queues.set(`${o.region}|${o.sku}`, [...(queues.get(`${o.region}|${o.sku}`) ?? []), o]);
  const qs = [...queues.values()];
  const out: StockObservation[] = [];
  let s = seed;
  while (qs.some((q) => q.length)) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const live = qs.filter((q) => q.length);
    out.push(live[s % live.length]!.shift()!);
  }
  return out;
}

const op = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('upsert' as const), id: fc.integer({ min: 1, max: 6 }), sku: fc.nat(2), depot: fc.nat(2), qty: fc.integer({ min: 0, max: 40 }), ml: fc.nat(2) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dup' as const), back: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'truncate' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'resnapshot' as const }) },
);

describe('normalize + aggregate under crashes and replays (property)', () => {
  it('totals equal the suppliers\' final rows for any history, crash point and committed position', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 80 }), fc.nat(), fc.nat(), fc.nat(), fc.nat(), fc.nat(), (ops, a, b, c, d, seed) => {
        const { changes, rows, steps } = history(ops);
        const n = changes.length;
        // Normalizer: run 1 stops after k1 changes; routes were saved after p ≤ k1 changes, offsets committed at c1 ≤ p.
        const k1 = n === 0 ? 0 : a % (n + 1);
        const run1 = normalize(changes.slice(0, k1), 0, new Map());
        const p = k1 === 0 ? 0 : b % (k1 + 1);
        const c1 = p === 0 ? 0 : c % (p + 1);
        const restored = new Map(p === 0 ? [] : run1.routesAt[p - 1]!);
        const run2 = normalize(changes, c1, restored);
        const observations = [...run1.out.flat(), ...run2.out.flat()];

        // Aggregator: consumes the interleaved log; state persisted at q, committed at d1 ≤ q, restarts from d1.
        const log = partitions(observations, seed);
        const q = log.length === 0 ? 0 : d % (log.length + 1);
        const first = new RegionalAggregator();
        const persisted = new Map<string, Contribution>();
        // The history as the database keeps it: one row per (key, version), a replay's rows kept once.
        const kept = new Map<string, HistoryEntry>();
        const keep = (h: HistoryEntry[]) => h.forEach((e) => kept.set(`${e.region}|${e.sku}|${e.version}`, e));
        log.slice(0, q).forEach((o) => {
          first.apply(o);
          const drained = first.drain(0);
          for (const x of drained.contributions) persisted.set(`${x.region}|${x.sku}|${x.contributorId}`, x);
          keep(drained.history);
        });
        const d1 = q === 0 ? 0 : (d >>> 3) % (q + 1);
        const second = new RegionalAggregator();
        second.restore(persisted.values());
        for (const o of log.slice(d1)) second.apply(o);
        keep(second.drain(0).history);

        // The truth, from the rows: per (region, wine, bottle size); sizes are never summed together.
        const keyOf = (r: { depot: string; sku: string; ml: number }) => `${REGION[r.depot]}|${r.sku}-${r.ml}`;
        const truth = new Map<string, number>();
        for (const r of rows.values()) truth.set(keyOf(r), (truth.get(keyOf(r)) ?? 0) + r.qty);
        const got = new Map(second.totals().map((t) => [`${t.region}|${t.sku}`, t]));
        for (const [k, bottles] of truth) expect(got.get(k)?.bottles, k).toBe(bottles);
        for (const [k, t] of got) {
          expect(t.bottles, k).toBe(truth.get(k) ?? 0);
          expect(t.contributors, k).toBe([...rows.values()].filter((r) => keyOf(r) === k).length);
          if (t.contributors > 0) expect(t.bottleSizeMl, k).toBe(Number(t.sku.split('-')[1]));
        }

        // Sold-out and back-in-stock events: per key, exactly those of the truth's sequence of totals (a
        // re-snapshot, a duplicate or a replay adds none; a truncate's deletes cross zero once per key).
        const events = deriveEvents([...kept.values()].sort((x, y) => x.version - y.version));
        const derived = new Map<string, string[]>();
        for (const e of events) derived.set(`${e.region}|${e.sku}`, [...(derived.get(`${e.region}|${e.sku}`) ?? []), `${e.type} ${e.before}→${e.after}`]);
        const want = new Map<string, string[]>();
        const last = new Map<string, number>();
        for (const step of steps) {
          const totals = new Map<string, number>();
          for (const r of step.values()) totals.set(keyOf(r), (totals.get(keyOf(r)) ?? 0) + r.qty);
          for (const k of new Set([...last.keys(), ...totals.keys()])) {
            const before = last.get(k) ?? 0;
            const after = totals.get(k) ?? 0;
            if (before > 0 && after === 0) want.set(k, [...(want.get(k) ?? []), `sold_out ${before}→0`]);
            if (before === 0 && after > 0) want.set(k, [...(want.get(k) ?? []), `back_in_stock 0→${after}`]);
            last.set(k, after);
          }
        }
        const zeroCrossings = (m: Map<string, string[]>) => new Map([...m].map(([k, v]) => [k, v.map((x) => x.split(' ')[0])]));
        expect(zeroCrossings(derived)).toEqual(zeroCrossings(want));
      }),
      { numRuns: 500 },
    );
  });
});
