import pg from 'pg';
import { createDatabase } from '../infra/local/postgres.js';
import { createSupplierTable, pollUntil, REGIONS, ROWS, STOCK_DDL, writeSustained, type Contestant, type Follower, type Written } from './workload.js';

/**
 * The peer: what a Postgres-savvy team builds without Cellar. Native logical replication of the supplier
 * table (publication on the supplier database, subscription in a separate `bench_peer` database, on another
 * server in the embedded suite) and a PL/pgSQL row trigger on the subscriber's copy keeping `totals(region, sku, bottles)`
 * through a `depot_region` table: inserts, updates (a changed quantity as one delta; a depot or SKU move as
 * a decrement of the old total and an upsert of the new) and deletes.
 */
const PEER_SQL = `
CREATE TABLE public.depot_region (depot text PRIMARY KEY, region text NOT NULL);
INSERT INTO public.depot_region VALUES ${Object.entries(REGIONS).map(([d, r]) => `('${d}', '${r}')`).join(', ')};
CREATE TABLE public.totals (region text, sku text, bottles bigint NOT NULL, PRIMARY KEY (region, sku));
-- Names are schema-qualified: the apply worker runs triggers with an empty search_path.
CREATE FUNCTION public.stock_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.depot = OLD.depot AND NEW.item_code = OLD.item_code THEN
    IF NEW.qty <> OLD.qty THEN
      UPDATE public.totals SET bottles = bottles + (NEW.qty - OLD.qty)
       WHERE region = (SELECT region FROM public.depot_region WHERE depot = NEW.depot) AND sku = NEW.item_code;
    END IF;
    RETURN NULL;
  END IF;
  IF TG_OP <> 'INSERT' THEN
    UPDATE public.totals SET bottles = bottles - OLD.qty
     WHERE region = (SELECT region FROM public.depot_region WHERE depot = OLD.depot) AND sku = OLD.item_code;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO public.totals (region, sku, bottles) SELECT region, NEW.item_code, NEW.qty FROM public.depot_region WHERE depot = NEW.depot
    ON CONFLICT (region, sku) DO UPDATE SET bottles = public.totals.bottles + EXCLUDED.bottles;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER stock_totals AFTER INSERT OR UPDATE OR DELETE ON public.stock FOR EACH ROW EXECUTE FUNCTION public.stock_totals();
ALTER TABLE public.stock ENABLE ALWAYS TRIGGER stock_totals;
`;

/**
 * The freshness probe, added only for the fixed-rate runs (so the sustained runs carry none of its cost):
 * for 1 change in 10 (`id % 10 = 0`) a deferred constraint trigger, which fires as the apply transaction
 * commits (when the new totals become visible), records `clock_timestamp() - updated_at`, the row's change
 * time on the supplier.
 */
const PROBE_SQL = `
CREATE TABLE public.latency (ms double precision NOT NULL);
CREATE FUNCTION public.stock_latency() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.latency VALUES (extract(epoch FROM clock_timestamp() - NEW.updated_at) * 1000);
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER stock_latency AFTER UPDATE ON public.stock DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.id % 10 = 0) EXECUTE FUNCTION public.stock_latency();
ALTER TABLE public.stock ENABLE ALWAYS TRIGGER stock_latency;
`;

/** The peer, set up and caught up with its initial copy. */
export interface Peer extends Contestant {
  /** Seconds from CREATE SUBSCRIPTION until the initial copy (with its trigger-built totals) was done. */
  initialSyncS: number;
  /** After the measured runs: a transaction of inserts, moves and deletes, then the totals compared with the supplier's rows. */
  check(): Promise<TotalsCheck>;
  /** Drops the subscription (and so its slot) and closes the connections. */
  stop(): Promise<void>;
}

/** The peer's totals against `SELECT region, sku, sum(qty) … GROUP BY` over the supplier's rows. */
export interface TotalsCheck {
  keys: number;
  mismatches: number;
  /** The first few differing keys (want = supplier GROUP BY, got = peer totals). */
  examples: Array<{ key: string; want: number; got: number }>;
}

/**
 * Sets the peer up: the supplier database `bench_peer_supplier` (publication `peer_pub`, slot `peer_slot`) on
 * the server at `adminUrl`, the subscriber database `bench_peer` on the one at `subscriberAdminUrl` (default:
 * the same), and waits for the initial copy.
 */
