import type pg from 'pg';
import type { Redis } from 'ioredis';
import { fromRedisError } from '../core/errors.js';
import { sleep } from '../core/retry.js';
import { query } from '../../sinks/postgres/pool.js';
import { redisKeys } from '../../sinks/redis/config.js';
import { orphanDrift, type Drift, type KeyState } from './compare.js';
import { removeOrphans } from './direct-repair.js';
import type { ReconcileDeps, ReconcileOptions, ReconcileReport } from './reconcile.js';
import { finishRun, recordDrift, startRun } from './store.js';

/** The supplier id a run over keys of no supplier is recorded under. */
export const ORPHANS_RUN = '*';

const id = (k: { region: string; sku: string }) => `${k.region}\u0000${k.sku}`;

/** Regions with a Redis stock hash (`<prefix>:stock:<region>`). */
async function redisRegions(redis: Redis, keyPrefix: string): Promise<string[]> {
  const base = `${keyPrefix}:stock:`;
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

/**
 * Keys with a total but no contributor of any supplier: `regional_stock` rows without a single row in
 * `stock_contributions` (not even a tombstone), and Redis fields without a `regional_stock` row in a region
 * this database knows (other regions under the same prefix belong to whoever shares the Redis). Per-supplier
 * runs walk only the keys their contributors were counted under, so these are never seen there.
 */
export async function findOrphanKeys(pool: pg.Pool, redis: Redis, keyPrefix = 'cellar'): Promise<{ orphans: KeyState[]; examined: number }> {
  const { rows } = await query<{ region: string; sku: string; bottles: string }>(pool, 'finding totals without contributors',
    `SELECT rs.region, rs.sku, rs.bottles FROM cellar.regional_stock rs
      WHERE NOT EXISTS (SELECT 1 FROM cellar.stock_contributions c WHERE c.region = rs.region AND c.sku = rs.sku)`);
  const orphans: KeyState[] = rows.map((r) => ({ region: r.region, sku: r.sku, contributed: 0, stored: Number(r.bottles), cached: null }));
  let examined = rows.length;
  // Only regions this database knows: a region nobody here ever counted under belongs to someone else
  // sharing the Redis and prefix (another deployment, a test), whose fields are not ours to judge.
  const { rows: known } = await query<{ region: string }>(pool, 'reading known regions',
    'SELECT DISTINCT region FROM cellar.regional_stock UNION SELECT DISTINCT region FROM cellar.stock_contributions');
  const ours = new Set(known.map((r) => r.region));
  try {
    for (const region of (await redisRegions(redis, keyPrefix)).filter((r) => ours.has(r))) {
      const stock = redisKeys(keyPrefix, region).stock;
      let cursor = '0';
      do {
        const [next, flat] = await redis.hscan(stock, cursor, 'COUNT', 5_000);
        cursor = next;
        const fields = new Map<string, string>();
        for (let i = 0; i < flat.length; i += 2) fields.set(flat[i]!, flat[i + 1]!);
        examined += fields.size;
        if (!fields.size) continue;
        const { rows: inTable } = await query<{ sku: string }>(pool, 'reading totals of Redis fields',
          'SELECT sku FROM cellar.regional_stock WHERE region = $1 AND sku = ANY($2::text[])', [region, [...fields.keys()]]);
        const inPg = new Set(inTable.map((r) => r.sku));
        for (const [sku, v] of fields) if (!inPg.has(sku)) orphans.push({ region, sku, contributed: 0, stored: null, cached: Number(v) });
      } while (cursor !== '0');
    }
  } catch (err) {
    throw fromRedisError(err, 'scanning Redis snapshots for orphan fields');
  }
  return { orphans, examined };
}

/**
 * Finds totals and Redis fields at keys no contributor was ever counted under, confirms each stayed the
 * same across a settle window (a total the Kafka runtime's sinks write before the aggregator saved its
 * contributions is in flight, not an orphan), and with `repair` removes them and checks they are gone.
 */
export async function reconcileOrphans(deps: ReconcileDeps, opts: ReconcileOptions = {}): Promise<ReconcileReport> {
  const t0 = Date.now();
  const { pool, redis, log } = deps;
  const settleMs = opts.settleMs ?? 3000;
  const rounds = opts.rounds ?? 3;
  const runId = await startRun(pool, ORPHANS_RUN, opts.trigger ?? 'cli');
  try {
    const first = await findOrphanKeys(pool, redis, deps.keyPrefix);
    const sig = (k: KeyState) => `${k.stored}|${k.cached}`;
    let cands = new Map(first.orphans.map((k) => [id(k), k]));
    const confirmed: KeyState[] = [];
    for (let round = 1; round <= rounds && cands.size; round++) {
      await sleep(settleMs);
      const now = new Map((await findOrphanKeys(pool, redis, deps.keyPrefix)).orphans.map((k) => [id(k), k]));
      const next = new Map<string, KeyState>();
      for (const [k, was] of cands) {
        const is = now.get(k);
        if (!is) continue;
        if (sig(is) === sig(was)) confirmed.push(is);
        else next.set(k, is);
      }
      cands = next;
    }
    const drift: Array<Drift & { repaired: boolean }> = confirmed.map((k) => ({ ...orphanDrift(k), repaired: false }));
    if (opts.repair && confirmed.length) {
      await removeOrphans(pool, redis, confirmed, deps.keyPrefix);
      // Verified, not assumed: a key counts as repaired only when it is gone from both stores.
      const left = new Set((await findOrphanKeys(pool, redis, deps.keyPrefix)).orphans.map(id));
      for (const d of drift) d.repaired = !left.has(id({ region: d.region!, sku: d.sku! }));
    }
    await recordDrift(pool, runId, drift);
    const repaired = drift.filter((d) => d.repaired).length;
    const outcome = !drift.length ? 'clean' : repaired === drift.length ? 'repaired' : 'drift';
    await finishRun(pool, runId, { rowsCompared: first.examined, drifted: drift.length, repaired, unsettled: cands.size, outcome });
    log.info({ runId, examined: first.examined, orphans: drift.length, repaired, outcome }, 'orphan keys checked');
    return { runId, supplierId: ORPHANS_RUN, rowsCompared: first.examined, rejectedRows: 0, heldRows: 0, drift, repaired, corrections: opts.repair ? drift.length : 0, unsettled: cands.size, outcome, durationMs: Date.now() - t0 };
  } catch (err) {
    await finishRun(pool, runId, { rowsCompared: 0, drifted: 0, repaired: 0, unsettled: 0, outcome: 'failed', error: (err as Error).message }).catch(() => undefined);
    throw err;
  }
}
