import type { Command } from 'commander';
import { Redis } from 'ioredis';
import { createPgPool } from '../../sinks/postgres/pool.js';
import { rebuildRedisFromPostgres } from '../../sinks/redis/rebuild.js';
import { loadRuntimeConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';

function positiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/** `cellar snapshot rebuild-redis`. */
export function registerSnapshotCommands(program: Command): void {
  const snapshot = program.command('snapshot').description('stock snapshots kept in Redis');
  snapshot
    .command('rebuild-redis')
    .description('rebuild the Redis snapshots from Postgres and swap them in atomically')
    .option('--key-prefix <prefix>', 'key prefix of the snapshots, as configured on the Redis sink', 'cellar')
    .option('--chunk-size <n>', 'rows per Postgres read and Redis round trip', '5000')
    .action(async (o: { keyPrefix: string; chunkSize: string }) => {
      const cfg = loadRuntimeConfig();
      const chunkSize = positiveInt('--chunk-size', o.chunkSize);
      const pool = createPgPool(cfg.pgUrl);
      const redis = new Redis(cfg.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
      redis.on('error', () => undefined); // surfaced by the failing command
      try {
        const r = await rebuildRedisFromPostgres({ pool, redis, keyPrefix: o.keyPrefix, chunkSize });
        console.log(`rebuilt ${r.regions} regions (${r.skus} SKUs), removed ${r.removedRegions} stale regions`);
      } finally {
        await pool.end();
        await redis.quit().catch(() => redis.disconnect());
      }
    });
}
