import { describe, expect, it } from 'vitest';
import { decodeDebeziumJson, sourceVersionOf } from '../../pipelines/normalize/debezium.js';
import { Rejection } from '../../pipelines/normalize/reasons.js';
import { debeziumJsonMessage, encodeDecimal, toDebeziumJson } from '../../connectors/debezium/envelope.js';
import { SourceChange } from '../../connectors/source-change.js';
import { debeziumFixture } from '../support/fixtures.js';

describe('Debezium JSON decoding', () => {
  it('decodes a Postgres update with schemas, DECIMAL bytes and the key', () => {
    const { key, value } = debeziumFixture('postgres-json-schemas-update.json');
    const e = decodeDebeziumJson(key, value)!;
    expect(e.op).toBe('u');
    expect(e.table).toBe('public.stock');
    expect(e.key).toEqual({ id: 42 });
    expect(e.before).toBeNull();
    expect(e.after).toMatchObject({ id: 42, item_code: 'NC-MARGAUX-19', depot: 'bdx-1', qty: { unscaled: 500n, scale: 2 } });
    expect(e.sourceVersion).toBe('00000000000024023128');
    expect(e.sourceTsMs).toBe(1732190000123);
    expect(e.position).toBe('lsn=24023128');
  });

  it('decodes a MySQL delete without schemas, with binlog position as version', () => {
    const { key, value } = debeziumFixture('mysql-json-plain-delete.json');
    const e = decodeDebeziumJson(key, value)!;
    expect(e.op).toBe('d');
    expect(e.table).toBe('warehouse.stock_levels');
    expect(e.before).toEqual({ sku: 'SV-MAL-19', warehouse: 'nj-b', bottles: 18 });
    expect(e.key).toEqual({ sku: 'SV-MAL-19', warehouse: 'nj-b' });
    expect(e.position).toBe('mysql-bin.000003:154#0');
  });

  it('treats a null value as a tombstone', () => {
    expect(decodeDebeziumJson(Buffer.from('{"id":1}'), null)).toBeNull();
  });

  it.each([
    ['not json', 'malformed_json'],
    ['{"after":{"a":1}}', 'not_debezium_envelope'],
    ['{"op":"x","source":{"connector":"postgresql","lsn":1}}', 'unsupported_op'],
    ['{"op":"c","source":{"connector":"postgresql"},"after":{}}', 'bad_version'],
    ['{"op":"c","source":{"connector":"oracle","scn":"1"},"after":{}}', 'bad_version'],
  ])('rejects %s as %s', (value, reason) => {
    try {
      decodeDebeziumJson(null, Buffer.from(value));
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(Rejection);
      expect((err as Rejection).reason).toBe(reason);
    }
  });

  it('orders versions of later binlog files, positions and rows after earlier ones', () => {
    const v = (file: string, pos: number, row: number) => sourceVersionOf('mysql', { file, pos, row }).version;
    expect(v('bin.000009', 999999, 5) < v('bin.000010', 4, 0)).toBe(true);
    expect(v('bin.000010', 4, 0) < v('bin.000010', 120, 0)).toBe(true);
    expect(v('bin.000010', 120, 0) < v('bin.000010', 120, 1)).toBe(true);
    const lsn = (n: number) => sourceVersionOf('postgresql', { lsn: n }).version;
    expect(lsn(999) < lsn(1000)).toBe(true);
  });

  it('orders a change from Cellar\'s Postgres reader by its commit first: a transaction that straddles a snapshot point is newer than the snapshot', () => {
    const snapshotAt = (p: number) => sourceVersionOf('postgresql', { lsn: p }).version;
    const streamed = (lsn: number, commit: number) => sourceVersionOf('postgresql', { lsn, cellar_commit_lsn: commit }).version;
    // Written at 900, committed at 1200; the snapshot was taken at 1000 without it.
    expect(streamed(900, 1200) > snapshotAt(1000)).toBe(true);
    // Committed before the snapshot point: already in the snapshot, so older.
    expect(streamed(900, 950) < snapshotAt(1000)).toBe(true);
    // Within one transaction, later changes are newer; a later transaction is newer than every change of an earlier one.
    expect(streamed(1100, 1200) < streamed(1150, 1200)).toBe(true);
    expect(streamed(1150, 1200) < streamed(1160, 1300)).toBe(true);
    // The native reader's messages carry it, and decode to the same version either way.
    const c = new SourceChange({ connector: 'postgresql', name: 'n', db: 'd', schema: 'public', table: 't' }, [{ name: 'id', type: 'int32', optional: false }], ['id'], { op: 'u', before: null, after: { id: 1 }, tsMs: 1, lsn: 900, commitLsn: 1200 });
    const m = toDebeziumJson(c);
    expect(m.topic).toBe('n.public.t');
    expect(c.event().sourceVersion).toBe(streamed(900, 1200));
    expect(decodeDebeziumJson(Buffer.from(m.key!), Buffer.from(m.value))!.sourceVersion).toBe(streamed(900, 1200));
  });

  it('round-trips the envelope builder, including negative decimals', () => {
    expect(encodeDecimal('-1.5', 2)).toBe(Buffer.from([0xff, 0x6a]).toString('base64'));
    const msg = debeziumJsonMessage(
      { connector: 'postgresql', name: 'n', db: 'd', schema: 'public', table: 't' },
      [{ name: 'id', type: 'int32', optional: false }, { name: 'q', type: 'decimal', scale: 3 }],
      ['id'],
      { op: 'c', before: null, after: { id: 7, q: '-12.250' }, tsMs: 1, lsn: 77 },
    );
    const e = decodeDebeziumJson(Buffer.from(msg.key!), Buffer.from(msg.value))!;
    expect(e.after).toEqual({ id: 7, q: { unscaled: -12250n, scale: 3 } });
    expect(e.key).toEqual({ id: 7 });
  });
});
