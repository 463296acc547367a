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

/**
 * Each table's name, per source info object (a reader's, one per table, never edited: a schema change
 * keeps it): one string for all of the table's changes, hashed once where it is a map key.
 */
const tableNames = new WeakMap<SourceInfo, string>();

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
    let name = tableNames.get(this.info);
    if (name === undefined) tableNames.set(this.info, (name = this.info.connector === 'postgresql' ? `${this.info.schema ?? 'public'}.${this.info.table}` : `${this.info.db}.${this.info.table}`));
    return name;
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
    // The version needs only the position fields; the whole source block is built if someone reads it.
    const at = info.connector === 'postgresql' ? (s.commitLsn !== undefined ? { lsn: s.lsn ?? 0, cellar_commit_lsn: s.commitLsn } : { lsn: s.lsn ?? 0 })
      : info.connector === 'cellar-feed' ? { version: s.feedVersion ?? 0, line: s.line ?? 0, file: s.feedFile }
      : { file: s.file ?? 'bin.000001', pos: s.pos ?? 4, row: s.row ?? 0 };
    const { version, position } = s.cellarVersion !== undefined ? { version: s.cellarVersion, position: `reconcile:${s.cellarVersion}` } : sourceVersionOf(info.connector, at);
    return new NativeChangeEvent(s.op, imageOf(columns, s.before), imageOf(columns, s.after), this.key(), this.table, version, s.tsMs, position, info, s);
  }
}

/**
 * A native change's {@link ChangeEvent}. A class rather than an object literal with a getter: one is made
 * per change, and a literal's getter is a new function (and a slower object) each time. Its Debezium
 * source block is built only when read (the version and position above are what the stages use).
 */
class NativeChangeEvent implements ChangeEvent {
  #source: Record<string, unknown> | undefined;
  readonly #info: SourceInfo;
  readonly #spec: ChangeSpec;

  constructor(
    readonly op: ChangeEvent['op'],
    readonly before: Record<string, unknown> | null,
    readonly after: Record<string, unknown> | null,
    readonly key: Record<string, unknown> | null,
    readonly table: string,
    readonly sourceVersion: string,
    readonly sourceTsMs: number,
    readonly position: string,
    info: SourceInfo,
    spec: ChangeSpec,
  ) {
    this.#info = info;
    this.#spec = spec;
  }

  get source(): Record<string, unknown> {
    return (this.#source ??= sourceBlock(this.#info, this.#spec));
  }
}

/** A row image as the event carries it: only the columns, decimals as { unscaled, scale }, nothing JSON would not hold. */
function imageOf(columns: ColumnDef[], row: Record<string, unknown> | null): Record<string, unknown> | null {
  if (!row) return null;
  const out: Record<string, unknown> = {};
  for (const c of columns) {
    const v = row[c.name];
    // An exact decimal is { unscaled, scale } (normalize/decimal.ts), as a Connect Decimal decodes to.
    out[c.name] = c.type === 'decimal' && v !== null && v !== undefined ? { unscaled: unscaledOf(v as string | number, c.scale ?? 0), scale: c.scale ?? 0 } : plain(v);
  }
  return out;
}
