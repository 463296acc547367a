import mysql from 'mysql2/promise';
import ZongJi, { type AnyBinlogEvent, type BinlogEvent, type RowData, type TableMapEntry } from '@vlasky/zongji';
import { CellarError } from '../../pipelines/core/errors.js';
import type { Logger } from '../../pipelines/core/logger.js';
import { debeziumJsonMessage, debeziumTopic, rowImage, rowValues, type ColumnDef, type SourceInfo } from '../debezium/envelope.js';
import { SourceChange } from '../source-change.js';
import { parseMysqlCdcConfig, type MysqlCdcConfig } from './config.js';
import { connectType, fromMysqlError, jsonValue } from './values.js';
import { binlogStatus } from './position.js';
import { readSnapshot, type SnapshotSource } from './snapshot.js';

export { fromMysqlError } from './values.js';

/**
 * A binlog position: file name and byte offset, and, when the server has GTIDs, the executed GTID set
 * (MySQL, `uuid:1-27,…`) or GTID position (MariaDB, `0-1-1234`) at that point. With `gtids`, a restart
 * resumes by GTID (config `resumeBy`), which stays valid across a failover to another server of the
 * same topology; file/pos are then informational.
 */
export interface BinlogPosition { file: string; pos: number; gtids?: string }

/** Cellar's change records of one committed source transaction (or one snapshot chunk). */
export interface MysqlCdcBatch {
  changes: SourceChange[];
  /**
   * Where to resume after this batch (the end of its commit event, or the snapshot's position): pass it
   * back as `start(handler, { position })` once the batch is durably handled. Batches may be empty: the
   * position also advances past transactions that touched no captured table.
   */
  position: BinlogPosition;
  /** True for rows read by the initial snapshot. */
  snapshot: boolean;
  /** Set on the (empty) batch that follows the last snapshot rows: the snapshot is complete. */
  snapshotComplete?: boolean;
}

/** Called with each batch, one at a time; the next batch is delivered only after this resolves. */
export type MysqlCdcHandler = (batch: MysqlCdcBatch) => Promise<void>;

export type Message = SourceChange;
type Op = 'c' | 'u' | 'd' | 'r' | 't';

/** What the reader knows of a captured table. */
export interface TableMeta { info: SourceInfo; topic: string; columns: ColumnDef[]; key: string[]; quoted: string }

/** Without captured changes, an empty batch still moves the resume position on at most this often. */
const IDLE_ADVANCE_MS = 10_000;
/** Queued streamed messages above which the binlog connection is paused until the handler catches up. */
const HIGH_WATER = 20_000;

/**
 * Native MySQL/MariaDB CDC reader: reads the ROW binlog as a replica (zongji) and emits the change events
 * Debezium's MySQL connector emits (JSON converter with schemas, topics `<prefix>.<database>.<table>`).
 *
 * Without a position it first reads the tables' existing rows in one consistent snapshot (`op: r`, at the
 * binlog position matching the snapshot), then streams from that position, so rows committed during the
 * snapshot arrive exactly once. Each committed transaction is one batch; batches are handed over one at
 * a time and a batch's `position` is where a restart resumes without re-delivering it.
 */
export class MysqlCdcSource {
  readonly cfg: MysqlCdcConfig;
  /** Settles when streaming ends: resolves on stop(), rejects with a CellarError on a stream or handler failure. */
  readonly done: Promise<void>;
  private readonly tables = new Map<string, TableMeta>();
  private mariadb = false;
  private zongji: ZongJi | undefined;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private settle!: (err?: CellarError) => void;

  constructor(config: unknown, private readonly log: Logger) {
    this.cfg = parseMysqlCdcConfig(config);
    this.done = new Promise<void>((resolve, reject) => {
      this.settle = (err) => (err ? reject(err) : resolve());
    });
    this.done.catch(() => undefined);
  }

  private connect(): Promise<mysql.Connection> {
    return mysql.createConnection({ ...this.cfg.connection, timezone: 'Z', supportBigNumbers: true });
  }

