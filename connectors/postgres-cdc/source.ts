import pg from 'pg';
import { pgConfig } from '../../pipelines/core/pg-tls.js';
import { LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import { CellarError, fromPgError } from '../../pipelines/core/errors.js';
import type { Logger } from '../../pipelines/core/logger.js';
import { debeziumJsonMessage, debeziumTopic, rowImage, rowValues, type ChangeSpec, type ColumnDef, type SourceInfo } from '../debezium/envelope.js';
import { SourceChange } from '../source-change.js';
import { parsePostgresCdcConfig, type PostgresCdcConfig } from './config.js';
import { lsnBefore, lsnToNumber } from './lsn.js';
import { createPgoutputPlugin } from './pgoutput.js';
import { MessageFlow } from './flow.js';
import { createSlotAndSnapshot, snapshotTablesAgain, type SnapshotSource } from './snapshot.js';

export { lsnToNumber } from './lsn.js';

/** Cellar's change records of one committed source transaction (or one snapshot chunk). */
export interface CdcBatch {
  changes: SourceChange[];
  /** Source position after this batch (`X/Y`); acknowledged to the slot once the handler resolves. */
  lsn: string;
  /** True for rows read by the initial snapshot. */
  snapshot: boolean;
  /** Set on the (empty) batch that follows the last snapshot rows: the snapshot is complete. */
  snapshotComplete?: boolean;
}

/** Called with each batch; the reader acknowledges the batch's LSN only after this resolves. */
export type CdcHandler = (batch: CdcBatch) => Promise<void>;

const TYPE: Record<string, ColumnDef['type']> = {
  int2: 'int16', int4: 'int32', int8: 'int64', float4: 'double', float8: 'double', bool: 'boolean',
};
/** The same built-in types by OID (pgoutput's Relation message names only types outside pg_catalog). */
const TYPE_BY_OID: Record<number, ColumnDef['type']> = { 21: 'int16', 23: 'int32', 20: 'int64', 700: 'double', 701: 'double', 16: 'boolean' };

/** Debezium JSON values: numerics as strings (decimal.handling.mode=string), times as ISO text. */
function jsonValue(v: unknown, type: ColumnDef['type']): unknown {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.toISOString();
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (type === 'int64' || type === 'int32' || type === 'int16') return typeof v === 'string' ? Number(v) : v;
  if (type === 'string' && typeof v !== 'string') return typeof v === 'object' ? JSON.stringify(v) : String(v);
  return v;
}

/** What the reader knows of a captured table. */
export interface TableMeta {
  info: SourceInfo;
  topic: string;
  columns: ColumnDef[];
  key: string[];
}

/**
 * Native Postgres CDC reader: logical replication with pgoutput, emitting the change events Debezium's
 * Postgres connector emits (JSON converter with schemas, topics `<prefix>.<schema>.<table>`).
 *
 * On first start it creates the slot over a replication connection with an exported snapshot and reads
 * the tables' existing rows inside that snapshot (`op: r`, at the slot's consistent point), then streams
 * from that point: rows committed during the snapshot arrive exactly once. LSNs are acknowledged only
 * after the handler resolves; while nothing is in flight the server's keepalive position is acknowledged
 * too, so a source whose captured tables are idle does not retain WAL.
 */
export class PostgresCdcSource {
  readonly cfg: PostgresCdcConfig;
  private service: LogicalReplicationService | undefined;
  private readonly tables = new Map<string, TableMeta>();
  private inFlight = false;
  private stopped = false;
  /** Explicit mode: the newest LSN delivered to the handler, and the newest the consumer confirmed. */
  private delivered = '';
  private confirmed = '';
  private explicit = false;
  /** Settles when streaming ends: resolves on stop(), rejects (retriable) when the stream stops on its own. */
  readonly done: Promise<void>;
  private settle!: (err?: CellarError) => void;

  constructor(config: unknown, private readonly log: Logger) {
    this.cfg = parsePostgresCdcConfig(config);
    this.done = new Promise<void>((resolve, reject) => {
      let settled = false;
      this.settle = (err) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve();
      };
    });
    this.done.catch(() => undefined);
  }

  private async admin<T>(what: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const c = new pg.Client(pgConfig(this.cfg.url, { application_name: 'cellar-postgres-cdc' }));
    try {
      await c.connect();
      return await fn(c);
    } catch (err) {
      throw err instanceof CellarError ? err : fromPgError(err, what);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  /** Checks wal_level, privileges and replica identity; creates or updates the publication. */
  async prepare(): Promise<void> {
    await this.admin('preparing Postgres CDC', async (c) => {
      const wal = (await c.query('SHOW wal_level')).rows[0].wal_level as string;
      if (wal !== 'logical') {
        throw new CellarError('cdc_wal_level', `wal_level is "${wal}" on the supplier database; set wal_level=logical and restart Postgres`);
      }
      const role = (await c.query('SELECT rolreplication OR rolsuper AS ok FROM pg_roles WHERE rolname = current_user')).rows[0];
      if (!role?.ok) throw new CellarError('cdc_privileges', 'the CDC user needs the REPLICATION attribute (ALTER ROLE … REPLICATION) and SELECT on the captured tables');
      for (const t of this.cfg.tables) {
        const [schema, table] = t.split('.') as [string, string];
        const r = await c.query(
          `SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
          [schema, table],
        );
        if (!r.rows[0]) throw new CellarError('cdc_table', `captured table ${t} does not exist`);
        const { relreplident, has_pk } = r.rows[0] as { relreplident: string; has_pk: boolean };
        if (relreplident === 'n' || (relreplident === 'd' && !has_pk)) {
          throw new CellarError('cdc_replica_identity', `table ${t} has no primary key and no replica identity: updates and deletes cannot be captured; add a primary key or ALTER TABLE ${t} REPLICA IDENTITY FULL`);
        }
        this.tables.set(t, await this.describe(c, schema, table));
      }
      const list = this.cfg.tables.map((t) => t.split('.').map((p) => `"${p}"`).join('.')).join(', ');
      const exists = (await c.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [this.cfg.publicationName])).rowCount;
      await c.query(exists ? `ALTER PUBLICATION ${this.cfg.publicationName} SET TABLE ${list}` : `CREATE PUBLICATION ${this.cfg.publicationName} FOR TABLE ${list}`);
    });
  }

  private async describe(c: pg.Client, schema: string, table: string): Promise<TableMeta> {
    const cols = await c.query<{ name: string; type: string; notnull: boolean }>(
      `SELECT a.attname AS name, t.typname AS type, a.attnotnull AS notnull FROM pg_attribute a
         JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      [`"${schema}"."${table}"`],
    );
    const key = await c.query<{ name: string }>(
      `SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`,
      [`"${schema}"."${table}"`],
    );
    const info: SourceInfo = { connector: 'postgresql', name: this.cfg.topicPrefix, db: c.database ?? '', schema, table };
    return {
      info,
      topic: debeziumTopic(info),
      columns: cols.rows.map((r) => ({ name: r.name, type: TYPE[r.type] ?? 'string', optional: !r.notnull })),
      key: key.rows.map((r) => r.name),
    };
  }

  /**
   * Reads the captured tables' columns and keys without touching the publication or the slot (read-only):
   * what {@link rowMessage} needs. Reconciliation uses it with its own snapshot of the rows.
   */
  async inspect(): Promise<void> {
    await this.admin('reading table metadata', async (c) => {
      for (const t of this.cfg.tables) {
        const [schema, table] = t.split('.') as [string, string];
        const exists = await c.query('SELECT to_regclass($1) IS NOT NULL AS ok', [`"${schema}"."${table}"`]);
        if (!exists.rows[0]?.ok) throw new CellarError('cdc_table', `captured table ${t} does not exist`);
        this.tables.set(t, await this.describe(c, schema, table));
      }
    });
  }

  /** Primary key columns of a captured table (after prepare() or inspect()). */
  keyColumns(table: string): string[] {
    return this.tables.get(table)?.key ?? [];
  }

  /**
   * A row of a captured table (as node-postgres returns it from `SELECT *`) as the Debezium message a
   * snapshot would emit, or a delete of it. `cellarVersion` overrides the version (repairs).
   */
  rowMessage(table: string, op: 'r' | 'd', row: Record<string, unknown>, opts: { lsn: string; tsMs: number; cellarVersion?: string }): { topic: string; key: string | null; value: string } {
    const meta = this.tables.get(table);
    if (!meta) throw new CellarError('cdc_table', `table ${table} is not captured by this reader`);
    const conv = (r: Record<string, unknown>) => Object.fromEntries(meta.columns.map((c) => [c.name, jsonValue(r[c.name], c.type)]));
    const m = debeziumJsonMessage(meta.info, meta.columns, meta.key, {
      op, before: op === 'd' ? conv(row) : null, after: op === 'r' ? conv(row) : null, tsMs: opts.tsMs, lsn: lsnToNumber(opts.lsn), snapshot: op === 'r' ? 'true' : 'false',
      ...(opts.cellarVersion !== undefined ? { cellarVersion: opts.cellarVersion } : {}),
    });
    return { topic: debeziumTopic(meta.info), key: m.key, value: m.value };
  }

  /**
   * The key and row values a snapshot message of `row` carries, without building the message: what the
   * normalizer decodes from it (the native reader's column types need no schema-driven decoding).
   */
  rowImage(table: string, row: Record<string, unknown>): { key: Record<string, unknown>; after: Record<string, unknown> } {
    const meta = this.tables.get(table);
    if (!meta) throw new CellarError('cdc_table', `table ${table} is not captured by this reader`);
    return rowImage(meta.columns, meta.key, row, jsonValue);
  }

  private message(meta: TableMeta, op: 'c' | 'u' | 'd' | 'r' | 't', before: Record<string, unknown> | null, after: Record<string, unknown> | null, lsn: string, tsMs: number, snapshot?: 'true' | 'last', commitLsn?: string | null) {
    const conv = (row: Record<string, unknown> | null) => row && rowValues(meta.columns, row, jsonValue);
    const spec: ChangeSpec = { op, before: conv(before), after: conv(after), tsMs, lsn: lsnToNumber(lsn), snapshot };
    if (commitLsn) spec.commitLsn = lsnToNumber(commitLsn);
    return new SourceChange(meta.info, meta.columns, meta.key, spec);
  }

  /** The slot's confirmed position, or undefined when the slot does not exist. */
  async slotPosition(): Promise<string | undefined> {
    return this.admin('reading the replication slot', async (c) => {
      const r = await c.query('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [this.cfg.slotName]);
      return r.rows[0]?.lsn as string | undefined;
    });
  }

  /**
   * Ends the session that streams this slot, if any (a reader of a process that lost its single-writer
   * lease: frozen, or cut off), and waits until the slot is free. Only a lease holder may call this.
   */
  async evictSlotHolder(): Promise<void> {
    await this.admin('freeing the replication slot', async (c) => {
      const r = await c.query('SELECT pg_terminate_backend(active_pid) AS ended, active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active AND active_pid IS NOT NULL', [this.cfg.slotName]);
      if (!r.rows.length) return;
      this.log.warn({ slot: this.cfg.slotName, pid: r.rows[0].active_pid }, 'ended another session streaming this slot');
      for (let i = 0; i < 100; i++) {
        const a = await c.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [this.cfg.slotName]);
        if (!a.rows[0]?.active) return;
        await new Promise((res) => setTimeout(res, 100));
      }
    });
  }

  /** Drops the slot (and so the position); the next start snapshots again. */
  async dropSlot(): Promise<void> {
    await this.admin('dropping the replication slot', (c) => c.query('SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1', [this.cfg.slotName]));
  }

  private snapshotSource(): SnapshotSource {
    return { cfg: this.cfg, log: this.log, tables: this.tables, message: (meta, op, row, lsn, tsMs) => this.message(meta, op, null, row, lsn, tsMs, 'true') };
  }

  /**
   * Prepares the source, snapshots when the slot is new (or `snapshotDone` is false), else snapshots
   * `snapshotTables` again at the slot's position (see snapshot.ts), then streams. Resolves
   * once streaming has begun; `done` settles when the stream stops.
   */
  async start(handler: CdcHandler, opts: { snapshotDone?: boolean; snapshotTables?: string[]; explicitConfirm?: boolean; evictSlotHolder?: boolean } = {}): Promise<void> {
    this.explicit = opts.explicitConfirm ?? false;
    await this.prepare();
    if (opts.evictSlotHolder) await this.evictSlotHolder();
    const position = await this.slotPosition();
    // A slot whose snapshot never completed (a crash mid-snapshot) cannot resume: snapshot again.
    if (position !== undefined && opts.snapshotDone === false && this.cfg.snapshot === 'initial') {
      this.log.warn({ slot: this.cfg.slotName }, 'previous snapshot did not complete: dropping the slot and snapshotting again');
      await this.dropSlot();
    }
    if (position === undefined || (opts.snapshotDone === false && this.cfg.snapshot === 'initial')) await createSlotAndSnapshot(this.snapshotSource(), handler);
    else if (opts.snapshotTables?.length) await snapshotTablesAgain(this.snapshotSource(), handler, opts.snapshotTables, position);
    const service = new LogicalReplicationService(
      pgConfig(this.cfg.url, { application_name: 'cellar-postgres-cdc' }),
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.service = service;
    // Positions here (commit end, keepalive) already point past the last byte, and the library adds one:
    // confirm exactly them, which is also what lets the server's walsender finish a shutdown (it waits
    // until the confirmed position equals what it sent).
    const ack = (lsn: string) => service.acknowledge(lsnBefore(lsn));
    let pending: CdcBatch['changes'] = [];
    let lastAcked = '';
    let commitMs = Date.now();
    /** The transaction's commit LSN (from its Begin): streamed changes are versioned by it first. */
    let commitLsn: string | null = null;
    const byRelation = (rel: Pgoutput.MessageRelation) => this.tables.get(`${rel.schema}.${rel.name}`);
    // A batch the handler rejected must not be followed by later ones: acknowledging those would release it.
    // The stream ends instead (done rejects, as the binlog reader's does) and a restart delivers it again.
    const handlerFailed = (err: unknown) => {
      if (this.stopped) return;
      this.stopped = true;
      const e = err instanceof CellarError ? err : new CellarError('cdc_handler', `handling a change batch of slot ${this.cfg.slotName}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      this.log.error({ err: e.message }, 'change handler failed: replication stream stopped');
      this.settle(e);
      void service.stop().catch(() => undefined);
    };
    /** A transaction's changes handed over at its commit; resolves once handled (and acknowledged unless explicit). */
    const commit = async (end: string): Promise<void> => {
      if (pending.length) {
        try {
          await handler({ changes: pending, lsn: end, snapshot: false });
        } catch (err) {
          return handlerFailed(err);
        }
      }
      pending = [];
      if (this.explicit) {
        if (!this.delivered || lsnToNumber(end) > lsnToNumber(this.delivered)) this.delivered = end;
      } else {
        await ack(end);
        lastAcked = end;
      }
      this.inFlight = false;
    };
    /** One decoded message, in stream order: a promise only for a commit (the handler runs), else nothing to wait for. */
    const onMessage = (lsn: string, msg: Pgoutput.Message): Promise<void> | undefined => {
      if (msg.tag === 'relation') {
        // Sent before the first change after a schema change (a column added, renamed, dropped or
        // retyped): row images from now on carry these columns, so the table's metadata follows them.
        const meta = byRelation(msg);
        if (meta) {
          const before = new Map(meta.columns.map((c) => [c.name, c]));
          meta.columns = msg.columns.map((c) => ({ name: c.name, type: TYPE_BY_OID[c.typeOid] ?? TYPE[c.typeName ?? ''] ?? 'string', optional: before.get(c.name)?.optional ?? true }));
          if (msg.keyColumns.length) meta.key = [...msg.keyColumns];
        }
      } else if (msg.tag === 'begin') {
        pending = [];
        this.inFlight = true;
        commitMs = Number((msg.commitTime as unknown as bigint) / 1000n);
        commitLsn = msg.commitLsn;
      } else if (msg.tag === 'insert' || msg.tag === 'update' || msg.tag === 'delete') {
        const meta = byRelation(msg.relation);
        if (!meta) return;
        if (msg.tag === 'insert') pending.push(this.message(meta, 'c', null, msg.new, lsn, commitMs, undefined, commitLsn));
        else if (msg.tag === 'update') {
          const old = msg.old ?? msg.key;
          if (old && meta.key.some((k) => String(old[k]) !== String(msg.new[k]))) {
            // The primary key changed: as Debezium does, a delete of the old key and a create of the new one.
            pending.push(this.message(meta, 'd', old, null, lsn, commitMs, undefined, commitLsn));
            pending.push(this.message(meta, 'c', null, msg.new, lsn, commitMs, undefined, commitLsn));
          } else pending.push(this.message(meta, 'u', msg.old, msg.new, lsn, commitMs, undefined, commitLsn));
        }
        else pending.push(this.message(meta, 'd', msg.old ?? msg.key, null, lsn, commitMs, undefined, commitLsn));
      } else if (msg.tag === 'truncate') {
        for (const rel of msg.relations) {
          const meta = byRelation(rel);
          if (meta) pending.push(this.message(meta, 't', null, null, lsn, commitMs, undefined, commitLsn));
        }
      } else if (msg.tag === 'commit') {
        return commit(msg.commitEndLsn ?? lsn);
      }
      return undefined;
    };
    const socket = () => (service as unknown as { _connection?: { stream?: { pause?(): void; resume?(): void } } })._connection?.stream;
    const flow = new MessageFlow<{ lsn: string; msg: Pgoutput.Message }>({
      handle: (m) => onMessage(m.lsn, m.msg),
      pause: () => socket()?.pause?.(),
      resume: () => socket()?.resume?.(),
      stopped: () => this.stopped,
      failed: (err) => {
        if (!this.stopped) this.log.error({ err: (err as Error)?.message ?? String(err) }, 'handling a replication message failed');
      },
    });
    service.on('data', (lsn: string, msg: Pgoutput.Message) => flow.push({ lsn, msg }));
    // Keepalives are emitted as they arrive, ahead of data still queued above, so the server's position may
    // only be acknowledged when nothing is queued, waiting or open.
    const idle = () => {
      const unconfirmed = this.explicit && this.delivered !== '' && lsnToNumber(this.delivered) > (this.confirmed ? lsnToNumber(this.confirmed) : 0);
      return !this.inFlight && !unconfirmed && flow.idle;
    };
    this.confirmTo = async (lsn: string) => {
      if (this.confirmed && lsnToNumber(lsn) <= lsnToNumber(this.confirmed)) return;
      this.confirmed = lsn;
      if (!lastAcked || lsnToNumber(lsn) > lsnToNumber(lastAcked)) {
        await ack(lsn);
        lastAcked = lsn;
      }
    };
    service.on('heartbeat', async (lsn: string, _ts: number, shouldRespond: boolean) => {
      // Caught up: everything before the server's position was delivered and handled (or filtered out).
      if (idle() && lsn && lsnToNumber(lsn) > (lastAcked ? lsnToNumber(lastAcked) : 0)) {
        await ack(lsn);
        lastAcked = lsn;
      } else if (shouldRespond && lastAcked) await ack(lastAcked);
    });
    service.on('error', (err: Error) => {
      if (!this.stopped) this.log.error({ err: err.message }, 'replication stream error');
    });
    const ended = (err?: unknown) => {
      if (this.stopped) return;
      const e = err === undefined ? new CellarError('cdc_stream_ended', `the replication stream of slot ${this.cfg.slotName} ended`, { retriable: true }) : fromPgError(err, `replication stream of slot ${this.cfg.slotName}`);
      this.log.error({ err: e.message }, 'replication stream ended');
      this.settle(new CellarError(e.code, e.message, { retriable: true, cause: err }));
    };
    service
      .subscribe(createPgoutputPlugin(this.cfg.publicationName), this.cfg.slotName)
      .then(() => ended(), ended);
  }

  private confirmTo: ((lsn: string) => Promise<void>) | undefined;

  /**
   * With `explicitConfirm`, the handler only accepts batches and the consumer calls this once a batch is
   * durable: the slot is acknowledged up to `lsn` (never backwards). Lets a consumer commit many source
   * transactions at once.
   */
  async confirm(lsn: string): Promise<void> {
    await this.confirmTo?.(lsn);
  }

  /** Stops streaming. Safe to call twice. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.service?.stop().catch(() => undefined);
    this.service = undefined;
    this.settle();
  }
}

/** Creates the native Postgres CDC reader. */
export function createPostgresCdcSource(config: unknown, log: Logger): PostgresCdcSource {
  return new PostgresCdcSource(config, log);
}
