import type pg from 'pg';
import { Counter, Gauge, Histogram } from 'prom-client';
import { z } from 'zod';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { backoffDelay, sleep, withRetry } from '../core/retry.js';
import { parseSpec } from '../core/spec.js';
import { claimDeliveries, expireExhausted, followSubscription, logHead, markDelivered, markFailed, pruneDeliveries, releaseClaim, type ClaimedDelivery } from './deliveries.js';
import { sendDelivery } from './sender.js';
import { subscriptionsToFollow, type FollowedSubscription } from './store.js';

const int = (def: number, min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int('expected a whole number').min(min, `at least ${min}`).max(max, `at most ${max}`).default(def);

/** Options of {@link startWebhookDispatcher}: the dispatcher's settings, with their defaults. */
export const WebhookDispatcherSpec = z.object({
  pollMs: int(500, 10, 60_000).describe('How often the event log is read for new events and due deliveries are looked for, ms. Default 500.'),
  timeoutMs: int(5_000, 50, 120_000).describe('Per request: an endpoint that has not answered after this long failed the attempt, ms. Default 5000.'),
  maxAttempts: int(8, 1, 100).describe('Attempts before a delivery is dead, for subscriptions without their own. Default 8.'),
  backoffBaseMs: int(1_000, 1).describe('Backoff after a failed attempt (core/retry.ts backoffDelay, full jitter): uniform in [0, min(backoffMaxMs, backoffBaseMs·2^(attempt−1))], ms. Default 1000.'),
  backoffMaxMs: int(600_000, 1).describe('Longest wait between attempts, ms. Default 600000 (10 min).'),
  maxInFlight: int(32, 1, 10_000).describe('Requests in flight at once in this process, over every subscription. Default 32.'),
  maxInFlightPerSubscription: int(4, 1, 1_000).describe('Requests in flight at once to one subscription, in this process: a slow or dead endpoint holds at most this many. Default 4.'),
  leaseMs: z.number().int().min(1_000).optional().describe('How long a claimed delivery is left to its dispatcher before another may send it again (a process that stopped mid-request), ms. Default timeoutMs + 30000.'),
  stopTimeoutMs: z.number().int().min(0).optional().describe('How long stop() waits for requests in flight before interrupting them (handed back, sent again by any dispatcher), ms. Default timeoutMs + 500.'),
  retentionDays: int(30, 0).describe('Delivered and dead deliveries are deleted this many days after they were recorded (0: kept). Default 30.'),
  fanOutBatch: int(500, 1, 100_000).describe('Events read from the log per query, per subscription. Default 500.'),
}).refine((s) => s.leaseMs === undefined || s.leaseMs > s.timeoutMs, { path: ['leaseMs'], message: 'must be longer than timeoutMs (else a request still running is sent again)' });

export type WebhookDispatcherSettings = z.input<typeof WebhookDispatcherSpec>;

/** What {@link startWebhookDispatcher} needs, and its settings. */
export interface WebhookDispatcherOptions extends WebhookDispatcherSettings {
  /** Cellar's Postgres. Queries are short; no connection is held during a request. */
  pool: pg.Pool;
  log: Logger;
  /** Records `cellar_webhook_*` metrics here when given. */
  metrics?: CellarMetrics;
}

/** A running dispatcher. */
export interface WebhookDispatcher {
  /** Stops following and claiming, waits for requests in flight (at most stopTimeoutMs, then interrupts them). Safe to call twice. */
  stop(): Promise<void>;
}

/** How often expired leases are given up and old rows pruned, ms. */
const SWEEP_MS = 30_000;
const PRUNE_MS = 3_600_000;
/**
 * Every subscription is followed at least this often even when the log's head did not move (another
 * process that was following one may have stopped halfway), ms.
 */
const FULL_FOLLOW_MS = 5_000;

/** The webhook dispatcher's metrics (prefix `cellar_webhook_`), on the process' Cellar registry. */
export interface WebhookMetrics {
  /** Attempts by outcome: `delivered` (2xx), `failed` (retried later), `dead` (the last attempt failed), `interrupted`. */
  attempts: Counter<'outcome'>;
  /** Time from the request to the answer (or the timeout), seconds. */
  requestSeconds: Histogram;
  /** Requests in flight. */
  inFlight: Gauge;
  /** Deliveries recorded from the event log (events matching a subscription's filter). */
  recorded: Counter;
}

/** Creates the metrics on `metrics.registry`, or returns those already there (several dispatchers, one process). */
export function createWebhookMetrics(metrics: CellarMetrics): WebhookMetrics {
  const r = metrics.registry;
  const registers = [r];
  const existing = r.getSingleMetric('cellar_webhook_attempts_total');
  if (existing) {
    return {
      attempts: existing as Counter<'outcome'>,
      requestSeconds: r.getSingleMetric('cellar_webhook_request_seconds') as Histogram,
      inFlight: r.getSingleMetric('cellar_webhook_in_flight') as Gauge,
      recorded: r.getSingleMetric('cellar_webhook_deliveries_recorded_total') as Counter,
    };
  }
  return {
    attempts: new Counter({ name: 'cellar_webhook_attempts_total', help: 'Webhook delivery attempts by outcome (delivered, failed, dead, interrupted)', labelNames: ['outcome'], registers }),
    requestSeconds: new Histogram({ name: 'cellar_webhook_request_seconds', help: 'Webhook request time to answer or time out', buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers }),
    inFlight: new Gauge({ name: 'cellar_webhook_in_flight', help: 'Webhook requests in flight', registers }),
    recorded: new Counter({ name: 'cellar_webhook_deliveries_recorded_total', help: 'Webhook deliveries recorded from the stock event log', registers }),
  };
}

const hostOf = (url: string): string => {
  try {
    return new URL(url).host;
  } catch {
    return '?';
  }
};

/**
 * Sends stock events to webhook subscriptions, at least once each. Every `pollMs` it takes new events
 * from the log into each subscription's deliveries (fan-out.ts), then claims due deliveries (a short
 * UPDATE … SKIP LOCKED) within its limits in flight and POSTs them outside any transaction; each answer
 * is recorded (delivered, retried after a backoff, or dead after max attempts). Several processes may run
 * one against the same database: a delivery is claimed by one at a time, and one lost with its process
 * is sent again after its lease. Nothing here waits on an endpoint except that endpoint's own requests
 * (at most `maxInFlightPerSubscription`, each ended after `timeoutMs`), so a slow or dead endpoint delays
 * neither other subscriptions nor the pipeline, which only writes the event log.
 */
export function startWebhookDispatcher(options: WebhookDispatcherOptions): WebhookDispatcher {
  const { pool, log, metrics, ...settings } = options;
  const s = parseSpec(WebhookDispatcherSpec, settings, 'webhook dispatcher options');
  const d = new Dispatcher(pool, log, metrics ? createWebhookMetrics(metrics) : undefined, {
    ...s,
    leaseMs: s.leaseMs ?? s.timeoutMs + 30_000,
    stopTimeoutMs: s.stopTimeoutMs ?? s.timeoutMs + 500,
  });
  return { stop: () => d.stop() };
}

type Settings = z.output<typeof WebhookDispatcherSpec> & { leaseMs: number; stopTimeoutMs: number };

class Dispatcher {
  private subs: FollowedSubscription[] = [];
  /** Requests in flight per subscription, in this process. */
  private readonly perSub = new Map<string, number>();
  private readonly running = new Set<Promise<void>>();
  /** Aborts requests in flight (stop() past its bound). */
  private readonly interrupt = new AbortController();
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private lastFollow = 0;
  /** The log head every subscription was last followed up to (undefined: some were not). */
  private followedHead: string | undefined;
  private lastFullFollow = 0;
  private lastSweep = 0;
  private lastPrune = 0;
  private readonly loop: Promise<void>;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly metrics: WebhookMetrics | undefined,
    private readonly s: Settings,
  ) {
    this.loop = this.run();
  }

  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      this.stopped = true;
      this.wake();
      await this.loop;
      const waited = new AbortController();
      const done = await Promise.race([Promise.allSettled([...this.running]).then(() => true), sleep(this.s.stopTimeoutMs, waited.signal).then(() => false)]);
      waited.abort();
      if (!done) {
        this.interrupt.abort();
        await Promise.allSettled([...this.running]);
      }
    })());
  }

  private wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Waits `ms`, or until woken (a request ended, stop()), also by a wake that came while it was not waiting. */
  private pause(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wakeUp = undefined;
        this.woken = false;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let again = false;
      try {
        again = await this.tick();
        failures = 0;
      } catch (err) {
        failures++;
        const delay = Math.min(30_000, this.s.pollMs * 2 ** Math.min(failures, 10));
        this.log.warn({ err: (err as Error).message, attempt: failures, delayMs: delay }, `webhook dispatcher: ${(err as Error).message}; trying again in ${delay} ms`);
        if (!this.stopped) await this.pause(delay);
        continue;
      }
      if (!this.stopped && !again) await this.pause(this.s.pollMs);
    }
  }

  /** One round: follow the log (every pollMs), sweep (every 30 s), claim and send. True when more work is waiting now. */
  private async tick(): Promise<boolean> {
    const now = Date.now();
    let more = false;
    if (now - this.lastFollow >= this.s.pollMs) {
      this.lastFollow = now;
      more = await this.follow();
    }
    if (now - this.lastSweep >= SWEEP_MS) {
      this.lastSweep = now;
      const expired = await expireExhausted(this.pool, this.s.maxAttempts);
      if (expired) this.log.warn({ deliveries: expired }, `webhook dispatcher: ${expired} deliveries dead: their last attempt's dispatcher stopped during the request`);
    }
    if (this.s.retentionDays > 0 && now - this.lastPrune >= PRUNE_MS) {
      this.lastPrune = now;
      await pruneDeliveries(this.pool, this.s.retentionDays);
    }
    return (await this.claim()) || more;
  }

  /**
   * Records new deliveries of every subscription; true when a backlog is left for the next round. Skipped
   * (but for the list of subscriptions) while the log's head has not moved since every subscription was
   * followed up to it.
   */
  private async follow(): Promise<boolean> {
    this.subs = await subscriptionsToFollow(this.pool);
    const head = await logHead(this.pool);
    const now = Date.now();
    if (head === this.followedHead && now - this.lastFullFollow < FULL_FOLLOW_MS) return false;
    let more = false;
    let complete = true;
    for (const sub of this.subs) {
      if (this.stopped) return false;
      try {
        const r = await followSubscription(this.pool, sub, { batchSize: this.s.fanOutBatch, batches: 4 });
        if (r.recorded) this.metrics?.recorded.inc(r.recorded);
        more ||= r.more;
        complete &&= r.followed && !r.more;
      } catch (err) {
        complete = false;
        // One subscription's failure (deleted meanwhile, say) does not hold back the others.
        this.log.warn({ err: (err as Error).message, webhook: sub.id }, `webhook ${sub.id}: taking events from the log failed: ${(err as Error).message}`);
      }
    }
    this.followedHead = complete ? head : undefined;
    if (complete) this.lastFullFollow = now;
    return more;
  }

  /** Claims what this process may send now and starts sending it; true when a limit stopped it with more due. */
  private async claim(): Promise<boolean> {
    const free = this.s.maxInFlight - this.running.size;
    if (free <= 0 || this.stopped) return false;
    const caps = new Map<string, number>();
    for (const sub of this.subs) if (sub.enabled) caps.set(sub.id, this.s.maxInFlightPerSubscription - (this.perSub.get(sub.id) ?? 0));
    const wanted = Math.min(free, [...caps.values()].reduce((a, n) => a + Math.max(n, 0), 0));
    if (wanted <= 0) return false;
    const claimed = await claimDeliveries(this.pool, { caps, limit: wanted, defaultMaxAttempts: this.s.maxAttempts, leaseMs: this.s.leaseMs });
    for (const c of claimed) {
      if (this.stopped) this.track(c, releaseClaim(this.pool, c, '').catch(() => undefined));
      else this.track(c, this.deliver(c));
    }
    return !this.stopped && claimed.length > 0 && claimed.length === wanted;
  }

  private track(c: ClaimedDelivery, work: Promise<void>): void {
    this.perSub.set(c.subscriptionId, (this.perSub.get(c.subscriptionId) ?? 0) + 1);
    this.metrics?.inFlight.inc();
    const p: Promise<void> = work
      .catch((err: unknown) => {
        // Recording the outcome failed even after retries: the lease runs out and the delivery is sent again.
        this.log.error({ err: (err as Error).message, webhook: c.subscriptionId, eventId: c.eventId }, `webhook ${c.subscriptionId}: recording the outcome of ${c.eventId} failed; it is sent again after its lease`);
      })
      .finally(() => {
        const n = (this.perSub.get(c.subscriptionId) ?? 1) - 1;
        if (n > 0) this.perSub.set(c.subscriptionId, n);
        else this.perSub.delete(c.subscriptionId);
        this.metrics?.inFlight.dec();
        this.running.delete(p);
        this.wake();
      });
    this.running.add(p);
  }

  /** Sends one claimed delivery and records the outcome (retrying the database briefly). */
  private async deliver(c: ClaimedDelivery): Promise<void> {
    const t0 = performance.now();
    const outcome = await sendDelivery(c, { timeoutMs: this.s.timeoutMs, stop: this.interrupt.signal });
    this.metrics?.requestSeconds.observe((performance.now() - t0) / 1000);
    const save = <T>(fn: () => Promise<T>) => withRetry(fn, { retries: 3, minDelayMs: 100, maxDelayMs: 1_000 });
    const at = { webhook: c.subscriptionId, host: hostOf(c.url), eventId: c.eventId, attempt: c.attempt };
    if (outcome.ok) {
      await save(() => markDelivered(this.pool, c, outcome.httpStatus));
      this.metrics?.attempts.inc({ outcome: 'delivered' });
      this.log.debug({ ...at, status: outcome.httpStatus }, `webhook ${c.subscriptionId}: delivered ${c.eventId}`);
      return;
    }
    if (outcome.interrupted) {
      await save(() => releaseClaim(this.pool, c, outcome.error));
      this.metrics?.attempts.inc({ outcome: 'interrupted' });
      return;
    }
    const retryInMs = backoffDelay(c.attempt, this.s.backoffBaseMs, this.s.backoffMaxMs);
    const status = await save(() => markFailed(this.pool, c, { httpStatus: outcome.httpStatus, error: outcome.error, retryInMs }));
    if (status === 'dead') {
      this.metrics?.attempts.inc({ outcome: 'dead' });
      this.log.warn({ ...at, error: outcome.error }, `webhook ${c.subscriptionId}: delivery of ${c.eventId} to ${at.host} is dead after ${c.attempt} attempts (${outcome.error}); redeliver it once the endpoint works`);
    } else {
      this.metrics?.attempts.inc({ outcome: 'failed' });
      this.log.info({ ...at, error: outcome.error, retryInMs }, `webhook ${c.subscriptionId}: attempt ${c.attempt} of ${c.eventId} to ${at.host} failed (${outcome.error}); next in ${retryInMs} ms`);
    }
  }
}