  private async admin<T>(what: string, fn: (c: mysql.Connection) => Promise<T>): Promise<T> {
    let c: mysql.Connection | undefined;
    try {
      c = await this.connect();
      await c.query("SET SESSION time_zone = '+00:00'");
      return await fn(c);
    } catch (err) {
      throw fromMysqlError(err, what);
    } finally {
      await c?.end().catch(() => undefined);
    }
  }

  /** Reads the captured tables' columns and keys only (read-only; no binlog or grant checks): for {@link rowMessage}. */
  async inspect(): Promise<void> {
    await this.admin('reading table metadata', async (c) => {
      const [[v]] = await c.query<mysql.RowDataPacket[]>('SELECT VERSION() AS version');
      this.mariadb = /mariadb/i.test(String(v!.version));
      await this.describeTables(c);
    });
  }

  /** Primary key columns of a captured table (after prepare() or inspect()). */
  keyColumns(table: string): string[] {
    return this.tables.get(table)?.key ?? [];
  }

  /**
   * A row of a captured table (as mysql2 returns it) as the Debezium message a snapshot would emit, or a
   * delete of it. `cellarVersion` overrides the version (repairs).
   */
  rowMessage(table: string, op: 'r' | 'd', row: RowData, opts: { position: BinlogPosition; tsMs: number; cellarVersion?: string }): { topic: string; key: string | null; value: string } {
    const meta = this.tables.get(table);
    if (!meta) throw new CellarError('cdc_table', `table ${table} is not captured by this reader`);
    const conv = (r: RowData) => Object.fromEntries(meta.columns.map((c) => [c.name, jsonValue(r[c.name], c.type)]));
    const m = debeziumJsonMessage(meta.info, meta.columns, meta.key, {
      op, before: op === 'd' ? conv(row) : null, after: op === 'r' ? conv(row) : null, tsMs: opts.tsMs, file: opts.position.file, pos: opts.position.pos, row: 0, gtid: null, snapshot: op === 'r' ? 'true' : 'false',
      ...(opts.cellarVersion !== undefined ? { cellarVersion: opts.cellarVersion } : {}),
    });
    return { topic: debeziumTopic(meta.info), key: m.key, value: m.value };
  }

  /** The key and row values a snapshot message of `row` carries, without building the message. */
  rowImage(table: string, row: RowData): { key: Record<string, unknown>; after: Record<string, unknown> } {
    const meta = this.tables.get(table);
    if (!meta) throw new CellarError('cdc_table', `table ${table} is not captured by this reader`);
    return rowImage(meta.columns, meta.key, row, jsonValue);
  }

  /** Checks the binlog settings, the user's grants and the captured tables; reads their columns and keys. */
  async prepare(): Promise<void> {
    await this.admin('preparing MySQL CDC', async (c) => {
      const [[v]] = await c.query<mysql.RowDataPacket[]>('SELECT @@GLOBAL.binlog_format AS fmt, @@GLOBAL.log_bin AS logBin, @@GLOBAL.binlog_row_image AS image, VERSION() AS version');
      this.mariadb = /mariadb/i.test(String(v!.version));
      if (Number(v!.logBin) !== 1) throw new CellarError('cdc_log_bin', 'the binary log is off on the supplier server (log_bin): start it with --log-bin and --binlog-format=ROW');
      if (String(v!.fmt).toUpperCase() !== 'ROW') throw new CellarError('cdc_binlog_format', `binlog_format is "${v!.fmt}" on the supplier server; set binlog_format=ROW (--binlog-format=ROW or SET GLOBAL binlog_format='ROW')`);
      if (String(v!.image).toUpperCase() !== 'FULL') throw new CellarError('cdc_binlog_row_image', `binlog_row_image is "${v!.image}"; set binlog_row_image=FULL so updates and deletes carry whole rows`);
      const [grantRows] = await c.query<mysql.RowDataPacket[]>('SHOW GRANTS');
      const global = grantRows.map((r) => String(Object.values(r)[0])).filter((g) => /\bON \*\.\* TO\b/i.test(g)).join(' ').toUpperCase();
      const all = /\b(ALL PRIVILEGES|SUPER)\b/.test(global);
      const missing = [all || global.includes('REPLICATION SLAVE') ? '' : 'REPLICATION SLAVE', all || /REPLICATION CLIENT|BINLOG MONITOR/.test(global) ? '' : 'REPLICATION CLIENT'].filter(Boolean);
      if (missing.length) throw new CellarError('cdc_privileges', `the CDC user lacks ${missing.join(' and ')}: GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO the user`);
      await this.describeTables(c);
    });
  }

