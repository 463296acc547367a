/**
 * Cellar's own change record: what every native reader yields, in every runtime. It carries the row images
 * as the reader decoded them and the position of the change at its source; the embedded runtime takes its
 * {@link SourceChange.event} straight into the stages, and only capture encodes it for Kafka
 * (`toDebeziumJson` in `connectors/debezium/envelope.ts`, Debezium's JSON format on Debezium's topic name).
 */

import { sourceVersionOf, type ChangeEvent } from './debezium/change.js';
import { sourceBlock, unscaledOf, type ChangeSpec, type ColumnDef, type SourceInfo } from './debezium/envelope.js';

/** A value as a decoded change carries it: non-finite numbers become null, as JSON would make them. */
function plain(v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? null : v === undefined ? null : v;
}

/** One change of one captured row (or a table's truncation), as a native reader read it. */
export class SourceChange {
  constructor(
    /** Which server, database and table the change comes from. */
    readonly info: SourceInfo,
    /** The table's columns when the change was read (a schema change replaces the array, never edits it). */
    readonly columns: ColumnDef[],
    /** The table's primary key columns. */
    readonly keyColumns: string[],
    /** Operation, row images and source position. */
    readonly spec: ChangeSpec,
  ) {}

  /** The captured table as supplier files name it: `schema.table` (Postgres) or `database.table` (MySQL/MariaDB, feeds). */
  get table(): string {
    return this.info.connector === 'postgresql' ? `${this.info.schema ?? 'public'}.${this.info.table}` : `${this.info.db}.${this.info.table}`;
  }

  /**
   * The row's primary key values in column order, as {@link SourceChange.event} carries them (and what a
   * contributor id is made of); null for a truncate. Cheap: no row image is built.
   */
  key(): Record<string, unknown> | null {
    const row = this.spec.after ?? this.spec.before;
    if (!row || this.spec.op === 't') return null;
    const key: Record<string, unknown> = {};
    for (const c of this.columns) if (this.keyColumns.includes(c.name)) key[c.name] = plain(row[c.name]);
    return key;
  }

  /**
   * The change as the stages consume it: equal to what the normalizer decodes from the Debezium JSON of
   * this change (the reader tests check both ways, decimal columns included), made without any JSON.
   */
  event(): ChangeEvent {
    const { columns, info, spec: s } = this;
    const image = (row: Record<string, unknown> | null) => {
      if (!row) return null;
      const out: Record<string, unknown> = {};
      for (const c of columns) {
        const v = row[c.name];
        // An exact decimal is { unscaled, scale } (normalize/decimal.ts), as a Connect Decimal decodes to.
        out[c.name] = c.type === 'decimal' && v !== null && v !== undefined ? { unscaled: unscaledOf(v as string | number, c.scale ?? 0), scale: c.scale ?? 0 } : plain(v);
      }
      return out;
    };
    // The version needs only the position fields; the whole source block is built if someone reads it.
    const at = info.connector === 'postgresql' ? { lsn: s.lsn ?? 0, ...(s.commitLsn !== undefined ? { cellar_commit_lsn: s.commitLsn } : {}) }
      : info.connector === 'cellar-feed' ? { version: s.feedVersion ?? 0, line: s.line ?? 0, file: s.feedFile }
      : { file: s.file ?? 'bin.000001', pos: s.pos ?? 4, row: s.row ?? 0 };
    const { version, position } = s.cellarVersion !== undefined ? { version: s.cellarVersion, position: `reconcile:${s.cellarVersion}` } : sourceVersionOf(info.connector, at);
    let source: Record<string, unknown> | undefined;
    return {
      op: s.op, before: image(s.before), after: image(s.after), key: this.key(),
      get source() {
        return (source ??= sourceBlock(info, s));
      },
      table: this.table, sourceVersion: version, sourceTsMs: s.tsMs, position,
    };
  }
}
