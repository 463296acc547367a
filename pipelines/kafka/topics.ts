import type { RuntimeConfig } from '../core/config.js';

/** Names of Cellar's own topics, derived from `CELLAR_TOPIC_PREFIX` (default `cellar`). */
export interface CellarTopics {
  /** Canonical StockObservation records, key `region|sku`. */
  observations: string;
  /** RegionalStock totals, compacted, key `region|sku`. */
  regionalStock: string;
  /** DeadLetter records from every stage. */
  dlq: string;
  /** StockEvent records (sold out, back in stock, low stock), key `region|sku`, kept by time. */
  stockEvents: string;
}

export function cellarTopics(cfg: Pick<RuntimeConfig, 'topicPrefix'>): CellarTopics {
  return {
    observations: `${cfg.topicPrefix}.observations`,
    regionalStock: `${cfg.topicPrefix}.regional-stock`,
    dlq: `${cfg.topicPrefix}.dlq`,
    stockEvents: `${cfg.topicPrefix}.stock-events`,
  };
}

/** Consumer group id of a worker role, e.g. `cellar-aggregator`. */
export function groupId(cfg: Pick<RuntimeConfig, 'groupPrefix'>, role: string): string {
  return `${cfg.groupPrefix}-${role}`;
}

/** Key of per-(region, sku) records on Cellar topics. Regions and SKUs never contain `|`. */
export function stockKey(region: string, sku: string): string {
  return `${region}|${sku}`;
}
