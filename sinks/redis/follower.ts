import type pg from 'pg';
import type { Redis } from 'ioredis';
import { CellarError, isRetriable } from '../../pipelines/core/errors.js';
import type { Logger } from '../../pipelines/core/logger.js';
import { withRetry } from '../../pipelines/core/retry.js';
import type { RegionalStock } from '../../schemas/records.js';
import { rebuildRedisFromPostgres } from './rebuild.js';
import type { RedisSnapshotSink } from './sink.js';

/** Options of {@link RedisFollower}. */
export interface RedisFollowerOptions {
  /** Writes each committed group's totals (version-guarded). Closed by {@link RedisFollower.stop}. */
  sink: RedisSnapshotSink;
  /** Cellar's Postgres: `cellar.regional_stock` is what Redis is rebuilt from. Left open. */
  pool: pg.Pool;
  /** The client rebuilds write with; give it a command timeout. Disconnected by {@link RedisFollower.stop}. */
  redis: Redis;
  /** Key prefix of the snapshots, as configured on the sink. Default `cellar`. */
  keyPrefix?: string;
  /** Where Redis is, for logs and reasons; never with its password. */
  address: string;
  log: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** Called with the reason whenever Redis is (still) behind, and with `undefined` once it is current. */
  onChange?: (behind: string | undefined) => void;
}

type State = 'live' | 'behind' | 'rebuilding';

/**
 * Keeps Redis following the totals a single writer commits to Postgres, without ever making that writer
 * wait on Redis: Postgres is the truth, Redis a cache of it. While Redis answers, each group's totals are
 * written after its commit. The first failure marks Redis behind (logged once) and later groups skip it;
 * in the background Redis is rebuilt from `cellar.regional_stock` (with backoff until it answers), the
 * totals committed while that rebuild ran are written on top (version-guarded), and only then do
 * per-group writes resume. So nothing committed during an outage is missed, and no older total replaces
 * a newer one: the rebuild's swap keeps newer live versions, and the sink's writes are guarded.
 */
export class RedisFollower {
  private state: State = 'behind';
  private why = 'not rebuilt from Postgres yet';
  /** Start of the current outage (ms), 0 while Redis is current. */
  private since = 0;
  /** Latest total per `region|sku` committed while a rebuild runs: written once it has swapped in. */
  private readonly pending = new Map<string, RegionalStock>();
  private readonly abort = new AbortController();
  private recovering: Promise<void> | undefined;

  constructor(private readonly o: RedisFollowerOptions) {}

  /** Why Redis is behind Postgres, or `undefined` while it is current. */
  get behind(): string | undefined {
    return this.state === 'live' ? undefined : this.why;
  }

  /**
   * Connects, then rebuilds Redis from Postgres in the background: the rebuild reads every total, so its
   * time grows with the state, and totals go on to Postgres meanwhile (Redis is `behind` until it is done;
   * totals committed during it are written after its swap). If Redis is unreachable (a retriable error),
   * resolves with Redis behind and goes on trying; a refusal retrying cannot fix (a wrong password, a
   * script error) is thrown, since a person must fix the configuration.
   */
  async start(): Promise<void> {
    try {
      await this.o.sink.connect();
    } catch (err) {
      if (!isRetriable(err)) throw err;
      this.fallBehind(err);
      return;
    }
    this.why = `rebuilding from Postgres after start (${this.o.address})`;
    if (!this.abort.signal.aborted) this.recovering ??= this.recover();
  }

  /** Hands over the totals of one group after its Postgres commit. Never throws, never retries. */
  async write(totals: RegionalStock[]): Promise<void> {
    if (this.state === 'rebuilding') {
      for (const t of totals) {
        const k = `${t.region}|${t.sku}`;
        const prev = this.pending.get(k);
        if (!prev || t.version > prev.version) this.pending.set(k, t);
      }
      return;
    }
    // Behind: the next rebuild starts after this commit, so it reads these totals from Postgres.
    if (this.state !== 'live' || totals.length === 0) return;
    try {
      const res = await this.o.sink.writeBatch(totals);
      if (res.reset) this.fallBehind(new CellarError('redis_reset', 'Redis lost its data', { retriable: true }));
    } catch (err) {
      this.fallBehind(err);
    }
  }

  /** Ends background rebuilds and closes both Redis clients. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.o.sink.close();
    this.o.redis.disconnect();
    await this.recovering;
  }

  private fallBehind(err: unknown): void {
    this.state = 'behind';
    const first = this.since === 0;
    if (first) this.since = Date.now();
    this.why = this.reason(err);
    if (first) {
      this.o.log.warn({ redis: this.o.address, err: (err as Error).message, retriable: isRetriable(err) },
        'Redis unavailable: totals go on to Postgres; Redis is stale until it answers again and is rebuilt from Postgres');
    }
    this.o.onChange?.(this.why);
    if (!this.abort.signal.aborted) this.recovering ??= this.recover();
  }

  private async recover(): Promise<void> {
    try {
      await withRetry(() => this.catchUp(), {
        minDelayMs: 200,
        maxDelayMs: 5_000,
        signal: this.abort.signal,
        shouldRetry: () => !this.abort.signal.aborted,
        onRetry: (err, attempt) => {
          const why = this.reason(err);
          if (!isRetriable(err) && why !== this.why) this.o.log.error({ redis: this.o.address, err: (err as Error).message }, 'rebuilding Redis from Postgres failed; retrying');
          else this.o.log.debug({ redis: this.o.address, err: (err as Error).message, attempt }, 'Redis still behind');
          this.why = why;
          this.o.onChange?.(why);
        },
      });
    } catch {
      // stopped
    } finally {
      this.recovering = undefined;
    }
  }

  /** One rebuild from Postgres, then the totals committed meanwhile; Redis is current when it resolves. */
  private async catchUp(): Promise<void> {
    if (this.abort.signal.aborted) throw new CellarError('stopped', 'Redis follower stopped', { retriable: false });
    // Every group whose write() came before this line had committed: the rebuild reads its totals.
    this.state = 'rebuilding';
    this.pending.clear();
    try {
      await this.o.sink.connect();
      const r = await rebuildRedisFromPostgres({ pool: this.o.pool, redis: this.o.redis, removeUnknownRegions: false, ...(this.o.keyPrefix ? { keyPrefix: this.o.keyPrefix } : {}) });
      await this.o.sink.writeBatch([]); // consumes the reset a new epoch reports: Redis was just rebuilt
      let caughtUp = 0;
      while (this.pending.size) {
        const batch = [...this.pending.values()];
        this.pending.clear();
        caughtUp += batch.length;
        if ((await this.o.sink.writeBatch(batch)).reset) throw new CellarError('redis_reset', 'Redis lost its data while it was rebuilt', { retriable: true });
      }
      const behindMs = this.since ? Date.now() - this.since : undefined;
      this.state = 'live';
      this.since = 0;
      this.o.log.info({ redis: this.o.address, ...r, writtenAfterRebuild: caughtUp, ...(behindMs === undefined ? {} : { behindMs }) }, 'Redis snapshots rebuilt from Postgres; Redis is current');
      this.o.onChange?.(undefined);
    } catch (err) {
      this.state = 'behind';
      this.pending.clear();
      throw err;
    }
  }

  private reason(err: unknown): string {
    const since = new Date(this.since || Date.now()).toISOString();
    return `${(err as Error).message} (${this.o.address}, since ${since}); rebuilt from Postgres once it answers`;
  }
}