export async function startPeer(adminUrl: string, subscriberAdminUrl = adminUrl): Promise<Peer> {
  const supplierUrl = await createDatabase(adminUrl, 'bench_peer_supplier');
  const peerUrl = await createDatabase(subscriberAdminUrl, 'bench_peer');
  const supplier = new pg.Client(supplierUrl);
  const peer = new pg.Client(peerUrl);
  let subscribed = false;
  const stop = async () => {
    if (subscribed) await peer.query('DROP SUBSCRIPTION peer_sub').catch(() => undefined);
    subscribed = false;
    await supplier.end().catch(() => undefined);
    await peer.end().catch(() => undefined);
  };
  try {
    await supplier.connect();
    await peer.connect();
    await createSupplierTable(supplier);
    await supplier.query('CREATE PUBLICATION peer_pub FOR TABLE public.stock');
    // Created here: a subscription to a publication of its own server cannot create its slot itself (it would wait on its own transaction).
    await supplier.query(`SELECT pg_create_logical_replication_slot('peer_slot', 'pgoutput')`);
    await peer.query(STOCK_DDL);
    await peer.query(PEER_SQL);
    const port = new URL(adminUrl).port;
    const t0 = performance.now();
    await peer.query(`CREATE SUBSCRIPTION peer_sub CONNECTION 'host=127.0.0.1 port=${port} dbname=bench_peer_supplier user=postgres' PUBLICATION peer_pub WITH (create_slot = false, slot_name = 'peer_slot', copy_data = true)`);
    subscribed = true;
    await pollUntil('the peer’s initial copy', async () => (await peer.query(`SELECT count(*)::int AS n FROM pg_subscription_rel WHERE srsubstate <> 'r'`)).rows[0].n === 0);
    const initialSyncS = Math.round(performance.now() - t0) / 1000;
    const f = follower(supplier, peer);
    return {
      name: 'peer', writer: supplier, follower: f, initialSyncS, stop,
      beforeFreshness: async () => void (await peer.query(PROBE_SQL)),
      check: async () => {
        await exerciseMoves(supplier);
        await f.caughtUp(await writeSustained(supplier, 500));
        return checkTotals(supplier, peer);
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Caught up: the first row of the writer's last transaction carries the supplier's quantity on the peer.
 * The apply worker applies transactions one at a time in commit order, with the trigger's totals in the
 * same transaction, so that one primary-key read (every 20 ms) covers everything before it.
 */
function follower(supplier: pg.Client, peer: pg.Client): Follower {
  return {
    mark: async () => undefined,
    caughtUp: async (w: Written) => {
      const want = (await supplier.query('SELECT qty FROM public.stock WHERE id = $1', [w.lastId])).rows[0].qty as number;
      await pollUntil(`the peer to apply row ${w.lastId}`, async () => (await peer.query('SELECT qty FROM public.stock WHERE id = $1', [w.lastId])).rows[0]?.qty === want);
    },
    resetSamples: async () => void (await peer.query('TRUNCATE public.latency')),
    samples: async () => (await peer.query<{ ms: number }>('SELECT ms FROM public.latency')).rows.map((r) => r.ms),
  };
}

/** One supplier transaction of inserts, depot moves (within and across regions, and to an unmapped depot), SKU moves and deletes. */
async function exerciseMoves(c: pg.Client): Promise<void> {
  await c.query('BEGIN');
  await c.query(`INSERT INTO public.stock (id, item_code, depot, qty) SELECT g, 'wine-' || (g % 37), 'd' || (g % 5), 7 FROM generate_series(${ROWS}, ${ROWS + 199}) g`);
  await c.query(`INSERT INTO public.stock (id, item_code, depot, qty) SELECT g, 'wine-new-' || (g % 3), 'd1', 3 FROM generate_series(${ROWS + 200}, ${ROWS + 209}) g`);
  await c.query(`UPDATE public.stock SET depot = 'd2' WHERE id < 300 AND depot IN ('d0', 'd1')`); // eu → us
  await c.query(`UPDATE public.stock SET depot = 'd1' WHERE id BETWEEN 300 AND 599 AND depot = 'd0'`); // within eu
  await c.query(`UPDATE public.stock SET item_code = 'wine-' || ((id + 1) % 2000), qty = qty + 5 WHERE id BETWEEN 600 AND 899`);
  await c.query(`UPDATE public.stock SET item_code = 'wine-moved', depot = 'd4' WHERE id BETWEEN 900 AND 949`);
  await c.query(`UPDATE public.stock SET depot = 'd9' WHERE id BETWEEN 950 AND 959`); // to a depot without a region
  await c.query('DELETE FROM public.stock WHERE id BETWEEN 1000 AND 1099 OR id >= $1', [ROWS + 205]);
  await c.query('COMMIT');
}

/** Compares every (region, sku) of the supplier's GROUP BY with the peer's totals (absent counts as 0). */
async function checkTotals(supplier: pg.Client, peer: pg.Client): Promise<TotalsCheck> {
  const mapping = Object.entries(REGIONS).map(([d, r]) => `('${d}', '${r}')`).join(', ');
  const want = await supplier.query<{ region: string; sku: string; bottles: string }>(
    `SELECT m.region, s.item_code AS sku, sum(s.qty)::bigint AS bottles FROM public.stock s JOIN (VALUES ${mapping}) m (depot, region) USING (depot) GROUP BY 1, 2`,
  );
  const got = await peer.query<{ region: string; sku: string; bottles: string }>('SELECT region, sku, bottles FROM public.totals');
  const w = new Map(want.rows.map((r) => [`${r.region}/${r.sku}`, Number(r.bottles)]));
  const g = new Map(got.rows.map((r) => [`${r.region}/${r.sku}`, Number(r.bottles)]));
  const examples: TotalsCheck['examples'] = [];
  let mismatches = 0;
  for (const key of new Set([...w.keys(), ...g.keys()])) {
    if ((w.get(key) ?? 0) === (g.get(key) ?? 0)) continue;
    mismatches++;
    if (examples.length < 5) examples.push({ key, want: w.get(key) ?? 0, got: g.get(key) ?? 0 });
  }
  return { keys: w.size, mismatches, examples };
}
