import type pg from 'pg';
import type { Redis } from 'ioredis';
import { fromRedisError } from '../core/errors.js';
import { sleep } from '../core/retry.js';
import { query } from '../core/pg.js';
import { redisKeys, scanRegions } from '../../sinks/redis/config.js';
import { keyId, orphanDrift, type Drift, type KeyState } from './compare.js';
import { removeOrphans } from './direct-repair.js';
import type { ReconcileDeps, ReconcileOptions, ReconcileReport } from './reconcile.js';
import { finishRun, recordDrift, startRun } from '../state/runs.js';

/** The supplier id a run over keys of no supplier is recorded under. */
export const ORPHANS_RUN = '*';

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
    for (const region of (await scanRegions(redis, keyPrefix)).filter((r) => ours.has(r))) {
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
 * The given keys that are orphans now, by the rules of {@link findOrphanKeys}, read key by key (a re-check
 * or a verification reads only its candidates, not every total and field again).
 */
async function orphansAmong(pool: pg.Pool, redis: Redis, keys: KeyState[], keyPrefix = 'cellar'): Promise<KeyState[]> {
  if (!keys.length) return [];
  const { rows } = await query<{ region: string; sku: string; bottles: string | null; fed: boolean }>(pool, 'reading orphan candidates',
    `SELECT k.region, k.sku, rs.bottles,
            EXISTS (SELECT 1 FROM cellar.stock_contributions c WHERE c.region = k.region AND c.sku = k.sku) AS fed
       FROM unnest($1::text[], $2::text[]) AS k(region, sku) LEFT JOIN cellar.regional_stock rs ON rs.region = k.region AND rs.sku = k.sku`,
    [keys.map((k) => k.region), keys.map((k) => k.sku)]);
  let cached: Array<string | null>;
  try {
    const m = redis.multi();
    for (const r of rows) m.hget(redisKeys(keyPrefix, r.region).stock, r.sku);
    cached = ((await m.exec()) ?? []).map(([err, v]) => {
      if (err) throw err;
      return v as string | null;
    });
  } catch (err) {
    throw fromRedisError(err, 'reading Redis fields of orphan candidates');
  }
  const out: KeyState[] = [];
  rows.forEach((r, i) => {
    const stored = r.bottles === null ? null : Number(r.bottles);
    if (stored !== null ? !r.fed : cached[i] !== null) out.push({ region: r.region, sku: r.sku, contributed: 0, stored, cached: stored === null ? Number(cached[i]) : null });
  });
  return out;
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
    let cands = new Map(first.orphans.map((k) => [keyId(k), k]));
    const confirmed: KeyState[] = [];
    for (let round = 1; round <= rounds && cands.size; round++) {
      await sleep(settleMs);
      const now = new Map((await orphansAmong(pool, redis, [...cands.values()], deps.keyPrefix)).map((k) => [keyId(k), k]));
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
      const left = new Set((await orphansAmong(pool, redis, confirmed, deps.keyPrefix)).map(keyId));
      for (const d of drift) d.repaired = !left.has(keyId({ region: d.region!, sku: d.sku! }));
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
