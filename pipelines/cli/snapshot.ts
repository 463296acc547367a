import type { Command } from 'commander';
import type pg from 'pg';
import type { ResnapshotRequestState } from '../runtime/resnapshot.js';
import { ConfigError } from '../core/errors.js';
import { EXIT } from './exit-codes.js';

function positiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/** `--table` values: repeatable, each a table or a comma list. */
function collectTables(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').map((t) => t.trim()).filter(Boolean)];
}

/** Reads request `id` about once a second until `done` holds or `timeoutMs` passed; the last state read. */
async function waitForRequest(pool: pg.Pool, id: number, done: (r: ResnapshotRequestState) => boolean, timeoutMs: number): Promise<ResnapshotRequestState | undefined> {
  const { resnapshotRequest } = await import('../runtime/resnapshot.js');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await resnapshotRequest(pool, id);
    if ((r && done(r)) || Date.now() >= deadline) return r;
    await new Promise((res) => setTimeout(res, Math.min(1_000, Math.max(0, deadline - Date.now()))));
  }
}

/** Which runtime a `taken_by` names, for people. */
function runtimeName(takenBy: string | null): string {
  return takenBy?.startsWith('capture:') ? `cellar run capture --supplier ${takenBy.slice('capture:'.length)}` : 'the embedded runtime';
}

/** `cellar snapshot rebuild-redis` and `cellar resnapshot`. */
export function registerSnapshotCommands(program: Command): void {
  program
    .command('resnapshot')
    .description('snapshot a supplier\'s tables again in the running runtime that reads it natively (cellar run embedded, or cellar run capture --supplier X): each table is re-read starting with a truncate, so rows Cellar missed or still counts after they were deleted are corrected; with --table, only those tables, while the others keep streaming; exit 3 when no running runtime takes the request within 30 s, 1 when it has not finished within --timeout')
    .requiredOption('--supplier <id>', 'supplier id (from CELLAR_SUPPLIERS_DIR)')
    .option('--table <name>', 'a table of the supplier\'s source.tables to snapshot again (repeatable, or a comma list); default: every table', collectTables, [])
    .option('--timeout <seconds>', 'how long to wait for the snapshot to finish once a runtime took the request', '600')
    .option('--no-wait', 'only queue the request')
    .action(async (o: { supplier: string; table: string[]; timeout: string; wait: boolean }) => {
      const [{ loadRuntimeConfig }, { loadRegistry }, { hasNativeSource }, { createPgPool }, { migrate }, { requestResnapshot }] = await Promise.all([
        import('../core/config.js'), import('../../connectors/registry/loader.js'), import('../../connectors/native-source.js'), import('../core/pg.js'), import('../state/migrate.js'), import('../runtime/resnapshot.js'),
      ]);
      const cfg = loadRuntimeConfig();
      const supplier = loadRegistry(cfg.suppliersDir).find((s) => s.id === o.supplier);
      if (!supplier) throw new ConfigError(`--supplier: no supplier "${o.supplier}" in ${cfg.suppliersDir}`);
      if (!hasNativeSource(supplier)) {
        throw new ConfigError(`--supplier: ${o.supplier} is a ${supplier.source.kind} source, which no native reader (cellar run embedded, cellar run capture) reads; with Debezium, use an incremental snapshot (cellar reconcile --via signal)`);
      }
      const known = supplier.source.tables.map((t) => t.name);
      const unknown = [...new Set(o.table.filter((t) => !known.includes(t)))];
      if (unknown.length) {
        throw new ConfigError(`--table: ${supplier.file} (supplier ${supplier.id}) has no table ${unknown.map((t) => `"${t}"`).join(', ')} in source.tables; its tables: ${known.join(', ')}`);
      }
      const timeoutS = positiveInt('--timeout', o.timeout);
      const tables = o.table.length ? [...new Set(o.table)] : null;
      const what = tables ? tables.join(', ') : `every table of ${supplier.id}`;
      const pool = createPgPool(cfg.pgUrl);
      try {
        await migrate(pool);
        const id = await requestResnapshot(pool, supplier.id, `cli:${process.env.USER ?? 'unknown'}`, tables);
        console.log(`resnapshot of ${supplier.id} requested (request ${id}): ${what}`);
        if (!o.wait) return;
        const taken = await waitForRequest(pool, id, (r) => r.takenAt !== null, 30_000);
        if (!taken?.takenAt) {
          console.error(`no running runtime took request ${id} within 30 s; it stays queued and is taken when one that reads ${supplier.id} starts (cellar run embedded, or cellar run capture --supplier ${supplier.id})`);
          process.exitCode = EXIT.unreachable;
          return;
        }
        const runtime = runtimeName(taken.takenBy);
        console.log(`taken by ${runtime} at ${taken.takenAt.toISOString()}: it snapshots ${what} again now${tables ? ' (the other tables keep streaming)' : ''}`);
        const finished = await waitForRequest(pool, id, (r) => r.finishedAt !== null, timeoutS * 1_000);
        if (finished?.finishedAt) {
          const applied = taken.takenBy?.startsWith('capture:') ? 'published to the raw topics (the Kafka runtime applies it as it consumes them)' : 'committed: the totals include it';
          console.log(`finished at ${finished.finishedAt.toISOString()}: the snapshot of ${what} is ${applied}`);
          return;
        }
        console.error(`the snapshot of ${what} is still pending after ${timeoutS} s (request ${id}, taken by ${runtime} at ${taken.takenAt.toISOString()}); it goes on there: its log says "snapshot complete" when done, and cellar.resnapshot_requests.finished_at of request ${id} is set then`);
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
      const chunkSize = positiveInt('--chunk-size', o.chunkSize);
      const [{ loadRuntimeConfig }, { createPgPool }, { createRedis }, { rebuildRedisFromPostgres }] = await Promise.all([
        import('../core/config.js'), import('../core/pg.js'), import('../core/redis.js'), import('../../sinks/redis/rebuild.js'),
      ]);
      const cfg = loadRuntimeConfig();
      const pool = createPgPool(cfg.pgUrl);
      const redis = createRedis(cfg.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
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
