import type { Logger } from '../../pipelines/core/logger.js';
import type { ColumnDef, SourceInfo } from '../debezium/envelope.js';
import { feedInfo, Poller } from './poller.js';
import { SourceChange } from '../source-change.js';
import type { PushConfig } from './config.js';
import type { PushedRow } from './push-body.js';
import { diffSnapshot, feedKey, rowHash, truncationGuard, type KeyedFeedRow, type RememberedRow } from './snapshot-diff.js';
import { deleteChange, rememberDelta, type FeedBatch, type FeedDelta, type FeedPosition } from './source.js';

/** One accepted request of a pushing supplier, as the API stored it (`cellar.feed_inbox`). */
export interface InboxEntry {
  id: number;
  mode: 'changes' | 'snapshot';
  rows: PushedRow[];
  receivedAtMs: number;
}

export interface PushSourceOptions {
  supplierId: string;
  topicPrefix: string;
  table: string;
  key: string[];
  push: PushConfig;
  /** The rows the supplier's applied requests left (key → digest and version), read at start. */
  loadRows: () => Promise<Map<string, RememberedRow>>;
  /** Accepted requests after `afterId`, oldest first, at most `limit`. */
  readInbox: (afterId: number, limit: number) => Promise<InboxEntry[]>;
}

/**
 * A supplier that pushes to the API: every `checkEveryMs` it takes the requests the API accepted, in arrival
 * order, each one batch. Changes are applied as sent (an upsert or a delete per row); a snapshot is compared
 * with the rows the last ones left, like a file (rows it lacks are deleted; a likely truncated one is held
 * back and skipped). A row's version is its own `_version`, else the time its request was applied (kept
 * increasing); a row older than the one remembered for its key is skipped. The position is the last request applied; its inbox rows go in that batch's transaction.
 */
export class PushSource {
  private position: FeedPosition = { seq: 0, rows: 0, inbox: 0 };
  private rows = new Map<string, RememberedRow>();
  private readonly poller: Poller;
  /** A snapshot is owed (first start, `cellar resnapshot`): there is nothing to read but the requests, so it completes at once. */
  private owed = false;
  private readonly info: SourceInfo;

  constructor(private readonly o: PushSourceOptions, private readonly log: Logger) {
    this.poller = new Poller(o.push.checkEveryMs);
    this.info = feedInfo(o.topicPrefix, o.table);
  }

  async start(handler: (b: FeedBatch) => Promise<void>, from: { position?: FeedPosition; snapshotDone?: boolean }): Promise<void> {
    this.rows = await this.o.loadRows();
    this.position = { inbox: 0, ...(from.position ?? { seq: 0, rows: this.rows.size }) };
    this.owed = !from.snapshotDone;
    this.poller.start(() => this.check(handler));
  }

  async stop(): Promise<void> {
    await this.poller.stop();
  }

  /** Resolves on stop(); rejects when a check failed (the folder, address or database could not be read). */
  get done(): Promise<void> {
    return this.poller.done;
  }

  private async check(handler: (b: FeedBatch) => Promise<void>): Promise<void> {
    if (this.owed) {
      await this.hand(handler, { changes: [], position: this.position, snapshot: true, snapshotComplete: true, rejected: [] });
      this.owed = false;
    }
    for (const e of await this.o.readInbox(this.position.inbox ?? 0, 20)) {
      if (this.poller.stopped) return;
      await this.apply(e, handler);
    }
  }

