import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { Route } from '../../pipelines/normalize/normalize.js';
import { CachedRouteStore, RouteStore } from '../../pipelines/state/routes.js';
import { freshDatabase, rid } from '../support/services.js';

/**
 * The embedded runtime's route cache against a real Postgres, at its bound: a group's routes are remembered
 * when it is prepared and saved by its commit, which runs while the next group is prepared.
 */
describe('route cache at its bound', () => {
  let db: { url: string; pool: pg.Pool };
  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  const sup = rid('rc');
  const route = (id: string, region: string, version: number): Route => ({
    contributorId: `${sup}/public.stock/id=${id}`, supplierId: sup, sourceTable: 'public.stock', region, sku: 'a', supplierSku: 'A',
    warehouseId: `w-${region}`, vintage: null, bottleSizeMl: 750, sourceVersion: String(version).padStart(20, '0'), deleted: false,
  });

  it('keeps the routes of a group not yet committed when it starts over, so a move is not undone by Postgres', async () => {
    await new RouteStore(db.pool).save([route('r', 'eu', 3)]); // committed: r in eu
    const cache = new CachedRouteStore(db.pool, 4);
    expect((await cache.get([route('r', 'eu', 3).contributorId])).get(route('r', 'eu', 3).contributorId)?.region).toBe('eu');
    // Group N moves r to us; its commit (which saves the route) is still in flight.
    cache.remember([route('r', 'us', 5)]);
    // Group N+1 reads contributors the cache has not seen: the cache is full and starts over.
    await cache.get(['x1', 'x2', 'x3', 'x4'].map((x) => route(x, 'eu', 1).contributorId));
    // A later read of r (say, its delete) must see where group N put it, not where Postgres still has it.
    const r = (await cache.get([route('r', 'us', 5).contributorId])).get(route('r', 'us', 5).contributorId);
    expect(r?.region, 'the moved row\'s route after the cache started over').toBe('us');
    expect(r?.sourceVersion).toBe(route('r', 'us', 5).sourceVersion);
  });

  it('a group\'s routes stay as remembered while later groups move the same rows', async () => {
    // Group N's routes are written by its commit while group N+1 is prepared and remembered.
    const cache = new CachedRouteStore(db.pool, 100);
    const groupN = [route('m', 'eu', 3)];
    const asRemembered = structuredClone(groupN);
    cache.remember(groupN);
    const id = groupN[0]!.contributorId;
    cache.remember([{ ...route('m', 'us', 4), sku: 'b', deleted: true }]);
    expect(groupN).toEqual(asRemembered);
    expect((await cache.get([id])).get(id)).toMatchObject({ region: 'us', sku: 'b', deleted: true, sourceVersion: route('m', 'us', 4).sourceVersion });
    // An older route remembered late changes nothing.
    cache.remember([route('m', 'ap', 2)]);
    expect((await cache.get([id])).get(id)).toMatchObject({ region: 'us', sourceVersion: route('m', 'us', 4).sourceVersion });
  });
});
