import pg from 'pg';
import { createRedis } from '../core/redis.js';
import { hasRowReader } from '../../connectors/native-source.js';
import { Redis } from 'ioredis';
import { Cron } from 'croner';
import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import type { RuntimeConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { createPgPool } from '../core/pg.js';
import { migrate } from '../state/migrate.js';
import { ORPHANS_RUN, reconcileOrphans } from './orphans.js';
import { reconcileSupplier, type ReconcileOptions, type ReconcileReport } from './reconcile.js';

/** Suppliers a run covers: one by id, or every supplier whose source Cellar can read. */
export function suppliersToReconcile(all: Supplier[], supplierId?: string): Supplier[] {
  if (supplierId) {
    const s = all.find((x) => x.id === supplierId);
    if (!s) throw new ConfigError(`no supplier "${supplierId}" in the registry (known: ${all.map((x) => x.id).join(', ') || 'none'})`);
    return [s];
  }
  return all.filter(hasRowReader);
}

/** A reconciler bound to Cellar's Postgres and Redis, for the CLI, the scheduler and the read API. */
export class Reconciler {
  private readonly pool: pg.Pool;
  private readonly redis: Redis;
  private running = new Set<string>();

  constructor(private readonly cfg: RuntimeConfig, private readonly log: Logger, private readonly metrics?: CellarMetrics) {
    this.pool = createPgPool(cfg.pgUrl, { max: 4, applicationName: 'cellar-reconcile' });
    this.redis = createRedis(cfg.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: false });
    this.redis.on('error', () => undefined);
  }

  /** Applies pending migrations (the run and drift tables). */
  async prepare(): Promise<void> {
    await migrate(this.pool);
  }

  /**
   * Runs one supplier's reconciliation, or every readable supplier's in turn and then the check of keys
   * no supplier's contributors were counted under (`orphans` adds it to a one-supplier run). A supplier already being
   * reconciled by this process is skipped (a slow run and its next schedule never overlap).
   */
  /**
   * Reconciles the registry's readable suppliers (or one), then the orphan keys. With `failures`, a
   * supplier that cannot be reconciled (its database unreachable, say) is recorded there and the others
   * still run; without it, the first failure ends the run.
   */
  async run(opts: ReconcileOptions & { supplierId?: string; orphans?: boolean; failures?: Array<{ supplierId: string; error: Error }> } = {}): Promise<ReconcileReport[]> {
    const out: ReconcileReport[] = [];
    const deps = { pool: this.pool, redis: this.redis, log: this.log, kafka: this.cfg, ...(this.metrics ? { metrics: this.metrics } : {}) };
    for (const supplier of suppliersToReconcile(loadRegistry(this.cfg.suppliersDir), opts.supplierId)) {
      if (this.running.has(supplier.id)) {
        this.log.warn({ supplier: supplier.id }, 'reconciliation already running for this supplier; skipped');
        continue;
      }
      this.running.add(supplier.id);
      try {
        out.push(await reconcileSupplier(deps, supplier, opts));
      } catch (err) {
        if (!opts.failures) throw err;
        opts.failures.push({ supplierId: supplier.id, error: err as Error });
      } finally {
        this.running.delete(supplier.id);
      }
    }
    // Keys no supplier's contributors were counted under: with every supplier, or when asked.
    if ((!opts.supplierId || opts.orphans) && !this.running.has(ORPHANS_RUN)) {
      this.running.add(ORPHANS_RUN);
      try {
        out.push(await reconcileOrphans(deps, opts));
      } finally {
        this.running.delete(ORPHANS_RUN);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    this.redis.disconnect();
    await this.pool.end().catch(() => undefined);
  }
}

/**
 * `cellar run scheduler`: runs each supplier's reconciliation on its `reconcile.schedule` (cron, with
 * optional seconds field, UTC) from the registry, repairing when `reconcile.repair` is set. Overlapping
 * runs of one supplier are skipped. Returns a stop function.
 */
export function startScheduler(reconciler: Reconciler, suppliers: Supplier[], log: Logger, settle?: Pick<ReconcileOptions, 'settleMs' | 'rounds'>): { jobs: number; stop(): Promise<void> } {
  const jobs: Cron[] = [];
  const inFlight = new Set<Promise<unknown>>();
  for (const s of suppliers) {
    const plan = s.reconcile;
    if (!plan?.schedule) continue;
    const job = new Cron(plan.schedule, { timezone: 'UTC', protect: true, name: `reconcile-${s.id}` }, () => {
      const p = reconciler
        .run({ supplierId: s.id, repair: plan.repair, trigger: 'scheduler', ...settle, ...(plan.settleMs !== undefined ? { settleMs: plan.settleMs } : {}) })
        .catch((err: unknown) => log.error({ supplier: s.id, err: (err as Error).message }, 'scheduled reconciliation failed'))
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
      return p.then(() => undefined);
    });
    jobs.push(job);
    log.info({ supplier: s.id, schedule: plan.schedule, repair: plan.repair, next: job.nextRun()?.toISOString() }, 'reconciliation scheduled');
  }
  return {
    jobs: jobs.length,
    stop: async () => {
      for (const j of jobs) j.stop();
      await Promise.all([...inFlight]);
    },
  };
}
