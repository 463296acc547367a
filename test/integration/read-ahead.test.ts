import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { SourceChange } from '../../connectors/source-change.js';
import { parseSupplier } from '../../connectors/registry/loader.js';
import { RegionalAggregator, type Contribution } from '../../pipelines/aggregate/aggregator.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { compileMapping } from '../../pipelines/normalize/mapping.js';
import { contributorIdOf, type Route } from '../../pipelines/normalize/normalize.js';
import type { Pending } from '../../pipelines/runtime/embedded-group.js';
import { ReadAhead } from '../../pipelines/runtime/read-ahead.js';
import { ContributionStore } from '../../pipelines/state/contributions.js';
import { CachedRouteStore, RouteStore } from '../../pipelines/state/routes.js';
import { freshDatabase, rid } from '../support/services.js';
import { postgresSupplierYaml } from '../support/suppliers.js';

/**
 * Reading ahead of a group against a real Postgres, as an adversary would time it: whatever is read ahead
 * must never be older than what the group would read for itself when it is used.
 */
describe('reading ahead of a group', () => {
  let db: { url: string; pool: pg.Pool };
  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  const supplier = parseSupplier(postgresSupplierYaml('postgres://127.0.0.1:5432/x', { id: rid('ra'), regions: { d1: 'eu' } }), '/x/ra.yaml');
  const change = (id: number, qty: number, lsn: number) => new SourceChange(
    { connector: 'postgresql', name: 'n', db: 'x', schema: 'public', table: 'stock' },
    [{ name: 'id', type: 'int32', optional: false }, { name: 'sku', type: 'string', optional: false }, { name: 'depot', type: 'string', optional: false }, { name: 'qty', type: 'int32', optional: false }],
    ['id'],
    { op: 'u', before: null, after: { id, sku: `s${id}`, depot: 'd1', qty }, tsMs: 1, lsn },
  );
  const idOf = (id: number) => contributorIdOf(supplier.id, change(id, 0, 1).event());
  const version = (n: number) => String(n).padStart(20, '0');
  const route = (id: number, region: string, v: number): Route => ({
    contributorId: idOf(id), supplierId: supplier.id, sourceTable: 'public.stock', region, sku: `s${id}`, supplierSku: `s${id}`,
    warehouseId: 'd1', vintage: null, bottleSizeMl: 750, sourceVersion: version(v), deleted: false,
  });
  const contribution = (id: number, bottles: number, v: number): Contribution => ({
    region: 'eu', sku: `s${id}`, contributorId: idOf(id), supplierId: supplier.id, warehouseId: 'd1', bottleSizeMl: 750, bottles,
    sourceVersion: version(v), sourceTsMs: 1, deleted: false, keyVersion: v,
  });
  const pending = (ids: number[]): Pending => ({
    supplier, mapping: compileMapping(supplier), batch: { changes: ids.map((id) => change(id, 1, 100 + id)), snapshot: false }, checkpoint: undefined, confirm: async () => undefined,
  });

  /**
   * Rows `ids` committed in region eu with 12 bottles each (route and contribution at version 10), and a
   * read ahead over fresh stores, active (groups have been reading from Postgres).
   */
  async function committedRows(ids: number[], onTake?: (used: number, missed: number) => void) {
    const contributions = new ContributionStore(db.pool);
    await new RouteStore(db.pool).save(ids.map((i) => route(i, 'eu', 10)));
    await contributions.save(ids.map((i) => contribution(i, 12, 10)), -1);
    const routes = new CachedRouteStore(db.pool, 1_000);
    const aggregator = new RegionalAggregator();
    const ahead = new ReadAhead({ routes, contributions, aggregator, log: createLogger('ra', 'error'), ...(onTake ? { onTake } : {}) });
    routes.lastMissAt = Date.now();
    return { contributions, routes, aggregator, ahead };
  }

  it('hands a group the routes and contributions of its rows, read while it waited', async () => {
    const ids = [1, 2, 3];
    const loads: Array<[number, number]> = [];
    const { routes, ahead } = await committedRows(ids, (u, m) => loads.push([u, m]));
    const p = pending(ids);
    ahead.offer(p);
    await ahead.taking([p]);
    // Gone from Postgres now: what the group gets can only come from what was read ahead.
    await db.pool.query('DELETE FROM cellar.contributor_routes WHERE supplier_id = $1', [supplier.id]);
    await db.pool.query('DELETE FROM cellar.stock_contributions WHERE supplier_id = $1', [supplier.id]);
    expect([...(await routes.get(ids.map(idOf))).values()].map((r) => r.region)).toEqual(['eu', 'eu', 'eu']);
    const keys = ids.map((i) => ({ region: 'eu', sku: `s${i}`, contributors: [idOf(i)] }));
    const got = ahead.take(keys);
    expect(got.rest).toEqual([]);
    expect(got.rows.map((c) => c.bottles)).toEqual([12, 12, 12]);
    expect(loads).toEqual([[3, 0]]);
  });

  it('does not hand out contributions read before an eviction: the key may have changed and been committed since', async () => {
    const { contributions, aggregator, ahead } = await committedRows([7]);
    const later = pending([7]);
    ahead.offer(later); // read ahead: 12 bottles
    await ahead.idle();
    // A group before `later` loads the key, changes it to 30, commits; the next group evicts it.
    const key = { region: 'eu', sku: 's7', contributors: [idOf(7)] };
    aggregator.adopt([key], (await contributions.loadKeys(-1, [key])).rows);
    await contributions.save([contribution(7, 30, 20)], -1);
    expect(aggregator.evict(0)).toBe(1);
    // `later` needs the key again: it must read 30 from Postgres, not take the 12 read ahead.
    await ahead.taking([later]);
    expect(ahead.take([key])).toEqual({ rows: [], partial: [], rest: [key] });
  });

  it('does not hold a group up behind a read ahead that hangs, and what that read brings later is current', async () => {
    const { contributions, aggregator, ahead } = await committedRows([40]);
    // The routes table locked by another session: the read ahead's query waits, as on a connection gone silent.
    const locker = await db.pool.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE cellar.contributor_routes IN ACCESS EXCLUSIVE MODE');
    let readDone = false;
    const p = pending([40]);
    ahead.offer(p);
    void ahead.idle().then(() => (readDone = true));
    try {
      await ahead.taking([p]);
      expect(readDone, 'the group waited for the read ahead until it was unblocked').toBe(false);
      // Meanwhile the group loads the key itself, changes it to 30, commits and a later group evicts it.
      const key = { region: 'eu', sku: 's40', contributors: [idOf(40)] };
      aggregator.adopt([key], (await contributions.loadKeys(-1, [key])).rows);
      await contributions.save([contribution(40, 30, 20)], -1);
      expect(aggregator.evict(0)).toBe(1);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    await ahead.idle();
    // The read went on after the eviction: what it hands out is what Postgres has now.
    const got = ahead.take([{ region: 'eu', sku: 's40', contributors: [idOf(40)] }]);
    expect([...got.rows.map((c) => c.bottles), ...got.rest.map(() => 'read by the group')]).toEqual([30]);
  });

  it('reads ahead the contributors a held wide key has not loaded, and hands out none read before an eviction', async () => {
    const ids = [50, 51, 52, 53, 54, 55];
    const wide = (id: number) => ({ ...route(id, 'eu', 10), sku: 'wide' });
    const { contributions, routes, aggregator, ahead } = await committedRows([]);
    await new RouteStore(db.pool).save(ids.map(wide));
    await contributions.save(ids.map((id) => ({ ...contribution(id, 12, 10), sku: 'wide' })), -1);
    routes.lastMissAt = Date.now();
    // Held from its summary (more than 2 rows) with only 50 and the key's first row.
    const key = { region: 'eu', sku: 'wide', contributors: [idOf(50)] };
    const loaded = await contributions.loadKeys(-1, [key], 2);
    expect(loaded.partial.map((p) => [p.bottles, p.entries])).toEqual([[72, 6]]);
    aggregator.adopt([key], loaded.rows, loaded.partial);
    expect(aggregator.get('eu', 'wide')?.bottles).toBe(72);

    const p = pending([51, 52]);
    ahead.offer(p);
    await ahead.taking([p]);
    await db.pool.query("DELETE FROM cellar.stock_contributions WHERE supplier_id = $1 AND sku = 'wide'", [supplier.id]);
    const want = (list: number[]) => [{ region: 'eu', sku: 'wide', contributors: list.map(idOf) }];
    const got = ahead.takeEntries(want([51, 52, 99]));
    expect(got.rows.map((c) => [c.contributorId, c.bottles])).toEqual([[idOf(51), 12], [idOf(52), 12]]);
    expect(got.rest).toEqual(want([99]));
    // Handed out once: the aggregator holds them from now on.
    expect(ahead.takeEntries(want([51])).rest).toEqual(want([51]));

    // Read ahead, then the key is evicted (and may change and be committed once loaded again): not handed out.
    await contributions.save([{ ...contribution(53, 12, 10), sku: 'wide' }], -1);
    const later = pending([53]);
    ahead.offer(later);
    await ahead.idle();
    aggregator.drain(0);
    expect(aggregator.evict(0)).toBe(1);
    expect(ahead.takeEntries(want([53])).rest).toEqual(want([53]));
  });

  it('keeps a route remembered while Postgres was read, and fills nothing after the cache started over meanwhile', async () => {
    await new RouteStore(db.pool).save([route(20, 'eu', 10), route(21, 'eu', 10)]);
    const cache = new CachedRouteStore(db.pool, 4);
    // Group N moves 20 to us while the read ahead of 20 is in flight: the remembered move wins.
    const read = cache.prefetch([idOf(20)]);
    cache.remember([route(20, 'us', 15)]);
    expect((await read).get(idOf(20))?.region).toBe('us');
    expect((await cache.get([idOf(20)])).get(idOf(20))?.region).toBe('us');

    // Read ahead of 21 (Postgres: eu); meanwhile group N+1 moves 21 to us, and three more groups push it
    // out of the groups kept when the cache starts over (its commit has landed by then).
    const stale = cache.prefetch([idOf(21)]);
    cache.remember([route(21, 'us', 16)]);
    for (const id of [30, 31, 32]) cache.remember([route(id, 'eu', 1)]);
    await stale;
    await new RouteStore(db.pool).save([route(21, 'us', 16)]); // group N+1's commit
    expect((await cache.get([idOf(21)])).get(idOf(21))?.region, 'the route read ahead before the start-over').toBe('us');
  });
});
