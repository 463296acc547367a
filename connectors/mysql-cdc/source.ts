import type { Connection as CoreConnection } from 'mysql2';
import mysql from 'mysql2/promise';
import ZongJi, { type AnyBinlogEvent, type BinlogEvent, type RowData } from '@vlasky/zongji';
import { CellarError } from '../../pipelines/core/errors.js';
import type { Logger } from '../../pipelines/core/logger.js';
import { DebeziumJsonMessage, debeziumJsonMessage, debeziumTopic, rowImage, type ColumnDef, type SourceInfo } from '../debezium/envelope.js';
import { parseMysqlCdcConfig, type MysqlCdcConfig } from './config.js';
import { connectType, fromMysqlError, jsonValue } from './values.js';

export { fromMysqlError } from './values.js';

/**
 * A binlog position: file name and byte offset, and, when the server has GTIDs, the executed GTID set
 * (MySQL, `uuid:1-27,…`) or GTID position (MariaDB, `0-1-1234`) at that point. With `gtids`, a restart
 * resumes by GTID (config `resumeBy`), which stays valid across a failover to another server of the
 * same topology; file/pos are then informational.
 */
export interface BinlogPosition { file: string; pos: number; gtids?: string }

/** Debezium messages of one committed source transaction (or one snapshot chunk). */
export interface MysqlCdcBatch {
  messages: Array<{ topic: string; key: string | null; value: string }>;
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

type Message = MysqlCdcBatch['messages'][number];
type Op = 'c' | 'u' | 'd' | 'r' | 't';

interface TableMeta { info: SourceInfo; topic: string; columns: ColumnDef[]; key: string[]; quoted: string }

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
  rowMessage(table: string, op: 'r' | 'd', row: RowData, opts: { position: BinlogPosition; tsMs: number; cellarVersion?: string }): Message {
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
    const conv = (row: RowData | null) => row && rowImage(meta.columns, [], row, jsonValue).after;
    return new DebeziumJsonMessage(meta.topic, meta.info, meta.columns, meta.key, { op, before: conv(before), after: conv(after), tsMs: at.tsMs, file: at.file, pos: at.pos, row: at.row, gtid: at.gtid ?? null, snapshot });
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

  private async binlogStatus(c: mysql.Connection): Promise<BinlogPosition> {
    const [rows] = await c.query<mysql.RowDataPacket[]>('SHOW MASTER STATUS').catch(() => c.query<mysql.RowDataPacket[]>('SHOW BINARY LOG STATUS'));
    if (!rows[0]) throw new CellarError('cdc_log_bin', 'the supplier server reports no binary log position (is log_bin on?)');
    const position = { file: String(rows[0].File), pos: Number(rows[0].Position) };
    return this.withGtids(c, position, rows[0].Executed_Gtid_Set);
  }

  /**
   * Adds the GTIDs matching a position: MariaDB computes them (`BINLOG_GTID_POS`); MySQL reports its
   * executed set only with `gtid_mode=ON`, read at the same instant as the position (under the read lock
   * or from the same status row). Without GTIDs the position stays file/pos only.
   */
  private async withGtids(c: mysql.Connection, position: BinlogPosition, executed?: unknown): Promise<BinlogPosition> {
    if (this.mariadb) {
      const [[row]] = await c.query<mysql.RowDataPacket[]>('SELECT BINLOG_GTID_POS(?, ?) AS g', [position.file, position.pos]);
      const g = row?.g === null || row?.g === undefined ? '' : String(row.g);
      return g ? { ...position, gtids: g } : position;
    }
    const [[mode]] = await c.query<mysql.RowDataPacket[]>('SELECT @@GLOBAL.gtid_mode AS m, @@GLOBAL.gtid_executed AS g');
    if (String(mode?.m).toUpperCase() !== 'ON') return position;
    const set = String(executed ?? mode!.g ?? '').replace(/\s+/g, '');
    return set ? { ...position, gtids: set } : position;
  }

  /**
   * Reads every captured row in one consistent snapshot and returns the binlog position it matches.
   * MariaDB reports that position inside the snapshot transaction; MySQL needs a brief global read lock.
   */
  private async snapshot(handler: MysqlCdcHandler): Promise<BinlogPosition> {
    return this.admin('reading the MySQL snapshot', async (c) => {
      await c.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      let position: BinlogPosition;
      if (this.mariadb) {
        await c.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
        const [rows] = await c.query<mysql.RowDataPacket[]>("SHOW STATUS LIKE 'binlog_snapshot_%'");
        const get = (name: string) => rows.find((r) => String(r.Variable_name).toLowerCase() === name)?.Value;
        position = await this.withGtids(c, { file: String(get('binlog_snapshot_file')), pos: Number(get('binlog_snapshot_position')) });
      } else {
        await c.query('FLUSH TABLES WITH READ LOCK');
        try {
          position = await this.binlogStatus(c);
          await c.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
        } finally {
          await c.query('UNLOCK TABLES');
        }
      }
      const tsMs = Date.now();
      let total = 0;
      // The promise wrapper's underlying connection: only it streams rows with backpressure.
      const core = (c as unknown as { connection: CoreConnection }).connection;
      let chunk: Message[] = [];
      const flush = async () => {
        total += chunk.length;
        if (chunk.length) await handler({ messages: chunk, position, snapshot: true });
        chunk = [];
      };
      for (const meta of this.tables.values()) {
        // A snapshot replaces the table: it starts with a truncate just below its rows' position, so rows
        // deleted while an earlier snapshot or stream was cut off (a crash, a purged binlog) stop counting.
        chunk.push(this.message(meta, 't', null, null, { ...position, pos: position.pos - 1, row: 0, tsMs }, 'true'));
        // Rows share the snapshot's file/pos; `row` only has to be unique per key, and every streamed
        // change lies after that position, so snapshot versions stay below streamed ones.
        for await (const row of core.query(`SELECT * FROM ${meta.quoted}`).stream({ highWaterMark: 1000 })) {
          chunk.push(this.message(meta, 'r', null, row as RowData, { ...position, row: chunk.length, tsMs }, 'true'));
          if (chunk.length >= this.cfg.snapshotFetchRows) await flush();
        }
        await flush();
      }
      await c.query('COMMIT');
      await handler({ messages: [], position, snapshot: true, snapshotComplete: true });
      this.log.info({ rows: total, ...position }, 'snapshot complete');
      return position;
    });
  }

  /**
   * Prepares the source, snapshots when no position is given (and `snapshot` is `initial`), then streams
   * from `position` (or the snapshot's). Resolves once the binlog stream is open; see {@link done}.
   */
  async start(handler: MysqlCdcHandler, opts: { position?: BinlogPosition } = {}): Promise<void> {
    this.stopped = false;
    await this.prepare();
    let position = opts.position;
    if (!position && this.cfg.snapshot === 'initial') position = await this.snapshot(handler);
    if (!position) {
      position = await this.admin('reading the binlog position', (c) => this.binlogStatus(c));
      await handler({ messages: [], position, snapshot: false });
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
      queued += batch.messages.length;
      lastDelivered = Date.now();
      this.chain = this.chain.then(async () => {
        if (this.stopped) return;
        await handler(batch);
        queued -= batch.messages.length;
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
      if (pending.length || Date.now() - lastDelivered >= IDLE_ADVANCE_MS) deliver({ messages: pending, position, snapshot: false });
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
