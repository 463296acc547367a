import type { Logger } from '../pipelines/core/logger.js';
import { mysqlUrl, postgresUrl } from './registry/connection.js';
import type { Supplier } from './registry/loader.js';
import { createMysqlCdcSource, type BinlogPosition } from './mysql-cdc/index.js';
import { createPostgresCdcSource } from './postgres-cdc/index.js';
import { lsnToNumber } from './postgres-cdc/lsn.js';
import type { SourceChange } from './source-change.js';
import type { SourceLag, SupplierSnapshot } from './supplier-rows.js';
import { binlogLag } from './mysql-cdc/lag.js';
import { postgresSlotLag } from './postgres-cdc/lag.js';
import { openMysqlRows } from './mysql-cdc/rows.js';
import { openPostgresRows } from './postgres-cdc/rows.js';
import { FeedSource, type FeedBatch, type FeedDelta, type FeedPosition, type FeedRejection, type FeedReport } from './feed/source.js';
import { PushSource, type InboxEntry } from './feed/push-source.js';
import type { RememberedRow } from './feed/snapshot-diff.js';

/** Source kinds Cellar reads natively (without Debezium). */
export const NATIVE_KINDS = ['postgres', 'mysql', 'mariadb', 'csv', 'http'] as const;
export type NativeKind = (typeof NATIVE_KINDS)[number];

/**
 * Where a native source resumes after a batch: a Postgres LSN (`X/Y` text; {@link compareCheckpoints} compares
 * it as the 64-bit number it is) or a binlog position (file/pos, and GTIDs where the server has them).
 */
export type SourceCheckpoint = { kind: 'postgres'; lsn: string } | { kind: 'mysql'; position: BinlogPosition } | { kind: 'feed'; feed: FeedPosition };

/** One committed source transaction (or snapshot chunk) of a native source. */
export interface ChangeBatch {
  /** Cellar's change records, in source order (capture encodes them with `toDebeziumJson`). */
  changes: SourceChange[];
  /** Where the source resumes once this batch is durable. */
  checkpoint: SourceCheckpoint;
  /** True for rows read by a snapshot. */
  snapshot: boolean;
  /** Set on the batch that ends a snapshot (every owed table read). */
  snapshotComplete?: boolean;
  /**
   * Feeds: the rows to remember (written in the transaction that writes the checkpoint), the lines that
   * could not become changes (dead-lettered there too), and what became of the file.
   */
  feed?: { delta?: FeedDelta; rejected: FeedRejection[]; report?: FeedReport };
}

/** Where a native source starts: from a checkpoint, owing a snapshot (all tables, or some). */
export interface StartFrom {
  /** The last durable checkpoint (a binlog source resumes from it; Postgres resumes from its slot). */
  checkpoint?: SourceCheckpoint;
  /** False (or absent) until a snapshot of every table completed: the source snapshots every table first. */
  snapshotDone?: boolean;
  /** With `snapshotDone`: tables to snapshot again before streaming on (`cellar resnapshot --table`). */
  snapshotTables?: string[];
}

/**
 * The contract every native source keeps, in every runtime: batches are handed to one handler, one at a
 * time, in source order; {@link NativeSource.ack} tells the source a batch's checkpoint is durable (only
 * then may it release what precedes it: a Postgres slot's WAL); a restart from the last acked checkpoint
 * delivers every later change again (at-least-once; the version guards make repeats harmless). `done`
 * resolves on stop() and rejects (retriable) when the stream stops on its own.
 */
export interface NativeSource {
  readonly kind: NativeKind;
  start(handler: (b: ChangeBatch) => Promise<void>, from: StartFrom): Promise<void>;
  ack(checkpoint: SourceCheckpoint): Promise<void>;
  stop(): Promise<void>;
  readonly done: Promise<void>;
}

/** Orders two checkpoints of one source: negative when `a` is before `b`. LSNs as numbers, binlog positions by file then offset. */
export function compareCheckpoints(a: SourceCheckpoint, b: SourceCheckpoint): number {
  if (a.kind === 'postgres' && b.kind === 'postgres') return Math.sign(lsnToNumber(a.lsn) - lsnToNumber(b.lsn));
  if (a.kind === 'feed' && b.kind === 'feed') return Math.sign(a.feed.seq - b.feed.seq);
  if (a.kind === 'mysql' && b.kind === 'mysql') {
    const n = (p: BinlogPosition) => Number(/\.(\d+)$/.exec(p.file)?.[1] ?? 0);
    return Math.sign(n(a.position) - n(b.position)) || Math.sign(a.position.pos - b.position.pos);
  }
  throw new Error(`checkpoints of two kinds of source: ${a.kind} and ${b.kind}`);
}

