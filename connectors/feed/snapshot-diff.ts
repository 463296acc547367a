import { createHash } from 'node:crypto';

/** One data line of a feed file or request: the supplier's own columns, and where it came from. */
export interface FeedRow {
  /** 1-based line (or row) number in its file or request body, for dead letters and answers. */
  line: number;
  /** Column → value, exactly as the supplier wrote it (`null` for an empty cell). */
  row: Record<string, string | null>;
}

/** A feed row under its key: the values of the table's key columns, joined unambiguously. */
export interface KeyedFeedRow extends FeedRow {
  key: string;
  /** A digest of the row's values: equal digests mean nothing changed. */
  hash: string;
}

/** What applying a full snapshot changes, relative to the last applied one. */
export interface SnapshotDiff {
  /** Rows that are new or whose values changed, in file order. */
  upserts: KeyedFeedRow[];
  /** Keys of the last snapshot that this one no longer has. */
  deletes: string[];
  unchanged: number;
  /** Lines whose key an earlier line of the same snapshot already had: the first one counts. */
  duplicates: Array<{ line: number; key: string; firstLine: number }>;
}

/** A row with no value in a key column: it cannot be told apart from others, so it is refused. */
export class MissingKeyError extends Error {
  constructor(readonly line: number, readonly column: string) {
    super(`line ${line}: key column "${column}" is empty`);
  }
}

/**
 * The key of a row: its key columns' values, JSON-encoded as an array (so `a|b` + `c` never equals
 * `a` + `b|c`). Throws {@link MissingKeyError} when a key column is empty or missing.
 */
export function feedKey(r: FeedRow, keyColumns: readonly string[]): string {
  const values = keyColumns.map((c) => {
    const v = r.row[c];
    if (v === null || v === undefined || v === '') throw new MissingKeyError(r.line, c);
    return v;
  });
  return JSON.stringify(values);
}

/** A digest of a row's values (columns in name order, so a reordered header changes nothing). */
export function rowHash(row: Record<string, string | null>): string {
  const h = createHash('sha1');
  for (const c of Object.keys(row).sort()) h.update(JSON.stringify([c, row[c] ?? null]));
  return h.digest('base64url');
}

/**
 * The digest no row has: a key capture published but did not checkpoint is remembered with it, so the
 * next file (even one equal to the last applied) compares it as changed and sends it again.
 */
export const PENDING_HASH = 'pending';

/** A row a feed remembers from what it last applied: its values' digest and its version. */
export interface RememberedRow {
  hash: string;
  /** The version the row was applied with (a file's read time, or a pushed row's own `_version`). */
  version: number;
}

/**
 * Compares a full snapshot (`next`, already keyed) with the keys and digests of the last applied one.
 * Pure. A key repeated within `next` keeps its first line; later ones are reported as duplicates.
 */
export function diffSnapshot(previous: ReadonlyMap<string, RememberedRow>, next: readonly KeyedFeedRow[]): SnapshotDiff {
  const out: SnapshotDiff = { upserts: [], deletes: [], unchanged: 0, duplicates: [] };
  const firstLine = new Map<string, number>();
  for (const r of next) {
    const seen = firstLine.get(r.key);
    if (seen !== undefined) {
      out.duplicates.push({ line: r.line, key: r.key, firstLine: seen });
      continue;
    }
    firstLine.set(r.key, r.line);
    if (previous.get(r.key)?.hash === r.hash) out.unchanged++;
    else out.upserts.push(r);
  }
  for (const key of previous.keys()) if (!firstLine.has(key)) out.deletes.push(key);
  return out;
}

/**
 * Why a snapshot must be held back instead of applied, or undefined when it may be applied: an empty
 * snapshot after a non-empty one, or one with fewer than `minFraction` of the last one's rows (a
 * truncated export would otherwise delete the supplier's stock).
 */
export function truncationGuard(previousRows: number, nextRows: number, minFraction: number): string | undefined {
  if (previousRows === 0) return undefined;
  if (nextRows === 0) return `the snapshot has no rows where the last one applied had ${previousRows}: held back (an empty export would delete all of this supplier's stock)`;
  if (nextRows < previousRows * minFraction) {
    return `the snapshot has ${nextRows} rows, fewer than ${Math.round(minFraction * 100)} % of the ${previousRows} of the last one applied: held back as a likely truncated export`;
  }
  return undefined;
}

/** A line of a snapshot that could not be read as a row (see `CsvLineError`). */
export interface UnreadableLine {
  line: number;
  text: string;
  /** Its fields when it could be split; otherwise its text is split at the delimiter. */
  fields?: string[];
  /** Its values by column, when it was an object (pushed JSON): taken before any field. */
  values?: Record<string, unknown>;
  /** A problem of the header line itself: it names no row. */
  header?: true;
}

/**
 * The key an unreadable line still names, when it does (see {@link rowsNamedByUnreadableLines}): from its
 * values by column, else from the fields at the key columns' header positions, quotes and blanks around a
 * value dropped. Undefined when a key column has no value there, or the line is the header.
 */
export function keyOfUnreadableLine(l: UnreadableLine, header: readonly string[], keyColumns: readonly string[], delimiter: string): string | undefined {
  if (l.header) return undefined;
  let values: string[];
  if (l.values) {
    values = keyColumns.map((c) => {
      const v = l.values![c];
      return typeof v === 'string' ? v.trim() : typeof v === 'number' ? String(v) : '';
    });
  } else {
    const at = keyColumns.map((c) => header.indexOf(c));
    if (at.some((i) => i < 0)) return undefined;
    const fields = l.fields ?? l.text.split(delimiter);
    values = at.map((i) => (fields[i] ?? '').trim().replace(/^"+|"+$/g, '').trim());
  }
  return values.some((v) => v === '') ? undefined : JSON.stringify(values);
}

/**
 * Rows the last applied snapshot had, that this one lacks, and that a line it could not read still names
 * by its key columns (a line cut short, a stray quote after the key): key → line. Those rows are kept as
 * last applied instead of deleted, since the supplier did not drop them: the line was garbled. Pure.
 *
 * The key is read from the fields at the key columns' header positions (quotes and blanks around a value
 * dropped) and counts only when it names one of `absent`, so a line whose fields shifted (a delimiter
 * inside an unquoted value) names no row, and rows absent from a file are deleted as usual.
 */
export function rowsNamedByUnreadableLines(absent: readonly string[], header: readonly string[], keyColumns: readonly string[], lines: readonly UnreadableLine[], delimiter: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!absent.length || !lines.length) return out;
  const candidates = new Set(absent);
  for (const l of lines) {
    const key = keyOfUnreadableLine(l, header, keyColumns, delimiter);
    if (key !== undefined && candidates.has(key) && !out.has(key)) out.set(key, l.line);
  }
  return out;
}
