import type { Logger } from '../../pipelines/core/logger.js';
import type { ColumnDef, SourceInfo } from '../debezium/envelope.js';
import { feedInfo, Poller } from './poller.js';
import { msToNextRun } from '../../pipelines/core/cron.js';
import { SourceChange } from '../source-change.js';
import type { FeedConfig } from './config.js';
import { parseFeedCsv, type ParsedCsv } from './csv.js';
import { isXlsx, parseFeedSpreadsheet } from './spreadsheet.js';
import { currentFile, type FeedFile, type FeedFileId } from './fetch.js';
import { diffSnapshot, feedKey, MissingKeyError, PENDING_HASH, rowHash, rowsNamedByUnreadableLines, truncationGuard, type KeyedFeedRow, type RememberedRow } from './snapshot-diff.js';

/** Where a feed stands: the version its last applied file gave its rows, that file, and its row count. */
export interface FeedPosition {
  /** The version of the last applied file's rows (epoch ms when it was read, kept increasing). */
  seq: number;
  rows: number;
  file?: FeedFileId;
  /** Pushed feeds: the last request applied (`cellar.feed_inbox` id). */
  inbox?: number;
}

/**
 * The change a batch makes to the feed's remembered rows (`cellar.feed_rows`): written in the same
 * transaction as the batch's checkpoint, so what the next file is compared with is always what was applied.
 */
export interface FeedDelta {
  /** Rows new or changed: key, digest, version, and the values (kept for reconciliation). */
  upserts: Array<{ key: string; hash: string; version: number; row: Record<string, string | null> }>;
  /** Keys deleted, at a version (a remembered row newer than it stays). */
  deletes: Array<{ key: string; version: number }>;
  /** Pushed feeds: the supplier's accepted requests up to this one are applied, and removed from the inbox. */
  inbox?: { supplierId: string; upTo: number };
}

/** A line of a feed that could not become a change: dead-lettered with its file and line; the rest applies. */
export interface FeedRejection {
  reason: 'malformed_line' | 'missing_key' | 'duplicate_key';
  message: string;
  file: string;
  line: number;
  /** The line's text (cut at 500 characters). */
  text: string;
}

/** What a feed did with a file, for the supplier's health: applied (with counts) or held back (why). */
export interface FeedReport {
  file: string;
  rows: number;
  upserts: number;
  deletes: number;
  unchanged: number;
  rejected: number;
  /**
   * Rows the file lacks that one of its unreadable lines names by key: kept as last applied, not deleted
   * (the line was garbled, the row not dropped). Absent when none.
   */
  kept?: number;
  /** Set when the file was held back instead of applied. */
  held?: string;
}

/** A feed file's batch: its changes, the rows to remember, the lines refused, and the report. */
export interface FeedBatch {
  changes: SourceChange[];
  position: FeedPosition;
  snapshot: boolean;
  snapshotComplete?: boolean;
  delta?: FeedDelta;
  rejected: FeedRejection[];
  report?: FeedReport;
}

export interface FeedSourceOptions {
  supplierId: string;
  topicPrefix: string;
  /** The one table of the feed (`feed.stock`) and its key columns. */
  table: string;
  key: string[];
  feed: FeedConfig;
  /** The rows the last applied file left (key → digest and version), read from Cellar's database at start. */
  loadRows: () => Promise<Map<string, RememberedRow>>;
}

/**
 * A file feed: every `checkEveryMs` (or at each time of its `schedule`) it looks at the supplier's current file; a file not applied before
 * (by content hash) is parsed, compared with the rows the last applied one left, and handed over as one
 * batch of changes (new and changed rows as upserts, vanished keys as deletes), with the lines it could not
 * read as rejections. A file that would delete most of the stock is held back and reported. The rows'
 * version is the time the file was read (kept increasing), so a later file always wins over an earlier one.
 */
export class FeedSource {
  private position: FeedPosition = { seq: 0, rows: 0 };
  private rows = new Map<string, RememberedRow>();
  private heldHash: string | undefined;
  private force = false;
  /** Keys published but not checkpointed before a crash: the next file is diffed even if it is the applied one. */
  private pending = false;
  private readonly poller: Poller;
  private readonly info: SourceInfo;

  constructor(private readonly o: FeedSourceOptions, private readonly log: Logger) {
    const { schedule, timezone } = o.feed;
    this.poller = new Poller(schedule ? () => msToNextRun(schedule, timezone) : o.feed.checkEveryMs);
    this.info = feedInfo(o.topicPrefix, o.table);
  }

