import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Redis } from 'ioredis';
import { ConfigError, fromRedisError } from '../../pipelines/core/errors.js';
import { query } from '../../pipelines/core/pg.js';
import { redisKeys, scanRegions } from './config.js';

/** Options of {@link rebuildRedisFromPostgres}. */
export interface RebuildRedisOptions {
  /** Cellar's Postgres, the source of truth (`cellar.regional_stock`). */
  pool: pg.Pool;
  /** The Redis holding the snapshots. Left open. */
  redis: Redis;
  /** Key prefix of the snapshots, as configured on the sink. Default `cellar`. */
  keyPrefix?: string;
  /** Rows per Postgres read and per pipelined Redis write. Default 5000. */
  chunkSize?: number;
  /**
   * Also delete regions found in Redis under the prefix that Postgres does not have. Default true (what
   * `cellar snapshot rebuild-redis` asks for); the embedded runtime's own rebuilds pass false: a region
   * this database never counted may belong to another deployment sharing the Redis and prefix.
   */
  removeUnknownRegions?: boolean;
}

/** What {@link rebuildRedisFromPostgres} did. */
export interface RebuildRedisResult {
  /** Regions rebuilt from Postgres. */
  regions: number;
  /** Rows read from Postgres across those regions. */
  skus: number;
  /** Regions found only in Redis, deleted. */
  removedRegions: number;
}

/** Temporary hashes expire on their own if a rebuild dies before its swap. */
const TEMP_TTL_SECONDS = 3_600;

/**
 * Swaps one region's rebuilt hashes in. Live SKUs with a higher version than the rebuilt one (or
 * missing from it) were written by the live sink meanwhile and are carried over, with their bottle size
 * when the live sizes hash has one, so the swap never moves a SKU backwards. The live keys' expiry, if
 * any, is kept. Non-hash or non-numeric leftovers in the live keys count as corruption and are replaced.
 * KEYS: stock, versions, meta, sizes, rebuilt stock, rebuilt versions, rebuilt sizes. ARGV: rebuiltTsMs.
 */
const SWAP = `
local function isHash(key) return redis.call('TYPE', key).ok == 'hash' end
if isHash(KEYS[1]) and isHash(KEYS[2]) then
  local sized = isHash(KEYS[4])
  local live = redis.call('HGETALL', KEYS[2])
  for i = 1, #live, 2 do
    local sku, lv = live[i], tonumber(live[i + 1])
    local rv = redis.call('HGET', KEYS[6], sku)
    local bottles = redis.call('HGET', KEYS[1], sku)
    if lv and bottles and tonumber(bottles) and ((not rv) or tonumber(rv) < lv) then
      redis.call('HSET', KEYS[5], sku, bottles)
      redis.call('HSET', KEYS[6], sku, live[i + 1])
      local size = sized and redis.call('HGET', KEYS[4], sku)
      if size and tonumber(size) then redis.call('HSET', KEYS[7], sku, size) end
    end
  end
end
local ttl = -1
for k = 1, 4 do
  local t = redis.call('PTTL', KEYS[k])
  if t > ttl then ttl = t end
end
for _, pair in ipairs({ { 1, 5 }, { 2, 6 }, { 4, 7 } }) do
  local key, rebuilt = KEYS[pair[1]], KEYS[pair[2]]
  if redis.call('EXISTS', rebuilt) == 1 then
    redis.call('RENAME', rebuilt, key)
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
  else
    redis.call('DEL', key)
  end
end
if not isHash(KEYS[3]) then redis.call('DEL', KEYS[3]) end
local mv = redis.call('HGET', KEYS[3], 'version')
if mv and not string.match(mv, '^%-?%d+$') then redis.call('HSET', KEYS[3], 'version', '0') end
redis.call('HINCRBY', KEYS[3], 'version', 1)
redis.call('HSET', KEYS[3], 'rebuiltTsMs', ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
return 1`;

/**
 * Deletes a stale region unless the live sink wrote to it since its meta version was read.
 * KEYS: stock, versions, meta, sizes. ARGV: meta version as read ('' when absent).
 */
const DROP_STALE = `
if (redis.call('HGET', KEYS[3], 'version') or '') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) > 0 and 1 or 0`;

async function redisCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromRedisError(err, what);
  }
}

