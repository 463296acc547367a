import type { Command } from 'commander';
import { Redis } from 'ioredis';
import { createPgPool } from '../../sinks/postgres/pool.js';
import { rebuildRedisFromPostgres } from '../../sinks/redis/rebuild.js';
import { migrate } from '../../sinks/postgres/migrate.js';
import { loadRegistry } from '../../connectors/registry/loader.js';
import { requestResnapshot, resnapshotRequest } from '../runtime/resnapshot.js';
import { loadRuntimeConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';

function positiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/** `cellar snapshot rebuild-redis` and `cellar resnapshot`. */
export function registerSnapshotCommands(program: Command): void {
  program
    .command('resnapshot')
    .description('snapshot a supplier\'s tables again in the running embedded runtime: every table is re-read, starting with a truncate, so rows Cellar missed or still counts after they were deleted are corrected')
    .requiredOption('--supplier <id>', 'supplier id (from CELLAR_SUPPLIERS_DIR)')
    .option('--no-wait', 'only queue the request')
    .action(async (o: { supplier: string; wait: boolean }) => {
      const cfg = loadRuntimeConfig();
      const supplier = loadRegistry(cfg.suppliersDir).find((s) => s.id === o.supplier);
      if (!supplier) throw new ConfigError(`--supplier: no supplier "${o.supplier}" in ${cfg.suppliersDir}`);
      if (!['postgres', 'mysql', 'mariadb'].includes(supplier.source.kind)) {
        throw new ConfigError(`--supplier: ${o.supplier} is a ${supplier.source.kind} source, which the embedded runtime does not read; with Debezium, use an incremental snapshot (cellar reconcile --via signal)`);
      }
      const pool = createPgPool(cfg.pgUrl);
      try {
        await migrate(pool);
        const id = await requestResnapshot(pool, supplier.id, `cli:${process.env.USER ?? 'unknown'}`);
        console.log(`resnapshot of ${supplier.id} requested (request ${id})`);
        if (!o.wait) return;
        for (let i = 0; i < 30; i++) {
          const r = await resnapshotRequest(pool, id);
          if (r?.takenAt) {
            console.log(`the embedded runtime took it at ${r.takenAt.toISOString()}: it reads ${supplier.id}'s tables again now (its log says "snapshot complete")`);
            return;
          }
          await new Promise((res) => setTimeout(res, 1_000));
        }
        console.error(`no running embedded runtime took the request within 30 s; it stays queued and is taken when one starts (cellar run embedded)`);
        process.exitCode = 1;
      } finally {
        await pool.end();
      }
    });
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
