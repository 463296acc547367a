import { readSheet } from 'read-excel-file/node';
import type { ParsedCsv } from './csv.js';

/** True when the bytes are a zip archive, as an .xlsx workbook is. */
export function isXlsx(bytes: Uint8Array): boolean {
  return bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

/**
 * Reads one sheet of an .xlsx workbook (`sheet`: its name, default the first) as a feed file: the first
 * non-empty row is the header, each later row a row keyed by it (numbers as the workbook stores them, so
 * never rounded through a float; dates as ISO 8601; empty cells null). A row with values beyond the header
 * is an error for that row only. A file that is not a readable workbook, or lacks the sheet, throws.
 */
export async function parseFeedSpreadsheet(bytes: Buffer, opts: { sheet?: string } = {}): Promise<ParsedCsv> {
  const data = await readSheet(bytes, opts.sheet ?? 1, { parseNumber: (s: string) => s, trim: true });
  const out: ParsedCsv = { header: [], rows: [], errors: [], delimiter: 'xlsx', encoding: 'xlsx' };
  const text = (v: unknown): string | null => {
    if (v === null || v === undefined || v === '') return null;
    if (v instanceof Date) return v.toISOString();
    return String(v).trim() || null;
  };
  let header: string[] | undefined;
  data.forEach((cells, i) => {
    const line = i + 1;
    const values = cells.map(text);
    if (!header) {
      if (values.every((v) => v === null)) return;
      header = values.map((v) => v ?? '');
      out.header = header;
      const dup = header.find((h, k) => h !== '' && header!.indexOf(h) !== k);
      if (dup !== undefined) out.errors.push({ line, message: `column "${dup}" appears twice in the header`, text: header.join(',').slice(0, 500), header: true });
      return;
    }
    if (values.every((v) => v === null)) return;
    const extra = values.slice(header.length).some((v) => v !== null);
    if (extra) return void out.errors.push({ line, message: `values beyond the header's ${header.length} columns`, text: values.map((v) => v ?? '').join(',').slice(0, 500), fields: values.map((v) => v ?? '') });
    const row: Record<string, string | null> = {};
    header.forEach((h, k) => {
      if (h !== '') row[h] = values[k] ?? null;
    });
    out.rows.push({ line, row });
  });
  return out;
}