async function rebuildRegion(o: Required<RebuildRedisOptions>, region: string, token: string): Promise<number> {
  const k = redisKeys(o.keyPrefix, region);
  const tmp = { stock: `${k.stock}:rebuild:${token}`, versions: `${k.versions}:rebuild:${token}`, sizes: `${k.sizes}:rebuild:${token}` };
  let after: string | undefined;
  let rows = 0;
  try {
    for (;;) {
      const { rows: chunk } = await query<{ sku: string; bottles: string; version: string; bottle_size_ml: number | null }>(
        o.pool,
        `reading regional stock of ${region}`,
        `SELECT sku, bottles, version, bottle_size_ml FROM cellar.regional_stock
          WHERE region = $1 ${after === undefined ? '' : 'AND sku > $3'} ORDER BY sku LIMIT $2`,
        after === undefined ? [region, o.chunkSize] : [region, o.chunkSize, after],
      );
      if (chunk.length === 0) break;
      const stock: string[] = [];
      const versions: string[] = [];
      const sizes: string[] = [];
      for (const r of chunk) {
        stock.push(r.sku, String(r.bottles));
        versions.push(r.sku, String(r.version));
        if (r.bottle_size_ml !== null) sizes.push(r.sku, String(r.bottle_size_ml));
      }
      const pipe = o.redis
        .pipeline()
        .hset(tmp.stock, ...stock)
        .hset(tmp.versions, ...versions)
        .expire(tmp.stock, TEMP_TTL_SECONDS)
        .expire(tmp.versions, TEMP_TTL_SECONDS);
      if (sizes.length) pipe.hset(tmp.sizes, ...sizes).expire(tmp.sizes, TEMP_TTL_SECONDS);
      const results = await redisCall(`writing rebuilt snapshot of ${region}`, () => pipe.exec());
      for (const [err] of results ?? []) if (err) throw fromRedisError(err, `writing rebuilt snapshot of ${region}`);
      rows += chunk.length;
      after = chunk[chunk.length - 1]!.sku;
      if (chunk.length < o.chunkSize) break;
    }
    await redisCall(`swapping in rebuilt snapshot of ${region}`, () =>
      o.redis.eval(SWAP, 7, k.stock, k.versions, k.meta, k.sizes, tmp.stock, tmp.versions, tmp.sizes, String(Date.now())),
    );
    return rows;
  } catch (err) {
    await o.redis.del(tmp.stock, tmp.versions, tmp.sizes).catch(() => undefined);
    throw err;
  }
}

/** Regions with a stock hash in Redis that Postgres does not have (checked again just before deleting). */
async function removeStaleRegions(o: Required<RebuildRedisOptions>, known: string[]): Promise<number> {
  const knownSet = new Set(known);
  // A region named like another region's versions/meta key must not take that key down with it.
  const liveKeys = new Set(known.flatMap((r) => Object.values(redisKeys(o.keyPrefix, r))));
  const candidates = new Set<string>();
  for (const region of await redisCall('scanning Redis snapshots', () => scanRegions(o.redis, o.keyPrefix))) {
    if (!knownSet.has(region) && !Object.values(redisKeys(o.keyPrefix, region)).some((x) => liveKeys.has(x))) candidates.add(region);
  }
  if (candidates.size === 0) return 0;
  const regions = [...candidates];
  const metaVersions = await redisCall('reading stale snapshot metadata', () =>
    Promise.all(regions.map((r) => o.redis.hget(redisKeys(o.keyPrefix, r).meta, 'version'))),
  );
  const { rows } = await query<{ region: string }>(
    o.pool,
    'checking stale regions',
    'SELECT DISTINCT region FROM cellar.regional_stock WHERE region = ANY($1::text[])',
    [regions],
  );
  const arrived = new Set(rows.map((r) => r.region));
  let removed = 0;
  for (const [i, region] of regions.entries()) {
    if (arrived.has(region)) continue;
    const k = redisKeys(o.keyPrefix, region);
    const n = await redisCall(`deleting stale snapshot of ${region}`, () =>
      o.redis.eval(DROP_STALE, 4, k.stock, k.versions, k.meta, k.sizes, metaVersions[i] ?? ''),
    );
    removed += Number(n);
  }
  return removed;
}

/**
 * Rebuilds every region's Redis snapshot (bottles, versions, bottle sizes) from `cellar.regional_stock`
 * while the live sink keeps writing: each region is read in SKU order into temporary hashes, then swapped
 * in by one script that keeps whatever the live sink wrote with a higher version meanwhile, and bumps the
 * region's meta `version` (setting `rebuiltTsMs`). Regions found only in Redis are deleted afterwards.
 * Subscribers of the change channel are not notified; the meta version tells readers to reload.
 */
export async function rebuildRedisFromPostgres(opts: RebuildRedisOptions): Promise<RebuildRedisResult> {
  const o: Required<RebuildRedisOptions> = { ...opts, keyPrefix: opts.keyPrefix ?? 'cellar', chunkSize: opts.chunkSize ?? 5_000, removeUnknownRegions: opts.removeUnknownRegions ?? true };
  if (!Number.isInteger(o.chunkSize) || o.chunkSize < 1) throw new ConfigError(`chunk size must be a positive integer, got ${opts.chunkSize}`);
  const { rows } = await query<{ region: string }>(o.pool, 'listing regions', 'SELECT DISTINCT region FROM cellar.regional_stock ORDER BY region');
  const regions = rows.map((r) => r.region);
  const token = randomBytes(6).toString('hex');
  let skus = 0;
  for (const region of regions) skus += await rebuildRegion(o, region, token);
  const removedRegions = o.removeUnknownRegions ? await removeStaleRegions(o, regions) : 0;
  return { regions: regions.length, skus, removedRegions };
}