/** What Cellar reads of one source kind: its change stream and its current rows. */
export interface NativeSourceKind {
  /** The change stream behind {@link NativeSource}; `evictSlotHolder`: end another session holding the Postgres slot, as after a crash. */
  stream(supplier: Supplier, log: Logger, opts?: StreamOptions): NativeSource;
  /** Read-only access to the supplier's current rows (reconciliation). */
  rows(supplier: Supplier, log: Logger): Promise<SupplierSnapshot>;
  /** How far Cellar is behind the supplier's log (from `at`, Cellar's checkpoint, where the kind needs it). */
  lag(supplier: Supplier, at?: SourceCheckpoint): Promise<SourceLag | undefined>;
}

/** How a runtime starts a source: end another slot holder (Postgres); read the rows a feed's last file left (feeds). */
export interface StreamOptions {
  evictSlotHolder?: boolean;
  /** Feeds: the remembered rows (key → digest) of the last applied file, from `cellar.feed_rows` under the runtime's source id. */
  loadFeedRows?: () => Promise<Map<string, RememberedRow>>;
  /** Pushed feeds: the requests the API accepted for the supplier after an inbox id (`cellar.feed_inbox`). */
  readFeedInbox?: (afterId: number, limit: number) => Promise<InboxEntry[]>;
}

const tablesOf = (s: Supplier) => s.source.tables.map((t) => t.name);

/**
 * The one table from source kind to native reader, used by the embedded runtime, capture and
 * reconciliation alike.
 */
export const NATIVE_SOURCES: Record<NativeKind, NativeSourceKind> = {
  postgres: {
    stream: postgresSource,
    rows: (s, log) => openPostgresRows(postgresUrl(s), s.topicPrefix, tablesOf(s), log),
    lag: (s) => postgresSlotLag(postgresUrl(s), s.topicPrefix, tablesOf(s)),
  },
  mysql: { stream: (s, log) => binlogSource(s, log, 'mysql'), rows: (s, log) => openMysqlRows(mysqlUrl(s), s.topicPrefix, tablesOf(s), log), lag: binlogDistance },
  mariadb: { stream: (s, log) => binlogSource(s, log, 'mariadb'), rows: (s, log) => openMysqlRows(mysqlUrl(s), s.topicPrefix, tablesOf(s), log), lag: binlogDistance },
  csv: {
    stream: feedSource,
    rows: async (s) => {
      throw new Error(`${s.id}: a file feed's rows are the ones its last applied file left, kept in Cellar's database (pipelines/reconcile/feed-snapshot.ts reads them)`);
    },
    lag: async () => undefined,
  },
  http: {
    stream: pushSource,
    rows: async (s) => {
      throw new Error(`${s.id}: a pushed feed's rows are the ones its applied requests left, kept in Cellar's database (pipelines/reconcile/feed-snapshot.ts reads them)`);
    },
    lag: async () => undefined,
  },
};

/** A feed batch as the contract's batch: its checkpoint is the feed position; the rows it leaves and its refusals ride along. */
function feedBatch(b: FeedBatch): ChangeBatch {
  return {
    changes: b.changes, checkpoint: { kind: 'feed', feed: b.position }, snapshot: b.snapshot, ...(b.snapshotComplete ? { snapshotComplete: true } : {}),
    feed: { rejected: b.rejected, ...(b.delta ? { delta: b.delta } : {}), ...(b.report ? { report: b.report } : {}) },
  };
}

/** A supplier pushing to the API: its checkpoint is the last request applied. */
function pushSource(supplier: Supplier, log: Logger, opts: StreamOptions = {}): NativeSource {
  const table = supplier.source.tables[0]!;
  const reader = new PushSource({
    supplierId: supplier.id, topicPrefix: supplier.topicPrefix, table: table.name, key: table.key ?? [], push: supplier.source.push!,
    loadRows: opts.loadFeedRows ?? (async () => new Map()),
    readInbox: opts.readFeedInbox ?? (async () => []),
  }, log);
  return {
    kind: 'http',
    get done() {
      return reader.done;
    },
    start: (handler, from) => reader.start((b) => handler(feedBatch(b)), { ...(from.checkpoint?.kind === 'feed' ? { position: from.checkpoint.feed } : {}), snapshotDone: from.snapshotDone ?? false }),
    ack: async () => undefined,
    stop: () => reader.stop(),
  };
}

