import { parseFeedCsv, type CsvLineError } from './csv.js';
import type { FeedRow } from './snapshot-diff.js';

/** A row a supplier pushed: its columns, an upsert or a delete, and its own version when it sends one. */
export interface PushedRow extends FeedRow {
  /**
   * `keep` (queued by the API, never sent): a row of a pushed snapshot whose line was refused but names
   * its key (`row` holds the key columns): it stays as last applied instead of being deleted as missing.
   */
  op: 'upsert' | 'delete' | 'keep';
  /** The supplier's own row version (`_version`): a later one wins; absent, arrival order decides. */
  version?: number;
}

/** A pushed request body read into rows, and the rows (lines) that could not be read, with why. */
export interface ParsedPush {
  rows: PushedRow[];
  errors: CsvLineError[];
  /** CSV: the header's columns (where an unreadable line's key fields are); empty for JSON. */
  header: string[];
  /** CSV: the delimiter read. */
  delimiter: string;
}

/** Body formats the feed endpoint reads, by content type. */
export const PUSH_TYPES = { json: 'application/json', ndjson: 'application/x-ndjson', csv: 'text/csv' } as const;

const MAX_TEXT = 500;

/**
 * Reads a pushed body: a JSON array of row objects (or `{"rows": [...]}`), NDJSON (one object a line) or
 * CSV (a header line, then rows). Columns are the supplier's own; `_op` (`upsert`, the default, or
 * `delete`) and `_version` (a whole number ≥ 0) are Cellar's. Values are kept as text, as a file's are.
 * A row that cannot be read is an error at its line (NDJSON, CSV) or position (JSON, from 1); the others
 * are read. Pure.
 */
export function parsePushBody(body: unknown, format: keyof typeof PUSH_TYPES, opts: { decimalComma?: boolean } = {}): ParsedPush {
  const out: ParsedPush = { rows: [], errors: [], header: [], delimiter: ',' };
  if (format === 'csv') {
    const bytes = typeof body === 'string' ? Buffer.from(body) : Buffer.isBuffer(body) ? body : Buffer.alloc(0);
    const parsed = parseFeedCsv(bytes, { decimalComma: opts.decimalComma ?? false });
    out.errors.push(...parsed.errors);
    out.header = parsed.header;
    out.delimiter = parsed.delimiter;
    for (const r of parsed.rows) take(out, r.line, r.row, JSON.stringify(r.row));
    return out;
  }
  if (format === 'ndjson') {
    const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : '';
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch (err) {
        return void out.errors.push({ line: i + 1, message: `not JSON: ${(err as Error).message}`, text: line.slice(0, MAX_TEXT) });
      }
      take(out, i + 1, v, line);
    });
    return out;
  }
  const list = Array.isArray(body) ? body : body && typeof body === 'object' && Array.isArray((body as { rows?: unknown }).rows) ? (body as { rows: unknown[] }).rows : undefined;
  if (!list) {
    out.errors.push({ line: 0, message: 'the body is not a JSON array of rows (or an object with "rows")', text: JSON.stringify(body ?? null).slice(0, MAX_TEXT) });
    return out;
  }
  list.forEach((v, i) => take(out, i + 1, v, JSON.stringify(v ?? null)));
  return out;
}

/** Adds one row, or the reason it cannot be read. */
function take(out: ParsedPush, line: number, v: unknown, raw: string): void {
  const text = raw.slice(0, MAX_TEXT);
  if (!v || typeof v !== 'object' || Array.isArray(v)) return void out.errors.push({ line, message: 'a row must be an object of column values', text });
  const values = v as Record<string, unknown>;
  const row: Record<string, string | null> = {};
  let op: PushedRow['op'] = 'upsert';
  let version: number | undefined;
  for (const [k, x] of Object.entries(values)) {
    if (k === '_op') {
      if (x !== 'upsert' && x !== 'delete' && x !== null && x !== '') return void out.errors.push({ line, message: `_op ${JSON.stringify(x)}: expected "upsert" or "delete"`, text, values });
      if (x === 'delete') op = 'delete';
      continue;
    }
    if (k === '_version') {
      if (x === null || x === '') continue;
      const n = typeof x === 'number' ? x : typeof x === 'string' && /^\d{1,16}$/.test(x) ? Number(x) : NaN;
      if (!Number.isSafeInteger(n) || n < 0) return void out.errors.push({ line, message: `_version ${JSON.stringify(x)}: expected a whole number from 0 to 2^53 − 1`, text, values });
      version = n;
      continue;
    }
    if (x === null || x === undefined) row[k] = null;
    else if (typeof x === 'string') row[k] = x.trim() === '' ? null : x.trim();
    else if (typeof x === 'number' || typeof x === 'boolean') row[k] = String(x);
    else return void out.errors.push({ line, message: `column "${k}": a value must be text, a number or null`, text, values });
  }
  out.rows.push({ line, row, op, ...(version !== undefined ? { version } : {}) });
}
