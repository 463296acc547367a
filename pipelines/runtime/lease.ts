import { randomBytes } from 'node:crypto';
import { pgConfig } from '../core/pg-tls.js';
import { hostname } from 'node:os';
import pg from 'pg';
import { query, type Statement } from '../core/pg.js';
import { CellarError, fromPgError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { sleep } from '../core/retry.js';

/** The lease row as a commit's fence reads it. */
export interface FenceRow {
  holder: string;
  epoch: string;
}

/** Who holds a lease, as `cellar.runtime_leases` records it. */
export interface LeaseRow {
  name: string;
  holder: string;
  epoch: number;
  host: string;
  pid: number;
  backendPid: number | null;
  sessionTag: string | null;
  acquiredAt: Date;
  renewedAt: Date;
}

/** How often the holder records that it is alive (`renewed_at`, for operators), ms. */
const RENEW_MS = 5_000;

const describeHolder = (r: LeaseRow) =>
  `${r.host} pid ${r.pid} (since ${r.acquiredAt.toISOString()}, last seen ${r.renewedAt.toISOString()})`;

async function readLease(q: pg.Pool | pg.PoolClient | pg.Client, name: string): Promise<LeaseRow | undefined> {
  const { rows } = await q.query<{ name: string; holder: string; epoch: string; host: string; pid: number; backend_pid: number | null; session_tag: string | null; acquired_at: Date; renewed_at: Date }>(
    'SELECT name, holder, epoch, host, pid, backend_pid, session_tag, acquired_at, renewed_at FROM cellar.runtime_leases WHERE name = $1',
    [name],
  );
  const r = rows[0];
  return r && { name: r.name, holder: r.holder, epoch: Number(r.epoch), host: r.host, pid: r.pid, backendPid: r.backend_pid, sessionTag: r.session_tag, acquiredAt: r.acquired_at, renewedAt: r.renewed_at };
}

/**
 * The single-writer lease of a process that writes for suppliers (`embedded` for the embedded runtime,
 * `capture:<supplier>` for a capture). Held through a session advisory lock on a connection of its own:
 * Postgres releases it the moment the process dies, so a restart after a crash takes it at once, while a
 * second process started beside a live (or frozen) one is refused, naming the holder. `takeOver` ends the
 * holder's lock session first. Every new holder increments `epoch`; {@link RuntimeLease.fence}, run inside
 * each commit, refuses to let a holder that lost the lease (frozen, then woken after a takeover) commit.
 */
export class RuntimeLease {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private lostWith: Error | undefined;
  private onLost: ((err: Error) => void) | undefined;
  /** Settles when the lease is lost (another holder took over); the process must stop writing. */
  readonly lost: Promise<Error>;

  private constructor(
    private readonly url: string,
    readonly name: string,
    readonly holder: string,
    private readonly log: Logger,
    private readonly tag: string,
    public epoch = 0,
  ) {
    this.lost = new Promise((resolve) => (this.onLost = resolve));
  }

  /**
   * A tag for the application_name of every Postgres session of this process (see `sessionTag` of
   * {@link RuntimeLease.acquire}): a takeover ends them all.
   */
  static sessionTag(role: string): string {
    return `cellar-${role} ${process.pid}-${randomBytes(4).toString('hex')}`;
  }

  /**
   * Takes the lease, or throws a non-retriable error naming its live holder and how to take over.
   * `sessionTag` is the application_name of all this process' sessions to Cellar's database.
   */
  static async acquire(url: string, name: string, log: Logger, opts: { takeOver?: boolean; sessionTag?: string } = {}): Promise<RuntimeLease> {
    const tag = opts.sessionTag ?? RuntimeLease.sessionTag(name);
    const lease = new RuntimeLease(url, name, `${hostname()}:${tag}`, log, tag);
    await lease.lock(opts.takeOver ?? false, true);
    lease.timer = setInterval(() => void lease.renew(), RENEW_MS);
    lease.timer.unref();
    return lease;
  }

  private async connect(): Promise<pg.Client> {
    const c = new pg.Client(pgConfig(this.url, { application_name: this.tag, connectionTimeoutMillis: 5_000 }));
    c.on('error', () => {
      if (this.client === c) this.client = undefined; // the next renew reconnects and checks the epoch
    });
    try {
      await c.connect();
    } catch (err) {
      throw fromPgError(err, `taking the ${this.name} lease: connecting`);
    }
    return c;
  }

  private async lock(takeOver: boolean, first: boolean): Promise<void> {
    const c = await this.connect();
    try {
      const tryLock = async () => (await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [`cellar-lease:${this.name}`])).rows[0]!.ok;
      let got = await tryLock();
      if (!got && takeOver && first) {
        const held = await readLease(c, this.name);
        if (held) {
          // Every session of the holder: it may be frozen inside a commit that holds the lease row.
          this.log.warn({ lease: this.name, holder: describeHolder(held) }, 'taking the lease over: ending the holder\'s sessions');
          await c.query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE pid <> pg_backend_pid() AND (pid = $1 OR (application_name = $2 AND $2 IS NOT NULL))`,
            [held.backendPid ?? -1, held.sessionTag],
          );
        }
        for (let i = 0; i < 50 && !got; i++) {
          await sleep(100);
          got = await tryLock();
        }
      }
      if (!got) {
        const held = await readLease(c, this.name);
        if (!first) throw this.takenOver(held);
        throw new CellarError(
          'lease_held',
          `another Cellar process writes for the same suppliers: the ${this.name} lease is held by ${held ? describeHolder(held) : 'another process'}. Stop that process, or start this one with --take-over (CELLAR_TAKE_OVER=1) to end its database session; it then cannot commit anything more.`,
          { retriable: false },
        );
      }
      if (first) {
        // A commit of the old holder in flight holds the row: wait for it, not forever.
        await c.query(`SET lock_timeout = '15s'`);
        const { rows } = await c.query<{ epoch: string }>(
          `INSERT INTO cellar.runtime_leases AS l (name, holder, epoch, host, pid, backend_pid, session_tag) VALUES ($1, $2, 1, $3, $4, pg_backend_pid(), $5)
           ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = l.epoch + 1, host = excluded.host, pid = excluded.pid,
             backend_pid = excluded.backend_pid, session_tag = excluded.session_tag, acquired_at = now(), renewed_at = now()
           RETURNING epoch`,
          [this.name, this.holder, hostname(), process.pid, this.tag],
        );
        this.epoch = Number(rows[0]!.epoch);
      } else {
        // Back after a lost connection: still ours only if nobody took over meanwhile.
        const cur = await readLease(c, this.name);
        if (!cur || cur.holder !== this.holder || cur.epoch !== this.epoch) throw this.takenOver(cur);
        await c.query('UPDATE cellar.runtime_leases SET backend_pid = pg_backend_pid(), renewed_at = now() WHERE name = $1', [this.name]);
      }
      this.client = c;
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err instanceof CellarError ? err : fromPgError(err, `taking the ${this.name} lease`);
    }
  }

  /** The error of a holder that finds the lease in another process' hands. */
  private takenOver(by: LeaseRow | undefined): CellarError {
    return new CellarError('lease_lost', `the ${this.name} lease was taken over by ${by ? describeHolder(by) : 'another process'}; this process stops writing`, { retriable: false });
  }

  private async renew(): Promise<void> {
    if (this.closed || this.lostWith) return;
    try {
      if (!this.client) await this.lock(false, false);
      else await this.client.query('UPDATE cellar.runtime_leases SET renewed_at = now() WHERE name = $1 AND holder = $2', [this.name, this.holder]);
    } catch (err) {
      if (err instanceof CellarError && !err.retriable) this.lose(err);
      // else: Cellar's Postgres is unreachable; commits wait for it too, and the next renew tries again.
    }
  }

  private lose(err: Error): void {
    if (this.lostWith) return;
    this.lostWith = err;
    this.log.error({ lease: this.name, err: err.message }, 'lease lost');
    this.onLost?.(err);
  }

  /**
   * Inside a commit transaction: holds the lease row (a takeover waits for this commit) and throws a
   * non-retriable error when this process is no longer the holder.
   */
  async fence(tx: pg.PoolClient): Promise<void> {
    const st = this.fenceRead();
    this.checkFence((await query<FenceRow>(tx, 'checking the lease', st.text, st.values)).rows);
  }

  /**
   * {@link RuntimeLease.fence} as a read to run with a commit's writes (see queryAll): the rows it returns
   * go to {@link RuntimeLease.checkFence} before the commit.
   */
  fenceRead(): Statement {
    if (this.lostWith) throw this.lostWith;
    return { text: 'SELECT holder, epoch FROM cellar.runtime_leases WHERE name = $1 FOR SHARE', values: [this.name] };
  }

  /** Throws (and marks the lease lost) unless the rows of {@link RuntimeLease.fenceRead} name this holder. */
  checkFence(rows: FenceRow[]): void {
    const r = rows[0];
    if (!r || r.holder !== this.holder || Number(r.epoch) !== this.epoch) {
      const err = new CellarError('lease_lost', `the ${this.name} lease now belongs to another process (epoch ${r?.epoch ?? '?'}, ours ${this.epoch}); this commit is refused and this process stops writing`, { retriable: false });
      this.lose(err);
      throw err;
    }
  }

  /** Releases the lease (safe twice). */
  async release(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined); // ending the session releases the advisory lock
  }
}
