import { redactUrl } from '../../pipelines/core/logger.js';
import { createRedis } from '../../pipelines/core/redis.js';
import { Redis } from 'ioredis';
import { fromRedisError } from '../../pipelines/core/errors.js';
import type { RegionalStock } from '../../schemas/records.js';
import { latestPerKey, type SinkResult, type StockSink, type StoredStock } from '../types.js';
import { parseRedisSinkConfig, redisKeys, type RedisSinkConfig } from './config.js';

/**
 * Applies one region's updates atomically. A SKU's bottles and bottle size change only when the incoming
 * version is higher than the one stored beside it, so replays never go backwards. Publishes one notification
 * per region and batch with the applied changes. With a TTL the four region keys expire together and every
 * call sets it again; with 0 any expiry is removed, so turning the TTL off never lets a live region lapse.
 * The same notification is appended to the change stream (see {@link STOCK_EVENTS_MAXLEN}), whose entry ids
 * let readers resume where they left off.
 * KEYS: stock, versions, meta, sizes, epoch marker, change stream. ARGV: channel, updatedTsMs, region, ttlSeconds, epoch, the
 * rows as one JSON array of [sku, bottles, version, size?] strings (size left out when unknown), and the stream's length
 * bound (one argument: cheap to send, decoded in C; versions are read with HMGET and written with bulk HSET, a few calls
 * per 500 rows instead of three per row). Returns -1 without writing when the marker does not hold this sink's epoch:
 * Redis lost its data (or another instance found that it had) since this sink last wrote.
 */
const APPLY = `
if redis.call('GET', KEYS[5]) ~= ARGV[5] then return -1 end
local rows = cjson.decode(ARGV[6])
local n = #rows
local stock, versions, sizes, unsized, changes = {}, {}, {}, {}, {}
for i = 1, n, 500 do
  local last = math.min(i + 499, n)
  local skus = {}
  for j = i, last do skus[#skus + 1] = rows[j][1] end
  local cur = redis.call('HMGET', KEYS[2], unpack(skus))
  for j = i, last do
    local r = rows[j]
    local c = cur[j - i + 1]
    if (not c) or tonumber(c) < tonumber(r[3]) then
      stock[#stock + 1] = r[1]
      stock[#stock + 1] = r[2]
      versions[#versions + 1] = r[1]
      versions[#versions + 1] = r[3]
      local change = { sku = r[1], bottles = tonumber(r[2]), version = tonumber(r[3]) }
      if r[4] then
        sizes[#sizes + 1] = r[1]
        sizes[#sizes + 1] = r[4]
        change.bottleSizeMl = tonumber(r[4])
      else
        unsized[#unsized + 1] = r[1]
      end
      changes[#changes + 1] = change
    end
  end
end
for i = 1, #stock, 1000 do
  redis.call('HSET', KEYS[1], unpack(stock, i, math.min(i + 999, #stock)))
  redis.call('HSET', KEYS[2], unpack(versions, i, math.min(i + 999, #versions)))
end
for i = 1, #sizes, 1000 do redis.call('HSET', KEYS[4], unpack(sizes, i, math.min(i + 999, #sizes))) end
for i = 1, #unsized, 1000 do redis.call('HDEL', KEYS[4], unpack(unsized, i, math.min(i + 999, #unsized))) end
if #changes > 0 then
  redis.call('HINCRBY', KEYS[3], 'version', #changes)
  redis.call('HSET', KEYS[3], 'updatedTsMs', ARGV[2])
  local payload = cjson.encode({ region = ARGV[3], updatedTsMs = tonumber(ARGV[2]), changes = changes })
  redis.call('PUBLISH', ARGV[1], payload)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[7], '*', 'data', payload)
end
local ttl = tonumber(ARGV[4])
for k = 1, 4 do
  if ttl > 0 then redis.call('EXPIRE', KEYS[k], ttl) else redis.call('PERSIST', KEYS[k]) end
end
return #changes`;

/**
 * Entries kept in the change stream `<prefix>:stock-events` (trimmed approximately, so at least this many):
 * one entry per region and applied batch, holding the notification published on the channel. This is the
 * window in which a reader (the read API's server-sent events) can resume from an entry id.
 */
export const STOCK_EVENTS_MAXLEN = 10_000;

/** The change stream of a key prefix: one entry per region and applied batch (see {@link STOCK_EVENTS_MAXLEN}). */
export function stockEventsKey(keyPrefix = 'cellar'): string {
  return `${keyPrefix}:stock-events`;
}

type WithApply = Redis & { cellarApply(k1: string, k2: string, k3: string, k4: string, k5: string, k6: string, ...argv: string[]): Promise<number> };

/**
 * Keeps `cellar:stock:<region>` hashes (sku → bottles) current, with a version guard per SKU in
 * `cellar:stock:<region>:versions`, bottle sizes in `…:sizes`, region metadata in `…:meta`, and change notifications on
 * `cellar:stock-updates` and in the stream `cellar:stock-events`. One pipelined round trip per batch (one script call per region).
 */
export class RedisSnapshotSink implements StockSink {
  private redis: WithApply | undefined;
  /** The snapshot epoch this sink writes under (see {@link RedisSnapshotSink.adoptEpoch}). */
  private epoch = '';
  /** Set when connect() found no epoch: Redis is empty or new, so the input must be replayed once. */
  private resetPending = false;

  private get epochKey(): string {
    return `${this.cfg.keyPrefix}:snapshot:epoch`;
  }

