import type { FeedRow } from './snapshot-diff.js';

/** Delimiters a feed file may use; detected from the header line unless the supplier's settings name one. */
export const CSV_DELIMITERS = [',', ';', '\t', '|'] as const;

/** How to read one supplier's CSV files (all optional: detected when absent). */
export interface CsvOptions {
  delimiter?: string;
  /** `utf-8`, `utf-16le`, `windows-1252` (`latin1`), …; default: a BOM's, else UTF-8 when valid, else windows-1252. */
  encoding?: string;
  /** Values like `12,5` are decimal commas: read as `12.5` (only with a delimiter other than `,`). */
  decimalComma?: boolean;
}

/** A line that could not be read as a row: dead-lettered with its line, the rest of the file still applies. */
export interface CsvLineError {
  line: number;
  message: string;
  /** The raw text of the line (cut at 500 characters), for the dead letter. */
  text: string;
  /** The line's fields when it could be split (another number of fields than the header). */
  fields?: string[];
  /** The line's values by column when it was an object (a pushed JSON row with a bad value). */
  values?: Record<string, unknown>;
  /** Set for a problem of the header line itself (its rows still read). */
  header?: true;
}

/** A parsed CSV feed: its header, its rows, the lines refused, and what was detected. */
export interface ParsedCsv {
  header: string[];
  rows: FeedRow[];
  errors: CsvLineError[];
  delimiter: string;
  encoding: string;
}

/** Decodes a file's bytes: a BOM decides, else UTF-8 when the bytes are valid UTF-8, else windows-1252. */
export function decodeText(bytes: Uint8Array, encoding?: string): { text: string; encoding: string } {
  if (encoding) return { text: new TextDecoder(encoding).decode(bytes).replace(/^\uFEFF/, ''), encoding };
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return { text: new TextDecoder('utf-8').decode(bytes.subarray(3)), encoding: 'utf-8' };
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return { text: new TextDecoder('utf-16le').decode(bytes.subarray(2)), encoding: 'utf-16le' };
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return { text: new TextDecoder('utf-16be').decode(bytes.subarray(2)), encoding: 'utf-16be' };
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), encoding: 'utf-8' };
  } catch {
    return { text: new TextDecoder('windows-1252').decode(bytes), encoding: 'windows-1252' };
  }
}

/** The delimiter of a header line: the candidate occurring most often outside quotes (`,` on a tie or none). */
export function detectDelimiter(headerLine: string): string {
  let best: string = ',';
  let bestCount = 0;
  for (const d of CSV_DELIMITERS) {
    let n = 0;
    let quoted = false;
    for (const c of headerLine) {
      if (c === '"') quoted = !quoted;
      else if (c === d && !quoted) n++;
    }
    if (n > bestCount) [best, bestCount] = [d, n];
  }
  return best;
}

type Record_ = { line: number; fields: string[] } | { line: number; error: string; text: string };

/**
 * Splits CSV text into records (RFC 4180: quoted fields may hold delimiters, newlines and `""`). A record
 * that cannot be read (a closing quote followed by text, a quote never closed) is reported at its first
 * line and reading resumes at the next line, so one bad line never swallows the rest of the file.
 */
export function* csvRecords(text: string, delimiter: string): Generator<Record_> {
  const n = text.length;
  let i = 0;
  let line = 1;
  const lineEnd = (from: number) => {
    const e = text.indexOf('\n', from);
    return e < 0 ? n : e;
  };
  while (i < n) {
    const start = i;
    const startLine = line;
    const fields: string[] = [];
    let error: string | undefined;
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        let j = i + 1;
        let lines = 0;
        for (;;) {
          const q = text.indexOf('"', j);
          if (q < 0) {
            error = 'a quoted field is never closed';
            break;
          }
          field += text.slice(j, q);
          if (text[q + 1] === '"') {
            field += '"';
            j = q + 2;
            continue;
          }
          for (let k = j; k < q; k++) if (text[k] === '\n') lines++;
          j = q + 1;
          break;
        }
        if (error) break;
        const after = text[j];
        if (after !== undefined && after !== delimiter && after !== '\n' && after !== '\r') {
          error = `text after a closing quote (${JSON.stringify(text.slice(j, Math.min(j + 10, lineEnd(j))).replace(/\r$/, ''))})`;
          break;
        }
        line += lines;
        i = j;
      } else {
        let j = i;
        while (j < n && text[j] !== delimiter && text[j] !== '\n') j++;
        field = text.slice(i, j).replace(/\r$/, '');
        i = j;
      }
      fields.push(field);
      if (text[i] === '\r') i++;
      if (i >= n || text[i] === '\n') {
        i++;
        line++;
        break;
      }
      i++; // the delimiter
    }
    if (error) {
      const end = lineEnd(start);
      yield { line: startLine, error, text: text.slice(start, end).replace(/\r$/, '').slice(0, 500) };
      i = end + 1;
      line = startLine + 1;
      continue;
    }
    if (fields.length === 1 && fields[0]!.trim() === '') continue; // an empty line
    yield { line: startLine, fields };
  }
}

const DECIMAL_COMMA = /^[+-]?\d+,\d+$/;

/**
 * Parses a CSV feed file: the first non-empty line is the header (column names, trimmed), every later
 * line a row keyed by those names; empty cells are `null`. A line with another number of fields than
 * the header, or that cannot be read, is an error for that line only.
 */
export function parseFeedCsv(bytes: Uint8Array, opts: CsvOptions = {}): ParsedCsv {
  const { text, encoding } = decodeText(bytes, opts.encoding);
  const firstLine = text.slice(0, lineEndOf(text)).replace(/\r$/, '');
  const delimiter = opts.delimiter ?? detectDelimiter(firstLine);
  const decimalComma = (opts.decimalComma ?? false) && delimiter !== ',';
  const out: ParsedCsv = { header: [], rows: [], errors: [], delimiter, encoding };
  let header: string[] | undefined;
  for (const r of csvRecords(text, delimiter)) {
    if ('error' in r) {
      out.errors.push({ line: r.line, message: r.error, text: r.text });
      continue;
    }
    if (!header) {
      header = r.fields.map((f) => f.trim());
      const dup = header.find((h, k) => header!.indexOf(h) !== k);
      if (dup !== undefined) out.errors.push({ line: r.line, message: `column "${dup}" appears twice in the header`, text: firstLine.slice(0, 500), header: true });
      out.header = header;
      continue;
    }
    if (r.fields.length !== header.length) {
      out.errors.push({ line: r.line, message: `${r.fields.length} fields where the header has ${header.length}`, text: r.fields.join(delimiter).slice(0, 500), fields: r.fields });
      continue;
    }
    const row: Record<string, string | null> = {};
    header.forEach((h, k) => {
      const v = r.fields[k]!.trim();
      row[h] = v === '' ? null : decimalComma && DECIMAL_COMMA.test(v) ? v.replace(',', '.') : v;
    });
    out.rows.push({ line: r.line, row });
  }
  return out;
}

function lineEndOf(text: string): number {
  const e = text.indexOf('\n');
  return e < 0 ? text.length : e;
}
