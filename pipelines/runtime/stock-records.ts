import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import { NO_THRESHOLDS, type Thresholds } from '../events/derive.js';
import { followEventLog } from '../events/follower.js';
import { pruneEvents } from '../events/log.js';
import { ThresholdCache } from '../events/thresholds.js';
import { maintainHistory } from '../state/history.js';
import type { StockEventRecord } from '../../schemas/records.js';
import type { RuntimeConfig } from '../core/config.js';
import type { CellarMetrics } from '../core/metrics.js';
import { createPgPool } from '../core/pg.js';
import { startWebhookDispatcher } from '../webhooks/index.js';

const HOUR_MS = 3_600_000;

/** What a runtime keeps beside the totals: history partitions, event retention, thresholds, event followers. */
export interface StockRecords {
  /** The low-stock rules to derive events with (none while history is off). */
  thresholds: () => Thresholds;
  /** Stops the timers and followers (safe twice). */
  stop: () => Promise<void>;
}

/** Options of {@link startStockRecords}. */
export interface StockRecordsOptions {
  pool: pg.Pool;
  log: Logger;
  /** CELLAR_HISTORY_RETENTION_DAYS: 0 keeps no history and derives no events. */
  retentionDays: number;
  /** Retries start-up reads until the database answers (the runtime's retry policy). */
  retry: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
  /** Publishes stock events to the topic (the Kafka runtime's aggregators; the embedded runtime with CELLAR_STOCK_EVENTS_KAFKA). */
  topic?: { name: string; publish: (events: StockEventRecord[]) => Promise<void> };
  /** Sends stock events to webhook subscriptions from this process (its own small pool on CELLAR_PG_URL). */
  webhooks?: { cfg: RuntimeConfig; metrics?: CellarMetrics };
}

/**
 * Starts what the stock history and events need in a runtime that writes totals: today's and the next
 * days' history partitions (now and hourly, old days dropped, old events deleted), the low-stock rules
 * (read now, refreshed every 5 s), the topic publisher and the webhook dispatcher following the event
 * log. Every runtime process
 * may run it: partitions are created idempotently and one process at a time follows the log.
 */
export async function startStockRecords(o: StockRecordsOptions): Promise<StockRecords> {
  if (o.retentionDays <= 0) return { thresholds: () => NO_THRESHOLDS, stop: async () => undefined };
  const maintain = async () => {
    const dropped = await maintainHistory(o.pool, o.retentionDays);
    const pruned = await pruneEvents(o.pool, o.retentionDays);
    if (dropped.length || pruned) o.log.info({ dropped, prunedEvents: pruned, retentionDays: o.retentionDays }, 'old stock history partitions dropped and old stock events deleted');
  };
  await o.retry('Postgres (stock history partitions)', maintain);
  const timer = setInterval(() => {
    maintain().catch((err: unknown) => o.log.warn({ err: (err as Error).message }, 'maintaining stock history partitions failed; trying again in an hour'));
  }, HOUR_MS);
  timer.unref();
  const cache = new ThresholdCache(o.pool, o.log);
  await o.retry('Postgres (cellar.stock_thresholds)', () => cache.start());
  const relay = o.topic ? followEventLog({ pool: o.pool, consumer: `topic:${o.topic.name}`, handle: o.topic.publish, log: o.log }) : undefined;
  const w = o.webhooks;
  const webhookPool = w ? createPgPool(w.cfg.pgUrl, { max: 2, applicationName: 'cellar-webhooks' }) : undefined;
  const webhooks = w && webhookPool ? startWebhookDispatcher({
    pool: webhookPool, log: o.log, ...(w.metrics ? { metrics: w.metrics } : {}), timeoutMs: w.cfg.webhookTimeoutMs, maxAttempts: w.cfg.webhookMaxAttempts,
    maxInFlight: w.cfg.webhookMaxInFlight, maxInFlightPerSubscription: w.cfg.webhookMaxInFlightPerSubscription, retentionDays: o.retentionDays,
  }) : undefined;
  let stopped: Promise<void> | undefined;
  return {
    thresholds: () => cache.thresholds,
    stop: () => (stopped ??= (async () => {
      clearInterval(timer);
      cache.stop();
      await relay?.stop();
      await webhooks?.stop();
      await webhookPool?.end().catch(() => undefined);
    })()),
  };
}