  private async describeTables(c: mysql.Connection): Promise<void> {
    for (const t of this.cfg.tables) {
      const [db, table] = t.split('.') as [string, string];
      const [cols] = await c.query<mysql.RowDataPacket[]>(
        `SELECT c.COLUMN_NAME AS name, c.DATA_TYPE AS dataType, c.COLUMN_TYPE AS columnType, c.IS_NULLABLE AS nullable, k.ORDINAL_POSITION AS keyPos
           FROM information_schema.COLUMNS c LEFT JOIN information_schema.KEY_COLUMN_USAGE k ON k.CONSTRAINT_NAME = 'PRIMARY'
            AND k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME AND k.COLUMN_NAME = c.COLUMN_NAME
          WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION`,
        [db, table],
      );
      if (!cols.length) throw new CellarError('cdc_table', `captured table ${t} does not exist (or the CDC user cannot SELECT from it)`);
      const key = cols.filter((r) => r.keyPos !== null).sort((a, b) => Number(a.keyPos) - Number(b.keyPos));
      if (!key.length) throw new CellarError('cdc_primary_key', `table ${t} has no primary key: Debezium keys and Cellar's updates need one; add a PRIMARY KEY`);
      const info: SourceInfo = { connector: 'mysql', name: this.cfg.topicPrefix, db, table };
      this.tables.set(t, {
        info,
        topic: debeziumTopic(info),
        columns: cols.map((r) => ({ name: String(r.name), type: connectType(String(r.dataType), String(r.columnType)), optional: r.nullable === 'YES' })),
        key: key.map((r) => String(r.name)),
        quoted: `\`${db}\`.\`${table}\``,
      });
    }
  }

  private message(meta: TableMeta, op: Op, before: RowData | null, after: RowData | null, at: { file: string; pos: number; row: number; tsMs: number; gtid?: string | undefined }, snapshot?: 'true'): Message {
    const conv = (row: RowData | null) => row && rowValues(meta.columns, row, jsonValue);
    return new SourceChange(meta.info, meta.columns, meta.key, { op, before: conv(before), after: conv(after), tsMs: at.tsMs, file: at.file, pos: at.pos, row: at.row, gtid: at.gtid ?? null, snapshot });
  }

  /**
   * Takes a captured table's columns from the binlog's table map of a rows event when they differ from
   * the ones known so far: after an ALTER TABLE (a column renamed, retyped, added or dropped) zongji
   * decodes the rows with the new columns, and the messages must carry them (and their new types), not
   * the columns read when the reader started. Nullability is not in the table map: a column keeps its
   * own, a new one is optional. Key columns stay those read at start.
   */
  private followTableMap(meta: TableMeta, t: TableMapEntry): void {
    const cols = t.columnSchemas;
    if (!cols?.length) return;
    const typeOf = (c: (typeof cols)[number]) => connectType(/^\w+/.exec(c.COLUMN_TYPE)?.[0]?.toLowerCase() ?? '', c.COLUMN_TYPE.toLowerCase());
    const same = cols.length === meta.columns.length && cols.every((c, i) => c.COLUMN_NAME === meta.columns[i]!.name && typeOf(c) === meta.columns[i]!.type);
    if (same) return;
    const optional = new Map(meta.columns.map((c) => [c.name, c.optional]));
    meta.columns = cols.map((c) => ({ name: c.COLUMN_NAME, type: typeOf(c), optional: optional.get(c.COLUMN_NAME) ?? true }));
    this.log.info({ table: `${meta.info.db}.${meta.info.table}`, columns: meta.columns.map((c) => `${c.name} ${c.type}`) }, 'captured table columns changed: following the binlog table map');
  }

