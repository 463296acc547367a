import type { Redis } from 'ioredis';
import { z } from 'zod';
import { parseSpec } from '../../pipelines/core/spec.js';

/** Redis snapshot sink settings. */
export const RedisSinkSpec = z.object({
  /** Redis URL, e.g. `redis://127.0.0.1:6379/0`. */
  url: z.string().min(1),
  /** Key prefix: hashes are `<prefix>:stock:<region>`. Default `cellar`. */
  keyPrefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('cellar'),
  /** Pub/sub channel for change notifications. Default `<keyPrefix>:stock-updates`. */
  channel: z.string().min(1).optional(),
  /** Per-command timeout in ms, so an unreachable Redis fails the batch (and it is retried). Default 5000. */
  commandTimeoutMs: z.number().int().min(100).default(5_000),
  /** Expiry of a region's four keys, refreshed by every write to the region. Default 0 (no expiry). */
  ttlSeconds: z
    .number()
    .int()
    .min(0)
    .default(0)
    .describe(
      'Seconds until a region\'s stock, versions, sizes and meta keys expire; every write to the region sets it again, so only regions without writes for this long disappear. 0 = no expiry (and removes an expiry left by an earlier setting). Default 0.',
    ),
});
export type RedisSinkConfig = z.output<typeof RedisSinkSpec>;

export function parseRedisSinkConfig(input: unknown): RedisSinkConfig {
  return parseSpec(RedisSinkSpec, input, 'redis sink');
}

/**
 * Regions with a stock hash under `prefix` (`<prefix>:stock:<region>`), sorted; the region's other hashes
 * and rebuild keys are not regions.
 */
export async function scanRegions(redis: Pick<Redis, 'scanStream'>, prefix: string): Promise<string[]> {
  const base = `${prefix}:stock:`;
  const found = new Set<string>();
  const stream = redis.scanStream({ match: `${base.replace(/[*?[\]\\]/g, '\\$&')}*`, count: 1_000 });
  for await (const keys of stream as AsyncIterable<string[]>) {
    for (const key of keys) {
      if (key.endsWith(':versions') || key.endsWith(':meta') || key.endsWith(':sizes') || key.includes(':rebuild:')) continue;
      found.add(key.slice(base.length));
    }
  }
  return [...found].sort();
}

/** Key names of one region's snapshot. */
export function redisKeys(prefix: string, region: string) {
  return {
    /** hash sku → bottles */
    stock: `${prefix}:stock:${region}`,
    /** hash sku → version (the guard) */
    versions: `${prefix}:stock:${region}:versions`,
    /** hash: version (applied changes), updatedTsMs */
    meta: `${prefix}:stock:${region}:meta`,
    /** hash sku → bottle size in ml (absent for SKUs whose size is unknown) */
    sizes: `${prefix}:stock:${region}:sizes`,
  };
}
