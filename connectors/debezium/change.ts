/**
 * A decoded change event, the contract between the edges that produce changes (Debezium topics decoded by
 * the normalizer, Cellar's native readers) and the stages that consume them, and the source version that
 * orders a row's changes. Re-exported by `pipelines/normalize/debezium.ts`.
 */

import { Rejection } from '../../schemas/reasons.js';

/** A row image: column (or document field) name → decoded value. */
export type Row = Record<string, unknown>;

/** Debezium ops: create, update, delete, read (snapshot), truncate, message. */
export type DebeziumOp = 'c' | 'u' | 'd' | 'r' | 't' | 'm';

/** A decoded Debezium change event, independent of connector and converter. */
export interface ChangeEvent {
  op: DebeziumOp;
  before: Row | null;
  after: Row | null;
  /** The message key's fields (the row's primary key), or null. */
  key: Row | null;
  source: Record<string, unknown>;
  /** `schema.table` (Postgres), `database.table` (MySQL/MariaDB, MongoDB) or `database.schema.table` (SQL Server). */
  table: string;
  /** Fixed-width, lexicographically ordered position of the change (see {@link sourceVersionOf}). */
  sourceVersion: string;
  /** Commit time at the source (source.ts_ms), ms. */
  sourceTsMs: number;
  /** A readable source position for dead letters and logs, e.g. `lsn=24023128`. */
  position: string;
}

/** `ZEROS[k]`: k zeros, for padding without building them per call. */
const ZEROS = Array.from({ length: 21 }, (_, k) => '0'.repeat(k));

const fromCharCode = String.fromCharCode;

/** Eight decimal digits of `n` (0 ≤ n < 10^8) as character codes, most significant first, into `out` at `at`. */
function eightDigits(n: number, out: number[], at: number): void {
  for (let i = at + 7; i >= at; i--) {
    out[i] = 48 + (n % 10);
    n = (n / 10) | 0;
  }
}

const digits = new Array<number>(20).fill(48);

/**
 * `pad(n, 20)` of a safe non-negative integer (Postgres LSNs, the hot path) built as one flat string:
 * a version is compared with others at once, and a string built by concatenation would be copied flat
 * then. Exact: every step is on integers below 2^53 < 10^16, so the first four digits are zeros.
 */
function pad20(n: number): string {
  const low = n % 1e8;
  eightDigits(low, digits, 12);
  eightDigits((n - low) / 1e8, digits, 4);
  const d = digits;
  return fromCharCode(d[0]!, d[1]!, d[2]!, d[3]!, d[4]!, d[5]!, d[6]!, d[7]!, d[8]!, d[9]!, d[10]!, d[11]!, d[12]!, d[13]!, d[14]!, d[15]!, d[16]!, d[17]!, d[18]!, d[19]!);
}

/** A non-negative integer as a zero-padded digit string of at least `width` digits. */
function pad(n: bigint | number | string, width: number): string {
  let s: string;
  if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) {
    if (width === 20) return pad20(n);
    s = String(n);
  } else if (typeof n === 'bigint' && n >= 0n) s = n.toString();
  else if (typeof n === 'string' && /^\d+$/.test(n)) s = n.replace(/^0+(?=\d)/, '');
  else throw new Rejection('bad_version', `source position ${JSON.stringify(String(n))} is not a non-negative integer`);
  const k = width - s.length;
  return k <= 0 ? s : k < ZEROS.length ? ZEROS[k]! + s : '0'.repeat(k) + s;
}

/**
 * The per-row monotonic version of a change, as a fixed-width digit string so plain string comparison
 * orders it:
 * - Postgres: the change's LSN (20 digits); from Cellar's reader, the transaction's commit LSN first
 *   (`<commit>:<change>`, 20 digits each), which sorts above the plain LSN of every snapshot taken before
 *   that commit, also for a transaction whose changes were written before the snapshot's point.
 * - MySQL/MariaDB: binlog file number, position and row in event (10+20+6 digits).
 * - SQL Server: commit LSN then change LSN (hex, fixed width as Debezium writes them).
 * - MongoDB: the oplog/change-stream order `ord` within `ts_ms`.
 * - Cellar's feeds (`cellar-feed`): the supplier's row version, then the line.
 *
 * Throws {@link Rejection} (`bad_version`) when the source block carries no usable position.
 */
export function sourceVersionOf(connector: string, source: Record<string, unknown>): { version: string; position: string } {
  switch (connector) {
    case 'postgresql': {
      const lsn = source.lsn;
      if (typeof lsn !== 'number' && typeof lsn !== 'string') throw new Rejection('bad_version', 'Postgres source has no lsn');
      const commit = source.cellar_commit_lsn;
      if (typeof commit === 'number' || (typeof commit === 'string' && commit !== '')) return { version: `${pad(commit, 20)}:${pad(lsn, 20)}`, position: `lsn=${lsn} commit=${commit}` };
      return { version: pad(lsn, 20), position: `lsn=${lsn}` };
    }
    case 'mysql':
    case 'mariadb': {
      const file = String(source.file ?? '');
      const m = /\.(\d+)$/.exec(file);
      if (!m || source.pos === undefined) throw new Rejection('bad_version', `MySQL source has no binlog file/pos (file="${file}")`);
      const row = Number(source.row ?? 0);
      return { version: `${pad(m[1]!, 10)}${pad(source.pos as number, 20)}${pad(row, 6)}`, position: `${file}:${source.pos}#${row}` };
    }
    case 'sqlserver': {
      const commit = String(source.commit_lsn ?? '');
      const change = String(source.change_lsn ?? '');
      if (!commit) throw new Rejection('bad_version', 'SQL Server source has no commit_lsn');
      const serial = Number(source.event_serial_no ?? 0);
      return { version: `${commit}|${change || commit}|${pad(serial, 6)}`, position: `commit_lsn=${commit} change_lsn=${change} #${serial}` };
    }
    case 'mongodb': {
      const ts = Number(source.ts_ms ?? 0);
      const ord = Number(source.ord ?? 0);
      return { version: `${pad(ts, 15)}${pad(ord, 10)}`, position: `ts_ms=${ts} ord=${ord}` };
    }
    case 'cellar-feed': {
      // CSV and HTTP feeds: the supplier's own row version (a counter or a timestamp), then the line.
      const v = source.version ?? source.ts_ms;
      if ((typeof v !== 'number' && typeof v !== 'string') || !/^\d+$/.test(String(v))) {
        throw new Rejection('bad_version', 'feed source has no numeric "version"');
      }
      const line = Number(source.line ?? 0);
      return { version: `${pad(v, 20)}${pad(line, 10)}`, position: `${String(source.file ?? source.name ?? 'feed')}@${v}#${line}` };
    }
    default:
      throw new Rejection('bad_version', `unknown Debezium connector "${connector}"`);
  }
}