  /** One row image of a rows event as Debezium changes; a primary-key update is a delete then a create, as Debezium does. */
  private rowChanges(meta: TableMeta, kind: string, r: unknown, at: Parameters<MysqlCdcSource['message']>[4]): Message[] {
    if (kind === 'writerows') return [this.message(meta, 'c', null, r as RowData, at)];
    if (kind === 'deleterows') return [this.message(meta, 'd', r as RowData, null, at)];
    const { before, after } = r as { before: RowData; after: RowData };
    const key = (row: RowData) => JSON.stringify(meta.key.map((k) => jsonValue(row[k], 'string')));
    if (key(before) === key(after)) return [this.message(meta, 'u', before, after, at)];
    return [this.message(meta, 'd', before, null, at), this.message(meta, 'c', null, after, at)];
  }

  /** What reading a snapshot needs from this reader (see snapshot.ts). */
  private snapshotSource(): SnapshotSource {
    return {
      cfg: this.cfg, log: this.log, mariadb: this.mariadb, tables: this.tables,
      admin: (what, fn) => this.admin(what, fn),
      message: (meta, op, row, at) => this.message(meta, op, null, row, at, 'true'),
    };
  }

  /**
   * Prepares the source, snapshots when no position is given (and `snapshot` is `initial`), else snapshots
   * `snapshotTables` again (see snapshot.ts), then streams from `position` (or the snapshot's).
   * Resolves once the binlog stream is open; see {@link done}.
   */
  async start(handler: MysqlCdcHandler, opts: { position?: BinlogPosition; snapshotTables?: string[] } = {}): Promise<void> {
    this.stopped = false;
    await this.prepare();
    let position = opts.position;
    if (!position && this.cfg.snapshot === 'initial') position = await readSnapshot(this.snapshotSource(), handler);
    else if (position && opts.snapshotTables?.length) {
      await readSnapshot(this.snapshotSource(), handler, { tables: opts.snapshotTables, from: position });
    }
    if (!position) {
      position = await this.admin('reading the binlog position', (c) => binlogStatus(c, this.mariadb));
      await handler({ changes: [], position, snapshot: false });
    }
    await this.stream(handler, position);
  }