  /** Starts checking: at once, then every `checkEveryMs`. `snapshotDone` false: the next file is applied whole. */
  async start(handler: (b: FeedBatch) => Promise<void>, from: { position?: FeedPosition; snapshotDone?: boolean }): Promise<void> {
    this.rows = await this.o.loadRows();
    this.pending = [...this.rows.values()].some((r) => r.hash === PENDING_HASH);
    this.position = from.position ?? { seq: 0, rows: this.rows.size };
    this.force = !from.snapshotDone;
    this.poller.start(() => this.check(handler));
  }

  /** Stops checking; a file being handed over finishes first. */
  async stop(): Promise<void> {
    await this.poller.stop();
  }

  /** Resolves on stop(); rejects when a check failed (the folder, address or database could not be read). */
  get done(): Promise<void> {
    return this.poller.done;
  }

  private async check(handler: (b: FeedBatch) => Promise<void>): Promise<void> {
    const file = await currentFile(this.o.feed, this.position.file);
    if (this.poller.stopped) return;
    if (!file) {
      // Nothing to read yet: an owed snapshot is complete (there is nothing to snapshot).
      if (this.force) await this.hand(handler, { changes: [], position: this.position, snapshot: true, snapshotComplete: true, rejected: [] });
      return;
    }
    if (!this.force && ((file.hash === this.position.file?.hash && !this.pending) || file.hash === this.heldHash)) return;
    await this.apply(file, handler);
  }

  private async apply(file: FeedFile, handler: (b: FeedBatch) => Promise<void>): Promise<void> {
    const { feed, key } = this.o;
    let parsed: ParsedCsv;
    try {
      parsed = await readFeedFile(file.bytes, feed);
    } catch (err) {
      // A workbook that cannot be read (or lacks its sheet) is held back, named, like any unusable file.
      return this.hold(file, handler, `not a readable spreadsheet: ${(err as Error).message}`, 0);
    }
    const rejected: FeedRejection[] = parsed.errors.map((e) => ({ reason: 'malformed_line', message: `${file.name} line ${e.line}: ${e.message}`, file: file.name, line: e.line, text: e.text }));
    const missing = key.filter((k) => !parsed.header.includes(k));
    if (missing.length) return this.hold(file, handler, `the header has no key column ${missing.map((m) => `"${m}"`).join(', ')} (header: ${parsed.header.join(', ') || 'empty'})`, 0);
    const keyed: KeyedFeedRow[] = [];
    for (const r of parsed.rows) {
      try {
        keyed.push({ ...r, key: feedKey(r, key), hash: rowHash(r.row) });
      } catch (err) {
        if (!(err instanceof MissingKeyError)) throw err;
        rejected.push({ reason: 'missing_key', message: `${file.name} ${err.message}`, file: file.name, line: r.line, text: textOf(r.row) });
      }
    }
    const diff = diffSnapshot(this.rows, keyed);
    const byLine = new Map(keyed.map((k) => [k.line, k]));
    for (const d of diff.duplicates) {
      const r = byLine.get(d.line)!;
      rejected.push({ reason: 'duplicate_key', message: `${file.name} line ${d.line}: key ${d.key} already on line ${d.firstLine}; the first one counts`, file: file.name, line: d.line, text: textOf(r.row) });
    }
    const unique = keyed.length - diff.duplicates.length;
    const guard = feed.minRowsFraction > 0 ? truncationGuard(this.rows.size, unique, feed.minRowsFraction) : undefined;
    if (guard) return this.hold(file, handler, guard, unique);
    const seen = new Set<string>();
    const upserts = this.force ? keyed.filter((r) => !seen.has(r.key) && !!seen.add(r.key)) : diff.upserts;
    const seq = Math.max(this.position.seq + 1, Date.now());
    const columns: ColumnDef[] = parsed.header.map((name) => ({ name, type: 'string' }));
    const changes: SourceChange[] = [];
    for (const r of upserts) {
      const op = this.force ? 'r' : this.rows.has(r.key) ? 'u' : 'c';
      changes.push(new SourceChange(this.info, columns, key, { op, before: null, after: r.row, tsMs: file.mtimeMs, feedVersion: seq, line: r.line, feedFile: file.name }));
    }
    // A garbled line of a row must not delete that row: it stays as the last applied file left it.
    const kept = rowsNamedByUnreadableLines(diff.deletes, parsed.header, key, parsed.errors, parsed.delimiter);
    const deletes = kept.size ? diff.deletes.filter((k) => !kept.has(k)) : diff.deletes;
    if (kept.size) this.log.warn({ supplier: this.o.supplierId, file: file.name, kept: kept.size, lines: [...kept.values()].slice(0, 20) }, 'feed rows kept as last applied: the file has no readable line for them, but a line it could not read names them');
    for (const k of deletes) changes.push(deleteChange(this.info, columns, key, k, { tsMs: file.mtimeMs, feedVersion: seq, feedFile: file.name }));
    const report: FeedReport = { file: file.name, rows: unique, upserts: upserts.length, deletes: deletes.length, unchanged: this.force ? 0 : diff.unchanged, rejected: rejected.length, ...(kept.size ? { kept: kept.size } : {}) };
    const position: FeedPosition = { seq, rows: unique, file: { hash: file.hash, name: file.name, ...(file.etag ? { etag: file.etag } : {}), ...(file.lastModified ? { lastModified: file.lastModified } : {}) } };
    const delta: FeedDelta = { upserts: upserts.map((r) => ({ key: r.key, hash: r.hash, version: seq, row: r.row })), deletes: deletes.map((k) => ({ key: k, version: seq })) };
    const snapshot = this.force;
    await this.hand(handler, { changes, position, snapshot, ...(snapshot ? { snapshotComplete: true } : {}), delta, rejected, report });
    rememberDelta(this.rows, delta);
    this.pending = false;
    this.log.info({ supplier: this.o.supplierId, ...report, encoding: parsed.encoding, delimiter: parsed.delimiter }, 'feed file read: its changes are handed over');
  }

