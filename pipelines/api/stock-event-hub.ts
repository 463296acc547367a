import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import { currentCursor, parseCursor, readEventsAfter, type EventCursor, type LoggedStockEvent } from '../events/log.js';

/** Orders two log positions (`<xid>.<seq>`): negative when a is before b. */
export function compareCursors(a: EventCursor, b: EventCursor): number {
  const x = BigInt(a.xid) - BigInt(b.xid);
  if (x !== 0n) return x < 0n ? -1 : 1;
  const s = BigInt(a.seq) - BigInt(b.seq);
  return s === 0n ? 0 : s < 0n ? -1 : 1;
}

const POLL_MS = 250;
const BATCH = 500;

/**
 * Follows the stock event log (`cellar.stock_events`) for one API process while anyone listens: one read
 * every 250 ms, handed to every subscriber in log order. Its position lives in memory only: a client
 * resuming from an older position reads the gap from the log itself ({@link since}), which keeps every
 * event for the retention period.
 */
export class StockEventLogHub {
  private readonly subs = new Set<(e: LoggedStockEvent) => void>();
  private position: EventCursor | undefined;
  private starting: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly pool: pg.Pool, private readonly log: Logger) {}

  /** The position up to which subscribers have been handed events (set once {@link ready} resolved). */
  get last(): EventCursor {
    return this.position!;
  }

  /** Resolves once the hub has a position (the log's "now" when it started following). */
  ready(): Promise<void> {
    this.starting ??= currentCursor(this.pool).then((c) => {
      this.position = c;
      this.schedule();
    }).catch((err: unknown) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  /** Calls `fn` with every event after the current position until the returned function is called. */
  subscribe(fn: (e: LoggedStockEvent) => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }

  /**
   * The events after `from` up to `upTo` (inclusive) from the log, in order; `upTo` is a position the hub
   * has passed, so every event up to it is final and none is missing.
   */
  async since(from: EventCursor, upTo: EventCursor): Promise<LoggedStockEvent[]> {
    const out: LoggedStockEvent[] = [];
    let at = from;
    while (compareCursors(at, upTo) < 0) {
      const { events, cursor } = await readEventsAfter(this.pool, at, BATCH);
      for (const e of events) if (compareCursors(parseCursor(e.cursor), upTo) <= 0) out.push(e);
      if (events.length < BATCH || compareCursors(cursor, upTo) >= 0) break;
      at = cursor;
    }
    return out;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.poll(), POLL_MS);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    try {
      if (this.subs.size) {
        for (;;) {
          const { events, cursor } = await readEventsAfter(this.pool, this.position!, BATCH);
          for (const e of events) for (const fn of this.subs) fn(e);
          this.position = cursor;
          if (events.length < BATCH) break;
        }
      } else {
        // Nobody listens: keep up with the log without reading it (a later subscriber starts from now). A
        // subscriber that came during the read took the old position as its replay's end: keep it then.
        const now = await currentCursor(this.pool);
        if (!this.subs.size) this.position = maxCursor(this.position!, now);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'reading the stock event log for live clients failed; retrying');
    }
    this.schedule();
  }
}

const maxCursor = (a: EventCursor, b: EventCursor) => (compareCursors(a, b) >= 0 ? a : b);
