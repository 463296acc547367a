import type pg from 'pg';
import { CellarError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { query } from '../core/pg.js';
import { Thresholds, type ThresholdRule } from './derive.js';

/** Longest SKU pattern and region accepted, characters. */
const MAX_TEXT = 200;

/**
 * Checks a rule as the API and CLI take it; the error names every problem, each by the name `names` gives
 * its field (the CLI's options; default the API's fields).
 */
export function checkThresholdRule(r: { region?: unknown; skuPattern?: unknown; threshold?: unknown }, names: Record<'region' | 'skuPattern' | 'threshold', string> = { region: 'region', skuPattern: 'skuPattern', threshold: 'threshold' }): ThresholdRule {
  const problems: string[] = [];
  const region = r.region ?? '*';
  if (typeof region !== 'string' || !region || region.length > MAX_TEXT || /\s/.test(region)) problems.push(`${names.region}: expected a region name or '*' (no spaces, at most ${MAX_TEXT} characters)`);
  if (typeof r.skuPattern !== 'string' || !r.skuPattern || r.skuPattern.length > MAX_TEXT) problems.push(`${names.skuPattern}: expected a SKU or a glob such as 'chateau-*-750' (at most ${MAX_TEXT} characters)`);
  if (typeof r.threshold !== 'number' || !Number.isSafeInteger(r.threshold) || r.threshold <= 0) problems.push(`${names.threshold}: expected a whole number of bottles above 0`);
  if (problems.length) throw new CellarError('invalid_threshold', `invalid low-stock threshold: ${problems.join('; ')}`, { retriable: false });
  return { region: region as string, skuPattern: r.skuPattern as string, threshold: r.threshold as number };
}

/** Every low-stock rule, by region then pattern. */
export async function listThresholds(q: pg.Pool): Promise<Array<ThresholdRule & { updatedAt: string }>> {
  const { rows } = await query<{ region: string; sku_pattern: string; threshold: string; updated_at: Date }>(q, 'reading low-stock thresholds',
    'SELECT region, sku_pattern, threshold, updated_at FROM cellar.stock_thresholds ORDER BY region COLLATE "C", sku_pattern COLLATE "C"');
  return rows.map((r) => ({ region: r.region, skuPattern: r.sku_pattern, threshold: Number(r.threshold), updatedAt: r.updated_at.toISOString() }));
}

/** Creates or replaces the rule for (region, skuPattern). Returns whether it was new. */
export async function setThreshold(q: pg.Pool, r: ThresholdRule): Promise<boolean> {
  const { rows } = await query<{ inserted: boolean }>(q, 'saving a low-stock threshold', `INSERT INTO cellar.stock_thresholds (region, sku_pattern, threshold) VALUES ($1, $2, $3)
    ON CONFLICT (region, sku_pattern) DO UPDATE SET threshold = excluded.threshold, updated_at = now() RETURNING (xmax = 0) AS inserted`, [r.region, r.skuPattern, r.threshold]);
  return rows[0]!.inserted;
}

/** Removes the rule for (region, skuPattern). Returns whether there was one. */
export async function removeThreshold(q: pg.Pool, region: string, skuPattern: string): Promise<boolean> {
  const { rowCount } = await query(q, 'removing a low-stock threshold', 'DELETE FROM cellar.stock_thresholds WHERE region = $1 AND sku_pattern = $2', [region, skuPattern]);
  return (rowCount ?? 0) > 0;
}

/**
 * The writers' copy of the low-stock rules, read again every `refreshMs` (default 5 s): a rule set through
 * the API applies to changes written from the next refresh on. A failed refresh keeps the last rules.
 */
export class ThresholdCache {
  private current = new Thresholds([]);
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pool: pg.Pool, private readonly log: Logger, private readonly refreshMs = 5_000) {}

  get thresholds(): Thresholds {
    return this.current;
  }

  async load(): Promise<void> {
    this.current = new Thresholds(await listThresholds(this.pool));
  }

  /** Loads now (retried by the caller), then keeps refreshing until {@link stop}. */
  async start(): Promise<void> {
    await this.load();
    this.timer ??= setInterval(() => {
      this.load().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'reading low-stock thresholds failed; keeping the last ones'));
    }, this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