  private async apply(e: InboxEntry, handler: (b: FeedBatch) => Promise<void>): Promise<void> {
    const { key } = this.o;
    const name = `request ${e.id}`;
    const seq = Math.max(this.position.seq + 1, Date.now());
    // Rows the API kept for a snapshot's refused lines: they stay as last applied (never deleted as missing).
    const keep = new Set(e.rows.filter((r) => r.op === 'keep').map((r) => feedKey(r, key)));
    const keyed = e.rows.filter((r) => r.op !== 'keep').map((r) => ({ ...r, key: feedKey(r, key), hash: rowHash(r.row) }));
    let kept = 0;
    const columnNames = [...new Set([...key, ...keyed.flatMap((r) => Object.keys(r.row))])];
    const columns: ColumnDef[] = columnNames.map((n) => ({ name: n, type: 'string' }));
    const changes: SourceChange[] = [];
    const delta: FeedDelta = { upserts: [], deletes: [], inbox: { supplierId: this.o.supplierId, upTo: e.id } };
    let unchanged = 0;
    let stale = 0;
    // A row older than the remembered one (by the supplier's own versions) changes nothing: the aggregator
    // would ignore it, and remembering it would make a later snapshot compare with the wrong row.
    const current = (k: string, version: number) => {
      const had = this.rows.get(k);
      if (had && had.version > version) return void stale++;
      return true;
    };
    const upsert = (r: (typeof keyed)[number], version: number) => {
      if (!current(r.key, version)) return;
      changes.push(new SourceChange(this.info, columns, key, { op: this.rows.has(r.key) ? 'u' : 'c', before: null, after: r.row, tsMs: e.receivedAtMs, feedVersion: version, line: r.line, feedFile: name }));
      delta.upserts.push({ key: r.key, hash: r.hash, version, row: r.row });
    };
    const remove = (k: string, version: number) => {
      if (!current(k, version)) return;
      changes.push(deleteChange(this.info, columns, key, k, { tsMs: e.receivedAtMs, feedVersion: version, feedFile: name }));
      delta.deletes.push({ key: k, version });
    };
    if (e.mode === 'snapshot') {
      const diff = diffSnapshot(this.rows, keyed as KeyedFeedRow[]);
      const held = this.o.push.minRowsFraction > 0 ? truncationGuard(this.rows.size, keyed.length - diff.duplicates.length, this.o.push.minRowsFraction) : undefined;
      if (held) {
        this.log.warn({ supplier: this.o.supplierId, request: e.id, rows: keyed.length, lastRows: this.rows.size }, `pushed snapshot held back: ${held}`);
        return this.hand(handler, { changes: [], position: { ...this.position, inbox: e.id }, snapshot: false, rejected: [], delta: { upserts: [], deletes: [], inbox: delta.inbox! }, report: { file: name, rows: keyed.length, upserts: 0, deletes: 0, unchanged: 0, rejected: 0, held } });
      }
      // A supplier that versions its rows versions its snapshots too: what a snapshot lacks is deleted at its highest version.
      const own = keyed.filter((r) => r.version !== undefined).map((r) => r.version!);
      const deleteVersion = own.length ? Math.max(...own) : seq;
      for (const r of diff.upserts) upsert(r as (typeof keyed)[number], (r as (typeof keyed)[number]).version ?? seq);
      for (const k of diff.deletes) {
        if (keep.has(k)) kept++;
        else remove(k, deleteVersion);
      }
      unchanged = diff.unchanged;
    } else {
      for (const r of keyed) {
        if (r.op === 'delete') remove(r.key, r.version ?? seq);
        else upsert(r, r.version ?? seq);
      }
    }
    // Keys are unique within a request (the API refuses repeats; a snapshot's diff has each once).
    const rowsAfter = this.rows.size + delta.upserts.filter((u) => !this.rows.has(u.key)).length - delta.deletes.filter((d) => this.rows.has(d.key)).length;
    const upserts = delta.upserts.length;
    const deletes = delta.deletes.length;
    this.log.info({ supplier: this.o.supplierId, request: e.id, mode: e.mode, rows: keyed.length, upserts, deletes, unchanged, stale, kept }, 'pushed request read: its changes are handed over');
    await this.hand(handler, {
      changes, position: { seq, rows: rowsAfter, inbox: e.id }, snapshot: false, rejected: [], delta,
      report: { file: name, rows: keyed.length, upserts, deletes, unchanged: unchanged + stale, rejected: 0, ...(kept ? { kept } : {}) },
    });
    rememberDelta(this.rows, delta);
  }

  private async hand(handler: (b: FeedBatch) => Promise<void>, b: FeedBatch): Promise<void> {
    await handler(b);
    this.position = b.position;
  }
}
