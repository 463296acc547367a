import { createHash } from 'node:crypto';
import type { HistoryEntry } from '../aggregate/aggregator.js';
import type { StockEventRecord } from '../../schemas/records.js';

/** The kinds of stock event. */
export const STOCK_EVENT_TYPES = ['sold_out', 'back_in_stock', 'low_stock'] as const satisfies ReadonlyArray<StockEventRecord['type']>;
export type StockEventType = StockEventRecord['type'];

/** A stock event as Cellar derives, keeps and publishes it (the Avro record `StockEvent`). */
export type StockLevelEvent = StockEventRecord;

/** A low-stock rule as `cellar.stock_thresholds` keeps it: region (`*`: any), SKU glob, threshold (bottles). */
export interface ThresholdRule {
  region: string;
  skuPattern: string;
  threshold: number;
}

/** The event id: 32 hex characters of SHA-256 over (region, sku, version, type). */
export function stockEventId(region: string, sku: string, version: number, type: StockEventType): string {
  return createHash('sha256').update(JSON.stringify([region, sku, version, type])).digest('hex').slice(0, 32);
}

/** A SKU glob (`*`: any run of characters, everything else literal) as a whole-string regular expression. */
export function globRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
}

/**
 * Finds each key's low-stock threshold among rules: an exact region before `*`, then the longest SKU
 * pattern, then the pattern's text (so ties resolve the same everywhere). Lookups are cached per key.
 */
export class Thresholds {
  private readonly rules: Array<ThresholdRule & { re: RegExp }>;
  private readonly cache = new Map<string, number | null>();

  constructor(rules: ThresholdRule[]) {
    this.rules = rules.map((r) => ({ ...r, re: globRegExp(r.skuPattern) })).sort((a, b) =>
      (a.region === '*' ? 1 : 0) - (b.region === '*' ? 1 : 0) || b.skuPattern.length - a.skuPattern.length || (a.skuPattern < b.skuPattern ? -1 : a.skuPattern > b.skuPattern ? 1 : 0));
  }

  /** The threshold of (region, sku), bottles; null when no rule matches. */
  of(region: string, sku: string): number | null {
    const k = `${region}\u0000${sku}`;
    let t = this.cache.get(k);
    if (t !== undefined) return t;
    t = this.rules.find((r) => (r.region === '*' || r.region === region) && r.re.test(sku))?.threshold ?? null;
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(k, t);
    return t;
  }

  get size(): number {
    return this.rules.length;
  }
}

export const NO_THRESHOLDS = new Thresholds([]);

/**
 * The stock events of effective changes, in order. Pure: the same entries and thresholds give the same
 * events with the same ids (a replay derives nothing new). At most one event per change: sold_out and
 * back_in_stock take precedence over low_stock.
 */
export function deriveEvents(entries: readonly HistoryEntry[], thresholds: Thresholds = NO_THRESHOLDS): StockLevelEvent[] {
  const out: StockLevelEvent[] = [];
  for (const e of entries) {
    const after = e.bottles;
    const before = after - e.delta;
    let type: StockEventType | undefined;
    let threshold: number | null = null;
    if (before > 0 && after <= 0) type = 'sold_out';
    else if (before <= 0 && after > 0) type = 'back_in_stock';
    else if (after > 0 && after < before && thresholds.size) {
      const t = thresholds.of(e.region, e.sku);
      if (t !== null && before > t && after <= t) {
        type = 'low_stock';
        threshold = t;
      }
    }
    if (!type) continue;
    out.push({ id: stockEventId(e.region, e.sku, e.version, type), type, region: e.region, sku: e.sku, version: e.version, before, after, threshold, sourceTsMs: e.sourceTsMs });
  }
  return out;
}

/** Which events a follower wants: any of `types`, a region, one SKU or a SKU prefix (all optional). */
export interface StockEventFilter {
  types?: StockEventType[];
  region?: string;
  sku?: string;
  skuPrefix?: string;
}

/** Whether `e` passes `f`. */
export function matchesFilter(e: Pick<StockLevelEvent, 'type' | 'region' | 'sku'>, f: StockEventFilter): boolean {
  return (!f.types?.length || f.types.includes(e.type)) && (!f.region || e.region === f.region) && (!f.sku || e.sku === f.sku) && (!f.skuPrefix || e.sku.startsWith(f.skuPrefix));
}