  private stream(handler: MysqlCdcHandler, from: BinlogPosition): Promise<void> {
    const z = new ZongJi({ ...this.cfg.connection, timezone: 'Z', supportBigNumbers: true });
    this.zongji = z;
    const byGtid = this.cfg.resumeBy === 'gtid' && from.gtids !== undefined;
    let file = from.file;
    let pending: Message[] = [];
    let inTx = false;
    let lastEnd = from.pos;
    let lastDelivered = Date.now();
    let queued = 0;
    let paused = false;
    const fail = (err: unknown, context = 'streaming the MySQL binlog') => {
      if (this.stopped) return;
      const e = fromMysqlError(err, context);
      this.log.error({ err: e.message, file, pos: lastEnd }, 'binlog stream failed');
      this.stopped = true;
      z.stop();
      this.settle(e);
      return e;
    };
    const startOf = (e: BinlogEvent) => e.nextPosition - e.size - 19 - (z.useChecksum ? 4 : 0);
    const deliver = (batch: MysqlCdcBatch) => {
      queued += batch.changes.length;
      lastDelivered = Date.now();
      this.chain = this.chain.then(async () => {
        if (this.stopped) return;
        await handler(batch);
        queued -= batch.changes.length;
        if (paused && queued < HIGH_WATER / 4) {
          paused = false;
          z.connection?.resume();
        }
      }).catch((err: unknown) => void fail(err));
    };
    const commit = (e: BinlogEvent) => {
      inTx = false;
      if (e.nextPosition > 0) lastEnd = e.nextPosition;
      // zongji folds a transaction into gtidSet on its commit event, before this handler sees it.
      const gtids = z.gtidSet;
      const position = gtids ? { file, pos: lastEnd, gtids } : { file, pos: lastEnd };
      if (pending.length || Date.now() - lastDelivered >= IDLE_ADVANCE_MS) deliver({ changes: pending, position, snapshot: false });
      pending = [];
    };
    const onEvent = (e: AnyBinlogEvent) => {
      const name = e.getEventName();
      if (name === 'rotate') {
        const r = e as AnyBinlogEvent & { binlogName: string; position: number };
        file = r.binlogName;
        // A GTID start begins with the server's own (artificial) rotate: where the stream really is.
        if (byGtid && Number(r.position) > 0) lastEnd = Number(r.position);
      }
      else if (name === 'mariadbgtid') inTx = !(e as AnyBinlogEvent & { standalone: boolean }).standalone;
      else if (name === 'xid') commit(e);
      else if (name === 'writerows' || name === 'updaterows' || name === 'deleterows') {
        const ev = e as AnyBinlogEvent & { tableId: number; rows: unknown[] };
        const t = z.tableMap[ev.tableId];
        const meta = t && this.tables.get(`${t.parentSchema}.${t.tableName}`);
        if (!meta) return;
        this.followTableMap(meta, t);
        // Rows events carry their real end position (MariaDB too, over the dump protocol); pos is their start.
        const pos = e.nextPosition > 0 ? startOf(e) : lastEnd;
        ev.rows.forEach((r, i) => pending.push(...this.rowChanges(meta, name, r, { file, pos, row: i, tsMs: e.timestamp, gtid: e.gtid })));
      } else if (name === 'query') {
        const q = (e as AnyBinlogEvent & { query: string; schema: string });
        const text = q.query.trim();
        if (/^(BEGIN|XA START)\b/i.test(text)) inTx = true;
        else if (/^(COMMIT|ROLLBACK)\s*$/i.test(text) || !inTx) {
          const m = /^TRUNCATE\s+(?:TABLE\s+)?(?:`?([\w$]+)`?\s*\.\s*)?`?([\w$]+)`?/i.exec(text);
          const meta = m ? this.tables.get(`${m[1] ?? q.schema}.${m[2]}`) : undefined;
          if (meta) pending.push(this.message(meta, 't', null, null, { file, pos: startOf(e), row: 0, tsMs: e.timestamp, gtid: e.gtid }));
          commit(e);
        }
      }
      // Only handed-over batches count: a transaction's own rows must all arrive before it can be delivered.
      if (queued > HIGH_WATER) {
        paused = true;
        z.connection?.pause();
      }
    };
    z.on('binlog', (e: AnyBinlogEvent) => {
      try { onEvent(e); } catch (err) { fail(err); }
    });
    const includeSchema: Record<string, string[]> = {};
    for (const meta of this.tables.values()) (includeSchema[meta.info.db] ??= []).push(meta.info.table);
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      z.on('ready', () => {
        ready = true;
        this.log.info({ ...from, serverId: this.cfg.serverId, resumedBy: byGtid ? 'gtid' : 'position' }, 'binlog stream started');
        resolve();
      });
      z.on('error', (err: Error) => (ready ? fail(err) : reject(fail(err, 'starting the MySQL binlog stream') ?? fromMysqlError(err, 'starting the MySQL binlog stream'))));
      z.start({
        serverId: this.cfg.serverId,
        ...(byGtid ? { gtidSet: from.gtids } : { filename: from.file, position: from.pos }),
        includeEvents: ['rotate', 'mariadbgtid', 'tablemap', 'writerows', 'updaterows', 'deleterows', 'query', 'xid'],
        includeSchema,
      });
    });
  }

  /** Stops streaming; waits for a batch being handled, delivers nothing more. Safe to call twice. */
  async stop(): Promise<void> {
    const wasRunning = !this.stopped;
    this.stopped = true;
    const z = this.zongji;
    this.zongji = undefined;
    if (z) {
      const stopped = new Promise<void>((resolve) => z.once('stopped', () => resolve()));
      z.stop();
      await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    }
    await this.chain.catch(() => undefined);
    if (wasRunning) this.settle();
  }
}

/** Creates the native MySQL/MariaDB CDC reader. */
export function createMysqlCdcSource(config: unknown, log: Logger): MysqlCdcSource {
  return new MysqlCdcSource(config, log);
}
