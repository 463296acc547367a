import { debeziumJsonMessage, debeziumTopic, type ColumnDef, type SourceInfo } from '../../connectors/debezium/envelope.js';

/** A message for a raw topic. `value` null is a tombstone. */
export interface RawMessage {
  topic: string;
  key: string | null;
  value: string | null;
}

/** Monotonic source positions shared by the tables of one simulated database. */
export class SourceClock {
  private lsn = 23_000_000;
  private pos = 4;
  private tx = 500;
  nextLsn(): number {
    this.lsn += 8 + Math.floor(Math.random() * 200);
    return this.lsn;
  }
  nextPos(): number {
    this.pos += 100 + Math.floor(Math.random() * 400);
    return this.pos;
  }
  nextTx(): number {
    return ++this.tx;
  }
}

/**
 * One supplier table simulated in memory: it applies inserts, updates and deletes to its rows (the
 * supplier's source of truth) and returns the Debezium messages the connector would write for each,
 * with Postgres' default replica identity (updates without before-image, deletes with the key only).
 */
export class SimulatedTable {
  readonly rows = new Map<string, Record<string, unknown>>();
  readonly topic: string;

  constructor(
    readonly info: SourceInfo,
    readonly columns: ColumnDef[],
    readonly keyColumns: string[],
    private readonly clock = new SourceClock(),
  ) {
    this.topic = debeziumTopic(info);
  }

  private id(row: Record<string, unknown>): string {
    return this.keyColumns.map((k) => String(row[k])).join('|');
  }

  private message(op: 'c' | 'u' | 'd' | 'r', before: Record<string, unknown> | null, after: Record<string, unknown> | null): RawMessage {
    const pg = this.info.connector === 'postgresql';
    const { key, value } = debeziumJsonMessage(this.info, this.columns, this.keyColumns, {
      op,
      before,
      after,
      tsMs: Date.now(),
      ...(pg ? { lsn: this.clock.nextLsn(), txId: this.clock.nextTx() } : { file: 'bin.000003', pos: this.clock.nextPos(), row: 0 }),
    });
    return { topic: this.topic, key, value };
  }

  insert(row: Record<string, unknown>): RawMessage[] {
    const id = this.id(row);
    if (this.rows.has(id)) throw new Error(`row ${id} exists`);
    this.rows.set(id, { ...row });
    return [this.message('c', null, row)];
  }

  update(keyRow: Record<string, unknown>, patch: Record<string, unknown>): RawMessage[] {
    const id = this.id(keyRow);
    const cur = this.rows.get(id);
    if (!cur) throw new Error(`row ${id} does not exist`);
    const next = { ...cur, ...patch };
    this.rows.set(id, next);
    const before = this.info.connector === 'postgresql' ? null : cur;
    return [this.message('u', before, next)];
  }

  delete(keyRow: Record<string, unknown>): RawMessage[] {
    const id = this.id(keyRow);
    const cur = this.rows.get(id);
    if (!cur) throw new Error(`row ${id} does not exist`);
    this.rows.delete(id);
    const before = this.info.connector === 'postgresql' ? Object.fromEntries(this.keyColumns.map((k) => [k, cur[k]])) : cur;
    const msg = this.message('d', before, null);
    return [msg, { topic: this.topic, key: msg.key, value: null }];
  }
}
