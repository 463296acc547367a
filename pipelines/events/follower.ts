import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import { backoffDelay, sleep } from '../core/retry.js';
import { readEventsAfter, withCursor, type LoggedStockEvent } from './log.js';

/** Options of {@link followEventLog}. */
export interface FollowOptions {
  pool: pg.Pool;
  /** The follower's name in `cellar.event_cursors` (e.g. `topic:cellar.stock-events`). */
  consumer: string;
  /** Handles a batch in log order; the position moves past it only once this resolves. */
  handle: (events: LoggedStockEvent[]) => Promise<void>;
  log: Logger;
  /** Events per batch. Default 500. */
  batch?: number;
  /** Pause when the log has nothing new, ms. Default 250. */
  idleMs?: number;
}

/**
 * Follows the stock event log from a saved position, at least once: a batch is handled, then the position
 * saved; a failure (broker down, Postgres down) is logged and the same batch handled again after a backoff
 * (1 s to 30 s, with jitter). One process at a time follows a consumer; the others wait their turn. Returns
 * `stop()`, which waits for the batch in hand.
 */
export function followEventLog(o: FollowOptions): { stop: () => Promise<void> } {
  const batch = o.batch ?? 500;
  const idleMs = o.idleMs ?? 250;
  const stopping = new AbortController();
  const loop = (async () => {
    let failures = 0;
    while (!stopping.signal.aborted) {
      let got = 0;
      try {
        const held = await withCursor(o.pool, o.consumer, async (_tx, at) => {
          const { events, cursor } = await readEventsAfter(o.pool, at, batch);
          got = events.length;
          if (events.length) await o.handle(events);
          return cursor;
        });
        if (failures) o.log.info({ consumer: o.consumer }, 'stock event log follower recovered');
        failures = 0;
        if (!held) got = 0;
      } catch (err) {
        failures++;
        const delay = backoffDelay(failures, 1_000, 30_000);
        o.log.warn({ consumer: o.consumer, err: (err as Error).message, attempt: failures, retryInMs: Math.round(delay) }, 'following the stock event log failed; the same events are tried again');
        await sleep(delay, stopping.signal);
        continue;
      }
      if (got < batch) await sleep(idleMs, stopping.signal);
    }
  })();
  return {
    stop: async () => {
      stopping.abort();
      await loop;
    },
  };
}
