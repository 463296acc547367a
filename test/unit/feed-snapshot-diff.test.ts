import { describe, expect, it } from 'vitest';
import { diffSnapshot, feedKey, keyOfUnreadableLine, MissingKeyError, rowHash, rowsNamedByUnreadableLines, truncationGuard, type FeedRow, type KeyedFeedRow } from '../../connectors/feed/snapshot-diff.js';

const keyed = (rows: FeedRow[], keys = ['sku', 'depot']): KeyedFeedRow[] => rows.map((r) => ({ ...r, key: feedKey(r, keys), hash: rowHash(r.row) }));
const row = (line: number, sku: string, depot: string, qty: string): FeedRow => ({ line, row: { sku, depot, qty } });

describe('feed snapshot diff', () => {
  it('flows only what changed: new and changed rows, and the keys a snapshot dropped', () => {
    const first = keyed([row(2, 'a', 'd1', '6'), row(3, 'b', 'd1', '12'), row(4, 'c', 'd2', '1')]);
    const applied = new Map(first.map((r) => [r.key, { hash: r.hash, version: 1 }]));
    const second = keyed([row(2, 'a', 'd1', '6'), row(3, 'b', 'd1', '10'), row(4, 'e', 'd2', '3')]);
    const d = diffSnapshot(applied, second);
    expect(d.upserts.map((r) => [r.line, r.row.sku, r.row.qty])).toEqual([[3, 'b', '10'], [4, 'e', '3']]);
    expect(d.deletes).toEqual([JSON.stringify(['c', 'd2'])]);
    expect([d.unchanged, d.duplicates]).toEqual([1, []]);
    expect(diffSnapshot(new Map(second.map((r) => [r.key, { hash: r.hash, version: 2 }])), second)).toEqual({ upserts: [], deletes: [], unchanged: 3, duplicates: [] });
  });

  it('keys cannot collide through a separator, a reordered header changes nothing, a repeated key keeps its first line', () => {
    const k = (a: string, b: string) => feedKey({ line: 1, row: { sku: a, depot: b } }, ['sku', 'depot']);
    expect(k('a|b', 'c')).not.toBe(k('a', 'b|c'));
    expect(rowHash({ sku: 'a', qty: '1' })).toBe(rowHash({ qty: '1', sku: 'a' }));
    expect(rowHash({ sku: 'a', qty: '1' })).not.toBe(rowHash({ sku: 'a', qty: null }));
    const d = diffSnapshot(new Map(), keyed([row(2, 'a', 'd1', '6'), row(9, 'a', 'd1', '7')]));
    expect(d.upserts.map((r) => r.line)).toEqual([2]);
    expect(d.duplicates).toEqual([{ line: 9, key: JSON.stringify(['a', 'd1']), firstLine: 2 }]);
  });

  it('refuses a row without a key value, naming its line and column', () => {
    expect(() => feedKey({ line: 7, row: { sku: 'a', depot: '' } }, ['sku', 'depot'])).toThrow(MissingKeyError);
    expect(() => feedKey({ line: 7, row: { sku: 'a' } }, ['sku', 'depot'])).toThrow('line 7: key column "depot" is empty');
  });

  it('holds back an empty or truncated snapshot, never a first one', () => {
    expect(truncationGuard(0, 0, 0.5)).toBeUndefined();
    expect(truncationGuard(1000, 0, 0.5)).toContain('no rows');
    expect(truncationGuard(1000, 499, 0.5)).toContain('fewer than 50 % of the 1000');
    expect(truncationGuard(1000, 500, 0.5)).toBeUndefined();
  });
});

describe('rows named by unreadable lines', () => {
  const header = ['sku', 'store', 'bottles'];
  const key = ['sku', 'store'];
  it('reads the key from an object\'s values, a split line\'s fields or its text, quotes and blanks dropped', () => {
    expect(keyOfUnreadableLine({ line: 1, text: '', values: { sku: ' W-1 ', store: 's1', bottles: { n: 1 } } }, [], key, ',')).toBe('["W-1","s1"]');
    expect(keyOfUnreadableLine({ line: 2, text: 'W-2,s1', fields: ['W-2', 's1'] }, header, key, ',')).toBe('["W-2","s1"]');
    expect(keyOfUnreadableLine({ line: 3, text: 'W-3;"s1;"7' }, header, key, ';')).toBe('["W-3","s1"]');
    expect(keyOfUnreadableLine({ line: 4, text: 'W-4' }, header, key, ',')).toBeUndefined(); // a key column has no field
    expect(keyOfUnreadableLine({ line: 5, text: ',s1,3' }, header, key, ',')).toBeUndefined(); // an empty key value
    expect(keyOfUnreadableLine({ line: 6, text: 'W-6,s1,3' }, ['code', 'store'], key, ',')).toBeUndefined(); // the header lacks a key column
    expect(keyOfUnreadableLine({ line: 1, text: 'sku,store,sku', fields: ['sku', 'store', 'sku'], header: true }, header, key, ',')).toBeUndefined(); // the header itself
  });

  it('names only rows the last snapshot had and this one lacks, the first line naming each', () => {
    const absent = ['["W-1","s1"]', '["W-2","s1"]'];
    const lines = [{ line: 7, text: 'W-1,s1' }, { line: 8, text: 'W-9,s1' }, { line: 9, text: 'W-1,s1,"' }, { line: 10, text: 'X,W-2,s1,4' }];
    expect([...rowsNamedByUnreadableLines(absent, header, key, lines, ',')]).toEqual([['["W-1","s1"]', 7]]);
    expect(rowsNamedByUnreadableLines([], header, key, lines, ',').size).toBe(0);
  });
});
