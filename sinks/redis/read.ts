import type { Redis } from 'ioredis';
import { fromRedisError } from '../../pipelines/core/errors.js';
import { redisKeys } from './config.js';

/** One region's snapshot from Redis: sku → bottles. */
export async function readRegionSnapshot(redis: Redis, region: string, keyPrefix = 'cellar'): Promise<Map<string, number>> {
  try {
    const h = await redis.hgetall(redisKeys(keyPrefix, region).stock);
    return new Map(Object.entries(h).map(([sku, b]) => [sku, Number(b)]));
  } catch (err) {
    throw fromRedisError(err, `reading Redis snapshot of ${region}`);
  }
}

/** One region's bottle sizes from Redis: sku → ml (SKUs whose size is unknown are absent). */
export async function readRegionSizes(redis: Redis, region: string, keyPrefix = 'cellar'): Promise<Map<string, number>> {
  try {
    const h = await redis.hgetall(redisKeys(keyPrefix, region).sizes);
    return new Map(Object.entries(h).map(([sku, ml]) => [sku, Number(ml)]));
  } catch (err) {
    throw fromRedisError(err, `reading Redis bottle sizes of ${region}`);
  }
}