  /**
   * Reads the snapshot epoch, creating one when Redis has none (a new or emptied Redis: then the next
   * batch reports `reset` so the worker replays its input from the beginning). Instances share the epoch;
   * the first one to find it missing creates it, the others notice the change on their next write.
   */
  private async adoptEpoch(): Promise<void> {
    const r = this.redis!;
    try {
      let e = await r.get(this.epochKey);
      if (e === null) {
        await r.set(this.epochKey, `${Date.now()}-${Math.random().toString(36).slice(2, 10)}`, 'NX');
        e = await r.get(this.epochKey);
        this.resetPending = true;
      }
      this.epoch = e ?? '';
    } catch (err) {
      throw fromRedisError(err, 'reading the Redis snapshot epoch');
    }
  }
  private readonly cfg: RedisSinkConfig;

  constructor(config: unknown) {
    this.cfg = parseRedisSinkConfig(config);
  }

  get channel(): string {
    return this.cfg.channel ?? `${this.cfg.keyPrefix}:stock-updates`;
  }

  async connect(): Promise<void> {
    if (!this.redis) {
      const r = createRedis(this.cfg.url, {
        lazyConnect: true,
        maxRetriesPerRequest: 1,
        // Fail at once while disconnected: the worker retries with backoff and reports unready meanwhile.
        enableOfflineQueue: false,
        commandTimeout: this.cfg.commandTimeoutMs,
        retryStrategy: (n) => Math.min(200 * n, 2_000),
      });
      r.on('error', () => undefined); // surfaced per command as retriable errors
      r.defineCommand('cellarApply', { numberOfKeys: 6, lua: APPLY });
      this.redis = r as WithApply;
    }
    try {
      if (this.redis.status === 'wait') await this.redis.connect();
      await this.adoptEpoch();
      await this.redis.ping();
    } catch (err) {
      throw fromRedisError(err, `connecting to Redis at ${redactUrl(this.cfg.url)}`);
    }
  }

  async writeBatch(records: RegionalStock[]): Promise<SinkResult> {
    const r = this.redis;
    if (!r) throw new Error('RedisSnapshotSink: connect() first');
    if (this.resetPending) {
      this.resetPending = false;
      return { applied: 0, skipped: 0, reset: true };
    }
    if (records.length === 0) return { applied: 0, skipped: 0 };
    const byRegion = new Map<string, RegionalStock[]>();
    for (const rec of latestPerKey(records)) {
      const list = byRegion.get(rec.region);
      if (list) list.push(rec);
      else byRegion.set(rec.region, [rec]);
    }
    const now = String(Date.now());
    const pipe = r.pipeline();
    for (const [region, list] of byRegion) {
      const k = redisKeys(this.cfg.keyPrefix, region);
      const rows = JSON.stringify(
        list.map((rec) => {
          const row = [rec.sku, String(rec.bottles), String(rec.version)];
          if (rec.bottleSizeMl !== null && rec.bottleSizeMl !== undefined) row.push(String(rec.bottleSizeMl));
          return row;
        }),
      );
      const argv = [this.channel, now, region, String(this.cfg.ttlSeconds), this.epoch, rows, String(STOCK_EVENTS_MAXLEN)];
      (pipe as unknown as WithApply).cellarApply(k.stock, k.versions, k.meta, k.sizes, this.epochKey, stockEventsKey(this.cfg.keyPrefix), ...argv);
    }
    let results: Array<[Error | null, unknown]> | null;
    try {
      results = await pipe.exec();
    } catch (err) {
      throw fromRedisError(err, 'writing Redis snapshot');
    }
    let applied = 0;
    if ((results ?? []).some(([err, n]) => !err && Number(n) === -1)) {
      await this.adoptEpoch();
      this.resetPending = false; // this answer is the reset
      return { applied: 0, skipped: 0, reset: true };
    }
    for (const [err, n] of results ?? []) {
      if (err) throw fromRedisError(err, 'writing Redis snapshot');
      applied += Number(n);
    }
    return { applied, skipped: records.length - applied };
  }

  async lostData(): Promise<boolean> {
    const r = this.redis;
    if (!r) throw new Error('RedisSnapshotSink: connect() first');
    let marker: string | null;
    try {
      marker = await r.get(this.epochKey);
    } catch (err) {
      throw fromRedisError(err, 'reading the Redis snapshot epoch');
    }
    if (marker === this.epoch && !this.resetPending) return false;
    // A new epoch (created now, or by another instance that found the loss first): writes go on under it.
    await this.adoptEpoch();
    this.resetPending = false; // this answer is the reset
    return true;
  }

  async read(region: string, sku: string): Promise<StoredStock | undefined> {
    const r = this.redis;
    if (!r) throw new Error('RedisSnapshotSink: connect() first');
    const k = redisKeys(this.cfg.keyPrefix, region);
    try {
      const [b, v, ml] = await Promise.all([r.hget(k.stock, sku), r.hget(k.versions, sku), r.hget(k.sizes, sku)]);
      return b === null || v === null ? undefined : { bottles: Number(b), version: Number(v), bottleSizeMl: ml === null ? null : Number(ml) };
    } catch (err) {
      throw fromRedisError(err, 'reading Redis snapshot');
    }
  }

  isHealthy(): boolean {
    return this.redis?.status === 'ready';
  }

  async close(): Promise<void> {
    const r = this.redis;
    this.redis = undefined;
    if (r) await r.quit().catch(() => r.disconnect());
  }
}

/** Creates the Redis snapshot sink. */
export function createRedisSnapshotSink(config: { url: string; keyPrefix?: string; channel?: string; ttlSeconds?: number }): RedisSnapshotSink {
  return new RedisSnapshotSink(config);
}
