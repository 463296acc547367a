import { describe, expect, it } from 'vitest';
import { csvRecords, detectDelimiter, parseFeedCsv } from '../../connectors/feed/csv.js';

const enc = (s: string) => new TextEncoder().encode(s);

describe('CSV feed files', () => {
  it('reads quoted fields with delimiters, quotes and newlines, and keeps line numbers', () => {
    const p = parseFeedCsv(enc('sku,name,qty\r\nA1,"Château X, ""Grand"" Cru",6\r\nB2,"two\nlines",12\r\n\r\nC3,plain,1\r\n'));
    expect(p.header).toEqual(['sku', 'name', 'qty']);
    expect(p.rows).toEqual([
      { line: 2, row: { sku: 'A1', name: 'Château X, "Grand" Cru', qty: '6' } },
      { line: 3, row: { sku: 'B2', name: 'two\nlines', qty: '12' } },
      { line: 6, row: { sku: 'C3', name: 'plain', qty: '1' } },
    ]);
    expect(p.errors).toEqual([]);
  });

  it('refuses a malformed line with its number and reads the rest of the file', () => {
    const p = parseFeedCsv(enc('sku,qty\nA,1\nB,"2"x\nC,3,9\nD,"4\nE,5\n'));
    expect(p.rows.map((r) => [r.line, r.row.sku])).toEqual([[2, 'A'], [6, 'E']]);
    expect(p.errors.map((e) => [e.line, e.message])).toEqual([
      [3, 'text after a closing quote ("x")'],
      [4, '3 fields where the header has 2'],
      [5, 'a quoted field is never closed'],
    ]);
    expect(p.errors[2]!.text).toBe('D,"4');
  });

  it('detects the delimiter and the encoding, and reads decimal commas when told', () => {
    expect(detectDelimiter('sku;depot;qty')).toBe(';');
    expect(detectDelimiter('sku\tdepot')).toBe('\t');
    expect(detectDelimiter('"a;b",c')).toBe(',');
    const latin1 = Uint8Array.from([...enc('sku;qty\nCh'), 0xe2, ...enc('teau;12,5\n')]);
    const p = parseFeedCsv(latin1, { decimalComma: true });
    expect([p.delimiter, p.encoding, p.rows[0]!.row]).toEqual([';', 'windows-1252', { sku: 'Château', qty: '12.5' }]);
    const bom = Uint8Array.from([0xef, 0xbb, 0xbf, ...enc('sku,qty\nA,1\n')]);
    expect(parseFeedCsv(bom).header).toEqual(['sku', 'qty']);
    expect(parseFeedCsv(enc('sku,qty\nA,"1,5"\n'), { decimalComma: true }).rows[0]!.row.qty).toBe('1,5');
  });

  it('an empty cell is null; a file of only a header has no rows; a repeated column is named', () => {
    expect(parseFeedCsv(enc('sku,qty\nA,\n')).rows[0]!.row).toEqual({ sku: 'A', qty: null });
    expect(parseFeedCsv(enc('sku,qty\n')).rows).toEqual([]);
    expect(parseFeedCsv(enc('sku,sku\nA,B\n')).errors[0]!.message).toBe('column "sku" appears twice in the header');
    expect([...csvRecords('', ',')]).toEqual([]);
  });
});