/** A file feed: its checkpoint is the last applied file; `ack` has nothing to tell (the commit holds the rows it left). */
function feedSource(supplier: Supplier, log: Logger, opts: StreamOptions = {}): NativeSource {
  const table = supplier.source.tables[0]!;
  const reader = new FeedSource({
    supplierId: supplier.id, topicPrefix: supplier.topicPrefix, table: table.name, key: table.key ?? [], feed: supplier.source.feed!,
    loadRows: opts.loadFeedRows ?? (async () => new Map()),
  }, log);
  return {
    kind: 'csv',
    get done() {
      return reader.done;
    },
    start: (handler, from) =>
      reader.start((b) => handler(feedBatch(b)), { ...(from.checkpoint?.kind === 'feed' ? { position: from.checkpoint.feed } : {}), snapshotDone: from.snapshotDone ?? false }),
    ack: async () => undefined,
    stop: () => reader.stop(),
  };
}

function binlogDistance(s: Supplier, at?: SourceCheckpoint): Promise<SourceLag | undefined> {
  return binlogLag(mysqlUrl(s), at?.kind === 'mysql' ? at.position : undefined);
}

/** Postgres: the slot keeps the position; `ack` confirms an LSN to it once the batch is durable. */
function postgresSource(supplier: Supplier, log: Logger, opts: { evictSlotHolder?: boolean } = {}): NativeSource {
  const reader = createPostgresCdcSource({ url: postgresUrl(supplier), topicPrefix: supplier.topicPrefix, tables: supplier.source.tables.map((t) => t.name) }, log);
  return {
    kind: 'postgres',
    get done() {
      return reader.done;
    },
    start: (handler, from) =>
      reader.start((b) => handler({ changes: b.changes, checkpoint: { kind: 'postgres', lsn: b.lsn }, snapshot: b.snapshot, ...(b.snapshotComplete ? { snapshotComplete: true } : {}) }), {
        snapshotDone: from.snapshotDone ?? false, ...(from.snapshotTables?.length ? { snapshotTables: from.snapshotTables } : {}), explicitConfirm: true, evictSlotHolder: opts.evictSlotHolder ?? true,
      }),
    ack: async (c) => {
      if (c.kind === 'postgres') await reader.confirm(c.lsn);
    },
    stop: () => reader.stop(),
  };
}

/** MySQL/MariaDB: the checkpoint is where a restart resumes; nothing to acknowledge at the server. */
function binlogSource(supplier: Supplier, log: Logger, kind: 'mysql' | 'mariadb'): NativeSource {
  const reader = createMysqlCdcSource({ url: mysqlUrl(supplier), topicPrefix: supplier.topicPrefix, tables: supplier.source.tables.map((t) => t.name) }, log);
  return {
    kind,
    get done() {
      return reader.done;
    },
    start: (handler, from) => {
      const resume = from.snapshotDone && from.checkpoint?.kind === 'mysql' ? { position: from.checkpoint.position, ...(from.snapshotTables?.length ? { snapshotTables: from.snapshotTables } : {}) } : {};
      return reader.start((b) => handler({ changes: b.changes, checkpoint: { kind: 'mysql', position: b.position }, snapshot: b.snapshot, ...(b.snapshotComplete ? { snapshotComplete: true } : {}) }), resume);
    },
    ack: async () => undefined,
    stop: () => reader.stop(),
  };
}

/** True when Cellar has a native reader for the supplier's source kind (a `csv` supplier: when it names its files in `source.feed`). */
export function hasNativeSource(supplier: Supplier): boolean {
  if (supplier.source.kind === 'csv') return supplier.source.feed !== undefined;
  if (supplier.source.kind === 'http') return supplier.source.push !== undefined;
  return (NATIVE_KINDS as readonly string[]).includes(supplier.source.kind);
}

/** True when reconciliation can read the supplier's current rows (databases; feeds: the rows they last sent, kept by Cellar). */
export function hasRowReader(supplier: Supplier): boolean {
  return hasNativeSource(supplier);
}

/** The supplier's native source, or undefined when its kind has none (Debezium captures it). */
export function createNativeSource(supplier: Supplier, log: Logger, opts?: StreamOptions): NativeSource | undefined {
  return hasNativeSource(supplier) ? NATIVE_SOURCES[supplier.source.kind as NativeKind].stream(supplier, log, opts) : undefined;
}
