import { between, prng, type DemoSupplier, type ModelRow } from './catalog.js';
import { openSupplierDb, type SupplierDb } from './supplier-db.js';

/** Kinds of change the generator makes, as a warehouse system would. */
export const CHANGE_KINDS = ['sale', 'receipt', 'transfer', 'return', 'correction', 'delete', 'reinsert'] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

const WEIGHTS: Array<[ChangeKind, number]> = [['sale', 40], ['receipt', 14], ['transfer', 10], ['return', 8], ['correction', 12], ['delete', 7], ['reinsert', 9]];

/** One supplier's rows, split into lanes that own disjoint rows (so transactions never conflict). */
interface Lane {
  supplier: DemoSupplier;
  client: SupplierDb;
  live: ModelRow[];
  deleted: ModelRow[];
}

/** A running change generator. */
export interface ChangeGenerator {
  /** Row changes committed so far, in total and by kind. */
  committed(): number;
  byKind(): Record<ChangeKind, number>;
  /** Row changes committed so far by the bottle size of the row changed (ml → changes). */
  bySize(): Map<number, number>;
  /** Stops generating; resolves once the transactions in flight have committed. */
  stop(): Promise<void>;
  /** Settles with the first error a lane hit (the generator stops then). */
  failed: Promise<Error>;
}

const ident = (s: DemoSupplier) => s.table.split('.').map((p) => (s.engine === 'postgres' ? `"${p}"` : `\`${p}\``)).join('.');

/** The SQL of one change, and the bottle size of the row it changes. */
interface Statement {
  text: string;
  values: Array<string | number>;
  ml: number;
}

/** The SQL of one change, applied to `r` (already mutated to its new state). */
function statement(s: DemoSupplier, kind: ChangeKind, r: ModelRow): Statement {
  const t = ident(s);
  if (kind === 'delete') return { text: `DELETE FROM ${t} WHERE ${s.pk} = $1`, values: [r.id], ml: r.ml };
  if (kind === 'reinsert') {
    const cols = s.columns(r);
    return { text: `INSERT INTO ${t} (${Object.keys(cols).join(', ')}) VALUES (${Object.keys(cols).map((_, i) => `$${i + 1}`).join(', ')})`, values: Object.values(cols), ml: r.ml };
  }
  const set = kind === 'transfer' ? { [s.whCol]: r.warehouse } : s.quantity(r);
  const keys = Object.keys(set);
  return { text: `UPDATE ${t} SET ${keys.map((k, i) => `${k} = $${i + 2}`).join(', ')} WHERE ${s.pk} = $1`, values: [r.id, ...Object.values(set)], ml: r.ml };
}

/**
 * Applies one change of `kind` to a random row of the lane in the model and returns its SQL, or
 * undefined when that kind does not apply (no stock to sell, nothing deleted to re-insert).
 * Quantities stay whole units, so liters are always whole bottles of the row's size. Rows of every
 * bottle size are picked alike (northsea-wines: its 750 ml and 1500 ml rows of a code); a re-inserted
 * row gets a new packing, so it may come back in the other size, under the other canonical SKU.
 */
function change(lane: Lane, kind: ChangeKind, rnd: () => number) {
  const s = lane.supplier;
  const pick = <T>(list: T[]) => Math.floor(rnd() * list.length);
  if (kind === 'reinsert') {
    if (!lane.deleted.length) return undefined;
    const [r] = lane.deleted.splice(pick(lane.deleted), 1) as [ModelRow];
    const whs = Object.keys(s.regions);
    Object.assign(r, { warehouse: whs[pick(whs)]!, units: between(rnd, s.receipt), ...s.packing(rnd) });
    lane.live.push(r);
    return statement(s, kind, r);
  }
  if (!lane.live.length) return undefined;
  const i = pick(lane.live);
  const r = lane.live[i]!;
  switch (kind) {
    case 'sale':
      if (r.units === 0) return undefined;
      r.units -= Math.min(r.units, between(rnd, s.sale));
      break;
    case 'receipt': r.units += between(rnd, s.receipt); break;
    case 'return': r.units += 1; break;
    case 'correction': r.units = between(rnd, s.count); break;
    case 'transfer': {
      const others = Object.keys(s.regions).filter((w) => w !== r.warehouse);
      r.warehouse = others[Math.floor(rnd() * others.length)]!;
      break;
    }
    case 'delete':
      lane.live[i] = lane.live[lane.live.length - 1]!;
      lane.live.pop();
      lane.deleted.push(r);
      break;
  }
  return statement(s, kind, r);
}

function pickKind(rnd: () => number): ChangeKind {
  let x = rnd() * WEIGHTS.reduce((a, [, w]) => a + w, 0);
  for (const [k, w] of WEIGHTS) if ((x -= w) < 0) return k;
  return 'sale';
}

/**
 * Starts generating changes at `rate` row changes per second over the suppliers' databases, in
 * transactions of one to four changes. `rows` is each supplier's current rows (the generator takes
 * ownership and keeps them in step with the database); `urls` its database URL.
 */
export async function startGenerator(
  suppliers: Array<{ supplier: DemoSupplier; url: string; rows: ModelRow[] }>,
  rate: number,
  lanesPerSupplier = 2,
): Promise<ChangeGenerator> {
  const rnd = prng(20240611);
  const lanes: Lane[] = [];
  for (const { supplier, url, rows } of suppliers) {
    for (let k = 0; k < lanesPerSupplier; k++) {
      const client = await openSupplierDb(supplier.engine, url, 'cellar-demo-generator');
      lanes.push({ supplier, client, live: rows.filter((r) => r.id % lanesPerSupplier === k), deleted: [] });
    }
  }
  const counts = Object.fromEntries(CHANGE_KINDS.map((k) => [k, 0])) as Record<ChangeKind, number>;
  const sizes = new Map<number, number>();
  let committed = 0;
  let issued = 0;
  let stopped = false;
  let fail!: (e: Error) => void;
  const failed = new Promise<Error>((r) => (fail = r));
  const t0 = performance.now();
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const runLane = async (lane: Lane) => {
    while (!stopped) {
      const size = 1 + Math.floor(rnd() * 4);
      const due = Math.floor((rate * (performance.now() - t0)) / 1000) - issued;
      if (due < size) {
        await sleep(Math.max(2, ((size - due) / rate) * 1000));
        continue;
      }
      issued += size;
      const ops: Array<[ChangeKind, Statement]> = [];
      for (let n = 0; ops.length < size && n < size * 4; n++) {
        const kind = pickKind(rnd);
        const st = change(lane, kind, rnd);
        if (st) ops.push([kind, st]);
      }
      await lane.client.query('BEGIN');
      for (const [, st] of ops) await lane.client.query(st.text, st.values);
      await lane.client.query('COMMIT');
      committed += ops.length;
      for (const [k, st] of ops) {
        counts[k]++;
        sizes.set(st.ml, (sizes.get(st.ml) ?? 0) + 1);
      }
    }
  };
  const running = lanes.map((l) =>
    runLane(l).catch((err: unknown) => {
      stopped = true;
      fail(err instanceof Error ? err : new Error(String(err)));
    }),
  );
  return {
    committed: () => committed,
    byKind: () => ({ ...counts }),
    bySize: () => new Map(sizes),
    failed,
    stop: async () => {
      stopped = true;
      await Promise.all(running);
      await Promise.all(lanes.map((l) => l.client.end().catch(() => undefined)));
    },
  };
}
