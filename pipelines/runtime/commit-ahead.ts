import type pg from 'pg';
import type { HistoryEntry } from '../aggregate/aggregator.js';
import { beginTransaction, inTransaction, query, type OpenTransaction } from '../core/pg.js';
import { HISTORY_SAVEPOINT, saveHistory } from '../state/history.js';

/** A group's transaction opened ahead, its stock history written, and the transaction id it took. */
export interface OpenedAhead {
  tx: OpenTransaction;
  xid: bigint;
}

/** Writes the rest of a group in its transaction; `historyWritten`: its history is in already. */
export type GroupWrite = (tx: pg.PoolClient, historyWritten: boolean) => Promise<void>;

const TAKE_XID = 'SELECT pg_current_xact_id()::text AS xid';

/** The transaction id in the rows of {@link TAKE_XID}. */
const xidOf = (rows: pg.QueryResultRow[]): bigint => BigInt((rows[0] as { xid: string }).xid);

const takeXid = async (c: pg.PoolClient): Promise<bigint> => xidOf((await query(c, 'taking a transaction id', TAKE_XID)).rows);

/**
 * Group transactions whose stock history is written ahead. A group's transaction is opened as soon as the
 * group is prepared, while the previous group commits, and its history (one row per effective change, the
 * largest write of a group, rows no other transaction touches) goes in then, off the serial commit path;
 * the rest of the group is written in the same transaction once the previous group has committed, so the
 * group is still one transaction.
 *
 * Order: the stock event log is read in transaction id order, so group transactions must take their ids in
 * commit order. Every group transaction takes its id first. One opened ahead takes it only once the previous
 * group's transaction has taken its own, and is used only if its id is above that of the transaction that
 * committed the previous group (a retried commit takes a new id); otherwise it is abandoned and the group
 * is written again whole, in a new transaction. Any failure on the way ahead also falls back to that.
 */
export class CommitAhead {
  private lastCommittedXid = -1n;
  /** Resolves once the transaction of the group committing now has taken its id. */
  private idTaken: Promise<void> = Promise.resolve();
  private readonly open = new Set<OpenTransaction>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly retry: <T>(what: string, fn: () => Promise<T>) => Promise<T>,
    /** Told the path of each committed group (the runtime counts them in cellar_group_commits_total). */
    private readonly onCommitted?: (path: 'ahead' | 'whole') => void,
  ) {}

  /**
   * Opens the transaction of a group just prepared and writes its history (if any: the transaction and its
   * id are taken off the serial path even without); undefined when anything failed (the group is then
   * written whole). Never rejects.
   */
  async ahead(history: HistoryEntry[]): Promise<OpenedAhead | undefined> {
    const previous = this.idTaken;
    let tx: OpenTransaction | undefined;
    try {
      await previous;
      // BEGIN, the id and the history's savepoint in one round trip.
      tx = await beginTransaction(this.pool, 'writing stock history ahead', history.length ? `${TAKE_XID}; ${HISTORY_SAVEPOINT}` : TAKE_XID);
      this.open.add(tx);
      const xid = xidOf(tx.opened[0]!);
      if (history.length) await tx.run('writing stock history ahead', (c) => saveHistory(c, history, { savepointTaken: true }));
      return { tx, xid };
    } catch {
      await this.abandon(tx);
      return undefined;
    }
  }

  /**
   * Commits a group: in its transaction opened ahead when that is still in order, otherwise whole in a new
   * transaction, retried (`write` must be idempotent, as a commit whose outcome was unknown is written again).
   */
  async commit(ahead: Promise<OpenedAhead | undefined> | undefined, write: GroupWrite): Promise<void> {
    let idTaken!: () => void;
    // Set before anything is awaited: the next group's ahead() waits for this group's id.
    this.idTaken = new Promise<void>((r) => (idTaken = r));
    try {
      const a = await ahead;
      if (a && a.xid > this.lastCommittedXid) {
        idTaken();
        try {
          await a.tx.run('committing embedded batch', (c) => write(c, true));
          await a.tx.commit('committing embedded batch');
          this.open.delete(a.tx);
          this.lastCommittedXid = a.xid;
          this.onCommitted?.('ahead');
          return;
        } catch {
          // Rolled back: written again whole below (a lasting error shows there).
        }
      }
      await this.abandon(a?.tx);
      await this.retry('committing batch', () =>
        inTransaction(this.pool, 'committing embedded batch', async (tx) => {
          const xid = await takeXid(tx);
          idTaken();
          await write(tx, false);
          return xid;
        }).then((xid) => {
          this.lastCommittedXid = xid;
        }),
      );
      this.onCommitted?.('whole');
    } finally {
      idTaken();
    }
  }

  /** Rolls back every transaction opened ahead and not committed (at stop: their groups were not committed). */
  async abandonAll(): Promise<void> {
    await Promise.all([...this.open].map((tx) => this.abandon(tx)));
  }

  private async abandon(tx: OpenTransaction | undefined): Promise<void> {
    if (!tx) return;
    this.open.delete(tx);
    await tx.abandon();
  }
}
