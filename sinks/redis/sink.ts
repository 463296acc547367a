import { Redis } from 'ioredis';
import { fromRedisError } from '../../pipelines/core/errors.js';
import type { RegionalStock } from '../../schemas/records.js';
import { latestPerKey, type SinkResult, type StockSink } from '../types.js';
import { parseRedisSinkConfig, redisKeys, type RedisSinkConfig } from './config.js';

/**
 * Applies one region's updates atomically. A SKU's bottles change only when the incoming version is
 * higher than the one stored beside it, so replays never go backwards. Publishes one notification per
 * region and batch with the applied changes.
 * KEYS: stock, versions, meta. ARGV: channel, updatedTsMs, region, then (sku, bottles, version)*.
 */
const APPLY = `
local changes = {}
for i = 4, #ARGV, 3 do
  local sku = ARGV[i]
  local v = tonumber(ARGV[i + 2])
  local cur = redis.call('HGET', KEYS[2], sku)
  if (not cur) or tonumber(cur) < v then
    redis.call('HSET', KEYS[1], sku, ARGV[i + 1])
    redis.call('HSET', KEYS[2], sku, ARGV[i + 2])
    changes[#changes + 1] = { sku = sku, bottles = tonumber(ARGV[i + 1]), version = v }
  end
end
if #changes > 0 then
  redis.call('HINCRBY', KEYS[3], 'version', #changes)
  redis.call('HSET', KEYS[3], 'updatedTsMs', ARGV[2])
  redis.call('PUBLISH', ARGV[1], cjson.encode({ region = ARGV[3], updatedTsMs = tonumber(ARGV[2]), changes = changes }))
end
return #changes`;

type WithApply = Redis & { cellarApply(k1: string, k2: string, k3: string, ...argv: string[]): Promise<number> };

/**
 * Keeps `cellar:stock:<region>` hashes (sku → bottles) current, with a version guard per SKU in
 * `cellar:stock:<region>:versions`, region metadata in `…:meta`, and change notifications on
 * `cellar:stock-updates`. One pipelined round trip per batch (one script call per region).
 */
export class RedisSnapshotSink implements StockSink {
  private redis: WithApply | undefined;
  private readonly cfg: RedisSinkConfig;

  constructor(config: unknown) {
    this.cfg = parseRedisSinkConfig(config);
  }

  get channel(): string {
    return this.cfg.channel ?? `${this.cfg.keyPrefix}:stock-updates`;
  }

  async connect(): Promise<void> {
    if (!this.redis) {
      const r = new Redis(this.cfg.url, {
        lazyConnect: true,
        maxRetriesPerRequest: 1,
        commandTimeout: this.cfg.commandTimeoutMs,
        retryStrategy: (n) => Math.min(200 * n, 2_000),
      });
      r.on('error', () => undefined); // surfaced per command as retriable errors
      r.defineCommand('cellarApply', { numberOfKeys: 3, lua: APPLY });
      this.redis = r as WithApply;
    }
    try {
      if (this.redis.status === 'wait') await this.redis.connect();
      await this.redis.ping();
    } catch (err) {
      throw fromRedisError(err, 'connecting Redis sink');
    }
  }

  async writeBatch(records: RegionalStock[]): Promise<SinkResult> {
    const r = this.redis;
    if (!r) throw new Error('RedisSnapshotSink: connect() first');
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
      const argv = [this.channel, now, region];
      for (const rec of list) argv.push(rec.sku, String(rec.bottles), String(rec.version));
      (pipe as unknown as WithApply).cellarApply(k.stock, k.versions, k.meta, ...argv);
    }
    let results: Array<[Error | null, unknown]> | null;
    try {
      results = await pipe.exec();
    } catch (err) {
      throw fromRedisError(err, 'writing Redis snapshot');
    }
    let applied = 0;
    for (const [err, n] of results ?? []) {
      if (err) throw fromRedisError(err, 'writing Redis snapshot');
      applied += Number(n);
    }
    return { applied, skipped: records.length - applied };
  }

  async read(region: string, sku: string): Promise<{ bottles: number; version: number } | undefined> {
    const r = this.redis;
    if (!r) throw new Error('RedisSnapshotSink: connect() first');
    const k = redisKeys(this.cfg.keyPrefix, region);
    try {
      const [b, v] = await Promise.all([r.hget(k.stock, sku), r.hget(k.versions, sku)]);
      return b === null || v === null ? undefined : { bottles: Number(b), version: Number(v) };
    } catch (err) {
      throw fromRedisError(err, 'reading Redis snapshot');
    }
  }

  async close(): Promise<void> {
    const r = this.redis;
    this.redis = undefined;
    if (r) await r.quit().catch(() => r.disconnect());
  }
}

/** Creates the Redis snapshot sink. */
export function createRedisSnapshotSink(config: { url: string; keyPrefix?: string; channel?: string }): RedisSnapshotSink {
  return new RedisSnapshotSink(config);
}
