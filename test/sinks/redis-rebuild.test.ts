import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type pg from 'pg';
import type { RegionalStock } from '../../schemas/records.js';
import { readRegionalStock } from '../../sinks/postgres/read.js';
import { redisKeys } from '../../sinks/redis/config.js';
import { rebuildRedisFromPostgres } from '../../sinks/redis/rebuild.js';
import { createRedisSnapshotSink, type RedisSnapshotSink } from '../../sinks/redis/sink.js';
import { freshDatabase, rid, services } from '../support/services.js';

type Row = [region: string, sku: string, bottles: number, version: number, bottleSizeMl?: number | null];

const rec = ([region, sku, bottles, version, bottleSizeMl = 750]: Row): RegionalStock => ({ region, sku, bottleSizeMl, bottles, contributors: 1, version, sourceTsMs: 1, updatedTsMs: 2 });

// Every test uses its own key prefix: a rebuild deletes regions it does not find in its Postgres,
// which would include the regions of test files running at the same time under `cellar`.
describe('rebuildRedisFromPostgres', () => {
  let pool: pg.Pool;
  let redis: Redis;
  let prefix: string;
  const sinks: RedisSnapshotSink[] = [];

  const sink = async (ttlSeconds = 0) => {
    const s = createRedisSnapshotSink({ url: services().redisUrl, keyPrefix: prefix, ttlSeconds });
    sinks.push(s);
    await s.connect();
    await s.writeBatch([]); // a new prefix reports reset once
    return s;
  };
  const insert = async (rows: Row[]) => {
    for (const [region, sku, bottles, version, bottleSizeMl = 750] of rows) {
      await pool.query(
        `INSERT INTO cellar.regional_stock (region, sku, bottles, contributors, version, source_ts, updated_at, bottle_size_ml)
         VALUES ($1, $2, $3, 1, $4, now(), now(), $5)`,
        [region, sku, bottles, version, bottleSizeMl],
      );
    }
  };
  const keys = (region: string) => redisKeys(prefix, region);
  const fromPostgres = async (region: string) => {
    const rows = await readRegionalStock(pool, region);
    return {
      stock: Object.fromEntries(rows.map((r) => [r.sku, String(r.bottles)])),
      versions: Object.fromEntries(rows.map((r) => [r.sku, String(r.version)])),
      sizes: Object.fromEntries(rows.filter((r) => r.bottleSizeMl !== null).map((r) => [r.sku, String(r.bottleSizeMl)])),
    };
  };

  beforeEach(async () => {
    ({ pool } = await freshDatabase());
    redis = new Redis(services().redisUrl);
    prefix = rid('cellar');
  });
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.close();
    redis.disconnect();
    await pool.end();
  });

  it('restores deleted and corrupted keys, bottle sizes included, from Postgres, in chunks', async () => {
    const [a, b] = [rid('r'), rid('r')];
    const rows: Row[] = [[a, 'a1', 10, 1, 375], [a, 'a2', 20, 2], [a, 'a3', 30, 3, 1500], [a, 'a4', 0, 4, null], [a, 'a5', 50, 5], [b, 'b1', 7, 1, 1500], [b, 'b2', 8, 9, 375]];
    await insert(rows);
    await (await sink()).writeBatch(rows.map(rec));
    await redis.hset(keys(a).stock, 'a2', 'garbage');
    await redis.hset(keys(a).versions, 'a5', 'nonsense');
    await redis.hdel(keys(a).sizes, 'a1');
    await redis.hset(keys(a).sizes, 'a3', '1', 'a4', '750');
    await redis.del(keys(b).stock);
    await redis.del(keys(b).sizes);
    await redis.set(keys(b).versions, 'not a hash');

    expect(await rebuildRedisFromPostgres({ pool, redis, keyPrefix: prefix, chunkSize: 2 })).toEqual({ regions: 2, skus: 7, removedRegions: 0 });

    for (const region of [a, b]) {
      const pgState = await fromPostgres(region);
      expect(await redis.hgetall(keys(region).stock)).toEqual(pgState.stock);
      expect(await redis.hgetall(keys(region).versions)).toEqual(pgState.versions);
      expect(await redis.hgetall(keys(region).sizes)).toEqual(pgState.sizes);
    }
    expect(await redis.hgetall(keys(a).sizes)).toEqual({ a1: '375', a2: '750', a3: '1500', a5: '750' });
    expect(await redis.hget(keys(a).meta, 'version')).toBe('6'); // 5 applied changes + the rebuild
    expect(Number(await redis.hget(keys(b).meta, 'rebuiltTsMs'))).toBeGreaterThan(Date.now() - 60_000);
    expect(await redis.keys(`${prefix}:*:rebuild:*`)).toEqual([]);
  });

  it('keeps what the live sink wrote with a higher version before or during the rebuild', async () => {
    const a = rid('r');
    await insert([[a, 'a1', 10, 1], [a, 'a2', 20, 3], [a, 'a3', 30, 1], [a, 'a4', 40, 1, 375]]);
    const live = await sink();
    await live.writeBatch([[a, 'a1', 99, 5], [a, 'a2', 7, 2], [a, 'new', 4, 1, 1500]].map((r) => rec(r as Row)));
    let wroteDuringRebuild = false;
    const racingPool = {
      query: async (text: string, values?: unknown[]) => {
        if (!wroteDuringRebuild && /sku > \$3/.test(text)) {
          wroteDuringRebuild = true;
          await live.writeBatch([rec([a, 'a3', 33, 2])]);
        }
        return pool.query(text, values);
      },
    } as unknown as pg.Pool;

    await rebuildRedisFromPostgres({ pool: racingPool, redis, keyPrefix: prefix, chunkSize: 2 });

    expect(wroteDuringRebuild).toBe(true);
    expect(await redis.hgetall(keys(a).stock)).toEqual({ a1: '99', a2: '20', a3: '33', a4: '40', new: '4' });
    expect(await redis.hgetall(keys(a).versions)).toEqual({ a1: '5', a2: '3', a3: '2', a4: '1', new: '1' });
    expect(await redis.hgetall(keys(a).sizes)).toEqual({ a1: '750', a2: '750', a3: '750', a4: '375', new: '1500' });
    // The guard still holds after the swap: an older write for a1 is refused.
    expect(await live.writeBatch([rec([a, 'a1', 1, 4])])).toEqual({ applied: 0, skipped: 1 });
    expect(await live.read(a, 'a1')).toEqual({ bottles: 99, version: 5, bottleSizeMl: 750 });
  });

  it('removes regions present only in Redis', async () => {
    const [kept, stale] = [rid('r'), rid('r')];
    await insert([[kept, 's1', 1, 1]]);
    await (await sink()).writeBatch([rec([kept, 's1', 1, 1]), rec([stale, 's1', 5, 1]), rec([stale, 's2', 6, 1])]);
    expect(await redis.exists(keys(stale).stock, keys(stale).versions, keys(stale).meta, keys(stale).sizes)).toBe(4);

    const result = await rebuildRedisFromPostgres({ pool, redis, keyPrefix: prefix });

    expect(result.removedRegions).toBeGreaterThanOrEqual(1);
    expect(await redis.exists(keys(stale).stock, keys(stale).versions, keys(stale).meta, keys(stale).sizes)).toBe(0);
    expect(await redis.hgetall(keys(kept).stock)).toEqual({ s1: '1' });
  });

  it('leaves regions it does not know alone when asked to (the embedded runtime\'s own rebuilds: another deployment may share the Redis)', async () => {
    const [kept, foreign] = [rid('r'), rid('r')];
    await insert([[kept, 's1', 1, 1]]);
    await (await sink()).writeBatch([rec([kept, 's1', 1, 1]), rec([foreign, 's1', 5, 1])]);
    const result = await rebuildRedisFromPostgres({ pool, redis, keyPrefix: prefix, removeUnknownRegions: false });
    expect(result.removedRegions).toBe(0);
    expect(await redis.hgetall(keys(foreign).stock)).toEqual({ s1: '5' });
    expect(await redis.hgetall(keys(kept).stock)).toEqual({ s1: '1' });
  });

  it('expires a region\'s four keys after ttlSeconds, refreshed by writes; 0 means no expiry', async () => {
    const [withTtl, without] = [rid('r'), rid('r')];
    await (await sink(100)).writeBatch([rec([withTtl, 's1', 1, 1])]);
    await (await sink(0)).writeBatch([rec([without, 's1', 1, 1])]);
    for (const key of Object.values(keys(withTtl))) {
      const ttl = await redis.ttl(key);
      expect(ttl, key).toBeGreaterThanOrEqual(1);
      expect(ttl, key).toBeLessThanOrEqual(100);
    }
    for (const key of Object.values(keys(without))) expect(await redis.ttl(key), key).toBe(-1);

    // A rebuild keeps the region's expiry; turning the TTL off removes it on the next write.
    await insert([[withTtl, 's1', 2, 2]]);
    await rebuildRedisFromPostgres({ pool, redis, keyPrefix: prefix });
    for (const key of Object.values(keys(withTtl))) expect(await redis.ttl(key), key).toBeGreaterThanOrEqual(1);
    expect(await redis.hget(keys(withTtl).stock, 's1')).toBe('2');
    await (await sink(0)).writeBatch([rec([withTtl, 's1', 3, 3])]);
    for (const key of Object.values(keys(withTtl))) expect(await redis.ttl(key), key).toBe(-1);
  });
});
