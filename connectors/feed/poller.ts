import type { SourceInfo } from '../debezium/envelope.js';

/**
 * What both feed sources share: a check run at once and then every `everyMs` after the previous one ended
 * (or, given a function, after the delay it returns: a schedule's next time; never two at a time), `done` rejecting with the first error a check throws (the runtime then starts
 * the source again from its checkpoint), and a stop that lets a check in progress finish.
 */
export class Poller {
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> = Promise.resolve();
  private ended = false;
  private fail!: (err: unknown) => void;
  private finish!: () => void;
  /** Resolves on stop(); rejects with the error that ended the checks. */
  readonly done: Promise<void>;

  constructor(private readonly everyMs: number | (() => number)) {
    this.done = new Promise<void>((resolve, reject) => ((this.finish = resolve), (this.fail = reject)));
    this.done.catch(() => undefined);
  }

  /** True once stop() was called: a check stops handing over. */
  get stopped(): boolean {
    return this.ended;
  }

  start(check: () => Promise<void>): void {
    const tick = () => {
      if (this.ended) return;
      this.checking = check().then(
        () => {
          if (!this.ended) this.wait(tick, typeof this.everyMs === 'number' ? this.everyMs : this.everyMs());
        },
        (err: unknown) => this.fail(err),
      );
    };
    tick();
  }

  /** Runs `fn` after `ms`, in steps beyond setTimeout's 32-bit limit (about 24.8 days); Infinity never runs it. */
  private wait(fn: () => void, ms: number): void {
    const MAX = 2 ** 31 - 1;
    if (ms === Infinity || this.ended) return;
    this.timer = ms > MAX ? setTimeout(() => this.wait(fn, ms - MAX), MAX) : setTimeout(fn, ms);
  }

  async stop(): Promise<void> {
    this.ended = true;
    clearTimeout(this.timer);
    await this.checking.catch(() => undefined);
    this.finish();
  }
}

/** A feed's table (`feed.stock`) as the source block names it: connector `cellar-feed`, the supplier's topic prefix. */
export function feedInfo(topicPrefix: string, table: string): SourceInfo {
  const [db, ...rest] = table.split('.');
  return { connector: 'cellar-feed', name: topicPrefix, db: db!, table: rest.join('.') };
}
