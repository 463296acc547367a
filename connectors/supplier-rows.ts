/**
 * Read-only access to a supplier's current rows, for reconciliation: each native source kind provides it
 * beside its change stream (`NATIVE_SOURCES[kind].rows` in `connectors/native-source.ts`).
 */

/** One current row of a captured table, as the database driver returns it. */
export interface SourceRow {
  table: string;
  row: Record<string, unknown>;
}

/** A Debezium JSON message of a source row (the shape the readers emit). */
export interface SourceMessage {
  topic: string;
  key: string | null;
  value: string;
}

/**
 * Read-only access to a supplier's current rows for reconciliation: a chunked scan inside one consistent
 * snapshot, point reads of given keys, and the Debezium message of a row (to normalize it with the
 * pipeline's own code, or to correct it).
 */
export interface SupplierSnapshot {
  /** Streams every captured row of every table, in chunks of at most `chunkRows`, from one consistent snapshot. */
  scan(onChunk: (rows: SourceRow[]) => void | Promise<void>, chunkRows: number): Promise<void>;
  /** The current rows of `table` with the given primary keys (column → text value); absent keys are deleted rows. */
  fetch(table: string, keys: Array<Record<string, string>>): Promise<SourceRow[]>;
  /** The row as a snapshot (`r`) or delete (`d`) message; `cellarVersion` makes it a repair. */
  message(row: SourceRow, op: 'r' | 'd', cellarVersion?: string): SourceMessage;
  /** The key and values the normalizer would decode from the row's snapshot message (without building it). */
  image(row: SourceRow): { key: Record<string, unknown>; after: Record<string, unknown> };
  /** Primary key columns of a table. */
  keyColumns(table: string): string[];
  close(): Promise<void>;
}

/** Point reads are batched by this many keys per statement. */
export const FETCH_KEYS = 500;

/** How far Cellar's reader is behind its supplier, in bytes of the source's log, with a readable detail. */
export interface SourceLag {
  bytes: number;
  detail: string;
}