  /** Reports a file held back (once per file): nothing of it is applied, the last applied one stays. */
  private async hold(file: FeedFile, handler: (b: FeedBatch) => Promise<void>, why: string, rows: number): Promise<void> {
    this.heldHash = file.hash;
    this.log.warn({ supplier: this.o.supplierId, file: file.name, rows, lastAppliedRows: this.rows.size }, `feed file held back: ${why}`);
    await this.hand(handler, { changes: [], position: this.position, snapshot: false, rejected: [], report: { file: file.name, rows, upserts: 0, deletes: 0, unchanged: 0, rejected: 0, held: why } });
  }

  private async hand(handler: (b: FeedBatch) => Promise<void>, b: FeedBatch): Promise<void> {
    await handler(b);
    this.position = b.position;
    if (b.snapshotComplete) this.force = false;
  }
}

/** True when a reader's status detail says its feed holds a file (or pushed snapshot) back: the supplier's health is then failing. */
export function isHeldBack(detail: string | null | undefined): boolean {
  return !!detail && /^(file|request) /.test(detail) && detail.includes(' held back: ');
}

/** A feed report as one line for the supplier's health (`detail` of its reader's status). */
export function describeFeedReport(r: FeedReport): string {
  const what = r.file.startsWith('request ') ? r.file : `file ${r.file}`;
  if (r.held) return `${what} held back: ${r.held}`;
  const kept = r.kept ? `; ${r.kept} kept as last applied (their lines were refused)` : '';
  return `last ${what}: ${r.rows} rows, ${r.upserts} new or changed, ${r.deletes} deleted, ${r.unchanged} unchanged, ${r.rejected} dead-lettered${kept}`;
}

/** A feed file's rows: an .xlsx workbook (told by its content) or CSV, read with the feed's settings. */
export async function readFeedFile(bytes: Buffer, feed: FeedConfig): Promise<ParsedCsv> {
  if (isXlsx(bytes)) return parseFeedSpreadsheet(bytes, feed.sheet ? { sheet: feed.sheet } : {});
  return parseFeedCsv(bytes, { ...(feed.delimiter ? { delimiter: feed.delimiter } : {}), ...(feed.encoding ? { encoding: feed.encoding } : {}), decimalComma: feed.decimalComma });
}

/**
 * The delete of a remembered key: the key columns' values (from the key's JSON array), every other column
 * null, as the normalizer reads a delete's before image.
 */
export function deleteChange(info: SourceInfo, columns: ColumnDef[], keyColumns: string[], key: string, at: { tsMs: number; feedVersion: number; feedFile: string }): SourceChange {
  const values = JSON.parse(key) as string[];
  const before: Record<string, string | null> = Object.fromEntries(columns.map((c) => [c.name, null]));
  keyColumns.forEach((c, i) => (before[c] = values[i] ?? null));
  return new SourceChange(info, columns, keyColumns, { op: 'd', before, after: null, tsMs: at.tsMs, feedVersion: at.feedVersion, line: 0, feedFile: at.feedFile });
}

/** Updates a feed's remembered rows with what a handed-over batch changed (its delta is already durable). */
export function rememberDelta(rows: Map<string, RememberedRow>, delta: FeedDelta): void {
  for (const u of delta.upserts) rows.set(u.key, { hash: u.hash, version: u.version });
  for (const d of delta.deletes) rows.delete(d.key);
}

/** A row's values as one line of text, for a dead letter. */
function textOf(row: Record<string, string | null>): string {
  return Object.values(row).map((v) => v ?? '').join(',').slice(0, 500);
}
