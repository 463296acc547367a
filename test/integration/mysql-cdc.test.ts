import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import { createMysqlCdcSource, type BinlogPosition, type MysqlCdcBatch, type MysqlCdcSource } from '../../connectors/mysql-cdc/index.js';
import { toDebeziumJson } from '../../connectors/debezium/envelope.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { decodeDebeziumJson, type ChangeEvent } from '../../pipelines/normalize/debezium.js';
import { eventually, rid, services } from '../support/services.js';
import { decodeChecked } from '../support/decode.js';

const log = createLogger('mysql-cdc-test', 'warn');
const mariadbUrl = services().mariadbUrl;

const decode = (b: MysqlCdcBatch) => b.changes.map((m) => decodeChecked(m));
const keyOf = (e: ChangeEvent) => `${String(e.key!.sku)}|${String(e.key!.warehouse)}`;

/** Latest row per key from the events, with the pipeline's version rule; a truncate removes every row before it. */
function apply(events: ChangeEvent[]): Map<string, Record<string, unknown>> {
  const rows = new Map<string, { v: string; row: Record<string, unknown> | null }>();
  for (const e of events) {
    if (e.op === 't') {
      for (const [k, r] of rows) if (r.v < e.sourceVersion) rows.set(k, { v: e.sourceVersion, row: null });
      continue;
    }
    const cur = rows.get(keyOf(e));
    if (cur && cur.v >= e.sourceVersion) continue;
    rows.set(keyOf(e), { v: e.sourceVersion, row: e.op === 'd' ? null : e.after });
  }
  return new Map([...rows].filter(([, r]) => r.row).map(([k, r]) => [k, r.row!]));
}

const skipReason = mariadbUrl ? '' : ' (skipped: no MariaDB for this run; install mariadb-server or set MARIADB_URL)';

describe.skipIf(!mariadbUrl)(`native MySQL/MariaDB CDC reader (binlog)${skipReason}`, () => {
  const dbName = rid('supplier_');
  const prefix = rid('sup');
  const sources: MysqlCdcSource[] = [];
  let db: mysql.Connection;
  /** Every decoded event and the position of the last batch handled, across readers. */
  const events: ChangeEvent[] = [];
  let lastPosition: BinlogPosition | undefined;

  beforeAll(async () => {
    db = await mysql.createConnection(`${mariadbUrl!}?multipleStatements=true`);
    await db.query(`CREATE DATABASE ${dbName}`);
    await db.query(`CREATE TABLE ${dbName}.stock (sku varchar(32), warehouse varchar(16), liters decimal(10,3), PRIMARY KEY (sku, warehouse))`);
    const values = Array.from({ length: 300 }, (_, i) => `('sku-${i}', 'w${i % 3}', ${i}.125)`).join(',');
    await db.query(`INSERT INTO ${dbName}.stock VALUES ${values}`);
  });

  afterAll(async () => {
    for (const s of sources) await s.stop();
    await db?.query(`DROP DATABASE IF EXISTS ${dbName}`).catch(() => undefined);
    await db?.end();
  });

  const start = async (handler: (b: MysqlCdcBatch) => Promise<void>, position?: BinlogPosition) => {
    const s = createMysqlCdcSource({ url: mariadbUrl, topicPrefix: prefix, tables: [`${dbName}.stock`], snapshotFetchRows: 50 }, log);
    sources.push(s);
    await s.start(handler, position ? { position } : {});
    return s;
  };
  const tableRows = async () => {
    const [rows] = await db.query<mysql.RowDataPacket[]>(`SELECT sku, warehouse, liters FROM ${dbName}.stock`);
    return new Map(rows.map((r) => [`${r.sku}|${r.warehouse}`, r]));
  };

  it('snapshots existing rows as r, streams rows written during the snapshot exactly once, then every change', async () => {
    let wrote = false;
    let snapshotDone = false;
    await start(async (b) => {
      events.push(...decode(b));
      lastPosition = b.position;
      if (b.snapshotComplete) snapshotDone = true;
      if (b.snapshot && !wrote) {
        wrote = true;
        // Committed while the snapshot is being read: not in it, so they must come from the stream.
        await db.query(`INSERT INTO ${dbName}.stock VALUES ${Array.from({ length: 20 }, (_, i) => `('new-${i}', 'w1', 1)`).join(',')}`);
        await db.query(`UPDATE ${dbName}.stock SET liters = liters + 1000 WHERE sku IN (${Array.from({ length: 10 }, (_, i) => `'sku-${i}'`).join(',')})`);
        await db.query(`DELETE FROM ${dbName}.stock WHERE sku IN ('sku-20', 'sku-21', 'sku-22', 'sku-23', 'sku-24')`);
      }
    });
    expect(await eventually(async () => events.some((e) => e.op === 'd'), 30_000)).toBe(true);
    expect(snapshotDone).toBe(true);
    const snapshot = events.filter((e) => e.op === 'r');
    expect(snapshot).toHaveLength(300);
    expect(new Set(snapshot.map(keyOf)).size).toBe(300);
    expect(snapshot[0]!.table).toBe(`${dbName}.stock`);
    expect(snapshot[0]!.source).toMatchObject({ connector: 'mysql', name: prefix, db: dbName, table: 'stock', snapshot: 'true' });
    expect(events.filter((e) => e.op === 'c').map(keyOf).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `new-${i}|w1`).sort());
    expect(events.filter((e) => e.op === 'u')).toHaveLength(10);
    expect(events.filter((e) => e.op === 'd').map(keyOf).sort()).toEqual(['sku-20|w2', 'sku-21|w0', 'sku-22|w1', 'sku-23|w2', 'sku-24|w0']);
    const maxSnapshot = snapshot.map((e) => e.sourceVersion).sort().at(-1)!;
    expect(events.filter((e) => e.op !== 'r' && e.op !== 't').every((e) => e.sourceVersion > maxSnapshot)).toBe(true);
    // The snapshot starts with a truncate of the table just below its rows: rows gone since an earlier
    // capture stop counting.
    const truncates = events.filter((e) => e.op === 't');
    expect(truncates.map((e) => e.table)).toEqual([`${dbName}.stock`]);
    expect(snapshot.every((e) => e.sourceVersion > truncates[0]!.sourceVersion)).toBe(true);

    const n = events.length;
    await db.query(`UPDATE ${dbName}.stock SET liters = 7.5 WHERE sku = 'new-1'`);
    await db.query(`BEGIN; INSERT INTO ${dbName}.stock VALUES ('x', 'w9', 3); UPDATE ${dbName}.stock SET liters = 4 WHERE sku = 'x'; DELETE FROM ${dbName}.stock WHERE sku = 'sku-30'; COMMIT`);
    await db.query(`UPDATE ${dbName}.stock SET warehouse = 'w7' WHERE sku = 'sku-40'`);
    expect(await eventually(async () => events.length >= n + 6, 20_000)).toBe(true);
    const streamed = events.slice(n);
    expect(streamed.map((e) => e.op)).toEqual(['u', 'c', 'u', 'd', 'd', 'c']);
    expect(streamed[0]).toMatchObject({ before: { sku: 'new-1', liters: '1.000' }, after: { sku: 'new-1', liters: '7.500' } });
    expect(streamed[2]).toMatchObject({ before: { liters: '3.000' }, after: { liters: '4.000' } });
    expect(streamed[3]!.before).toEqual({ sku: 'sku-30', warehouse: 'w0', liters: '30.125' });
    // A primary-key change: a delete of the old key, then a create of the new one.
    expect(streamed[4]).toMatchObject({ op: 'd', key: { sku: 'sku-40', warehouse: 'w1' }, after: null });
    expect(streamed[5]).toMatchObject({ op: 'c', key: { sku: 'sku-40', warehouse: 'w7' }, after: { liters: '40.125' } });
    expect(streamed[1]!.source).toMatchObject({ connector: 'mysql', snapshot: 'false', server_id: 1 });
    expect(String(streamed[1]!.source.gtid)).toMatch(/^\d+-\d+-\d+$/);
    // Versions rise with every row; only the two halves of the key change share one.
    const versions = events.filter((e) => e.op !== 'r').map((e) => e.sourceVersion);
    expect(versions.every((v, i) => i === 0 || v >= versions[i - 1]!)).toBe(true);
    expect(versions.length - new Set(versions).size).toBe(1);

    const expected = await tableRows();
    const got = apply(events);
    expect([...got.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [k, row] of expected) expect(got.get(k), k).toEqual({ sku: row.sku, warehouse: row.warehouse, liters: row.liters });
  }, 90_000);

  it('resumes from the last batch position: each new change exactly once, nothing old again', async () => {
    const before = lastPosition!;
    expect(before.file).toMatch(/\.\d+$/);
    const seenVersions = new Set(events.filter((e) => e.op !== 'r').map((e) => e.sourceVersion));
    const maxSeen = [...seenVersions].sort().at(-1)!;
    await sources.pop()!.stop();
    await db.query(`INSERT INTO ${dbName}.stock VALUES ${Array.from({ length: 10 }, (_, i) => `('after-${i}', 'w2', ${i})`).join(',')}`);
    await db.query(`FLUSH BINARY LOGS`);
    await db.query(`UPDATE ${dbName}.stock SET liters = 99 WHERE sku = 'after-3'`);

    const again: ChangeEvent[] = [];
    const batches: MysqlCdcBatch[] = [];
    await start(async (b) => {
      batches.push(b);
      again.push(...decode(b));
      lastPosition = b.position;
    }, before);
    expect(await eventually(async () => again.some((e) => e.op === 'u'), 20_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(again.filter((e) => e.op === 'r')).toEqual([]);
    expect(again.map((e) => `${e.op}:${keyOf(e)}`)).toEqual([...Array.from({ length: 10 }, (_, i) => `c:after-${i}|w2`), 'u:after-3|w2']);
    expect(again.every((e) => e.sourceVersion > maxSeen)).toBe(true);
    // The update comes from the next binlog file: the file name follows the rotation.
    expect(batches.at(-1)!.position.file).not.toBe(before.file);
    events.push(...again);
  }, 60_000);

  it('resumes by GTID: a saved position whose binlog file this server never had (as after a failover) still resumes exactly', async () => {
    const before = lastPosition!;
    expect(before.gtids, 'positions carry the MariaDB GTID position').toMatch(/^\d+-\d+-\d+/);
    const maxSeen = events.filter((e) => e.op !== 'r').map((e) => e.sourceVersion).sort().at(-1)!;
    await sources.pop()!.stop();
    await db.query(`INSERT INTO ${dbName}.stock VALUES ${Array.from({ length: 5 }, (_, i) => `('gtid-${i}', 'w1', ${i})`).join(',')}`);
    await db.query(`DELETE FROM ${dbName}.stock WHERE sku = 'after-0'`);

    const again: ChangeEvent[] = [];
    const batches: MysqlCdcBatch[] = [];
    // Another server's file name and offset: only the GTIDs can say where to resume.
    await start(async (b) => {
      batches.push(b);
      again.push(...decode(b));
      lastPosition = b.position;
    }, { file: 'failed-primary-bin.000042', pos: 123_456, gtids: before.gtids! });
    expect(await eventually(async () => again.some((e) => e.op === 'd'), 20_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(again.map((e) => `${e.op}:${keyOf(e)}`)).toEqual([...Array.from({ length: 5 }, (_, i) => `c:gtid-${i}|w1`), 'd:after-0|w2']);
    expect(again.every((e) => e.sourceVersion > maxSeen)).toBe(true);
    // Positions after the resume name this server's real binlog file again, and the GTIDs advanced.
    expect(batches.at(-1)!.position.file).toMatch(/\.\d+$/);
    expect(batches.at(-1)!.position.file).not.toBe('failed-primary-bin.000042');
    expect(batches.at(-1)!.position.gtids).not.toBe(before.gtids);
    events.push(...again);
  }, 60_000);

  it('with resumeBy=position, resumes by file/offset even when GTIDs are saved', async () => {
    const before = lastPosition!;
    await sources.pop()!.stop();
    await db.query(`UPDATE ${dbName}.stock SET liters = 5 WHERE sku = 'gtid-2'`);
    const again: ChangeEvent[] = [];
    const s = createMysqlCdcSource({ url: mariadbUrl, topicPrefix: prefix, tables: [`${dbName}.stock`], resumeBy: 'position' }, log);
    sources.push(s);
    await s.start(async (b) => {
      again.push(...decode(b));
      lastPosition = b.position;
    }, { position: before });
    expect(await eventually(async () => again.length >= 1, 20_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(again.map((e) => `${e.op}:${keyOf(e)}`)).toEqual(['u:gtid-2|w1']);
    events.push(...again);
    // A bogus file fails clearly in this mode instead of silently reading from elsewhere.
    await sources.pop()!.stop();
    const bogus = createMysqlCdcSource({ url: mariadbUrl, topicPrefix: prefix, tables: [`${dbName}.stock`], resumeBy: 'position' }, log);
    // The server refuses the unknown file either while the stream opens or right after.
    const failed = bogus.start(async () => undefined, { position: { file: 'failed-primary-bin.000042', pos: 4, gtids: before.gtids! } }).then(() => bogus.done);
    await expect(failed).rejects.toMatchObject({ code: 'cdc_binlog_position', message: expect.stringMatching(/snapshot again/) });
    await bogus.stop();
    const s2 = createMysqlCdcSource({ url: mariadbUrl, topicPrefix: prefix, tables: [`${dbName}.stock`] }, log);
    sources.push(s2);
    await s2.start(async (b) => { events.push(...decode(b)); lastPosition = b.position; }, { position: lastPosition! });
  }, 60_000);

  it('emits a truncate (op t) and the applied events equal the table', async () => {
    const n = events.length;
    await sources.pop()!.stop();
    await start(async (b) => {
      events.push(...decode(b));
      lastPosition = b.position;
    }, lastPosition);
    await db.query(`TRUNCATE TABLE ${dbName}.stock`);
    await db.query(`INSERT INTO ${dbName}.stock VALUES ('post', 'w1', 2.5)`);
    expect(await eventually(async () => events.slice(n).some((e) => e.op === 'c'), 20_000)).toBe(true);
    expect(events.slice(n).map((e) => e.op)).toEqual(['t', 'c']);
    expect(events[n]!.key).toBeNull();
    const got = apply(events);
    expect([...got.values()]).toEqual([{ sku: 'post', warehouse: 'w1', liters: '2.500' }]);
    expect((await tableRows()).size).toBe(1);
  }, 60_000);

  it('encodes values alike in the snapshot and the stream, with Connect types in the schema', async () => {
    await db.query(`CREATE TABLE ${dbName}.kinds (id int PRIMARY KEY, small smallint, big bigint, huge bigint unsigned, d datetime(3),
      ts timestamp(3) NULL, f double, b blob, amount decimal(20,4), note text)`);
    const row = (id: number) => `(${id}, -3, 9007199254740993, 18446744073709551615, '2024-01-02 03:04:05.678', '2024-05-06 07:08:09.123', 1.25, x'00ff', '-12.5', 'é')`;
    await db.query(`INSERT INTO ${dbName}.kinds VALUES ${row(1)}`);
    const raw: Array<{ topic: string; key: string | null; value: string }> = [];
    const s = createMysqlCdcSource({ url: mariadbUrl, topicPrefix: prefix, tables: [`${dbName}.kinds`] }, log);
    sources.push(s);
    await s.start(async (b) => void raw.push(...b.changes.filter((c) => c.spec.op !== 't').map((c) => toDebeziumJson(c))));
    await db.query(`INSERT INTO ${dbName}.kinds VALUES ${row(2)}`);
    expect(await eventually(async () => raw.length === 2, 20_000)).toBe(true);
    const [snap, streamed] = raw.map((m) => JSON.parse(m.value) as { schema: { fields: Array<{ field: string; fields: Array<{ field: string; type: string }> }> }; payload: { op: string; after: Record<string, unknown> } });
    expect(raw[0]!.topic).toBe(`${prefix}.${dbName}.kinds`);
    expect([snap!.payload.op, streamed!.payload.op]).toEqual(['r', 'c']);
    const expected = {
      small: -3, big: '9007199254740993', huge: '18446744073709551615', d: '2024-01-02T03:04:05.678Z', ts: '2024-05-06T07:08:09.123Z',
      f: 1.25, b: Buffer.from([0, 255]).toString('base64'), amount: '-12.5000', note: 'é',
    };
    expect(snap!.payload.after).toEqual({ id: 1, ...expected });
    expect(streamed!.payload.after).toEqual({ id: 2, ...expected });
    const types = Object.fromEntries(snap!.schema.fields.find((f) => f.field === 'after')!.fields.map((f) => [f.field, f.type]));
    expect(types).toEqual({ id: 'int32', small: 'int32', big: 'int64', huge: 'int64', d: 'string', ts: 'string', f: 'double', b: 'string', amount: 'string', note: 'string' });
  }, 30_000);

  it('refuses clearly: a user without replication grants, a missing table, a table without primary key', async () => {
    const user = rid('noperm');
    await db.query(`CREATE USER '${user}'@'%' IDENTIFIED BY 'pw'`);
    await db.query(`GRANT SELECT ON ${dbName}.* TO '${user}'@'%'`);
    const url = mariadbUrl!.replace('mysql://root@', `mysql://${user}:pw@`);
    const noperm = createMysqlCdcSource({ url, topicPrefix: rid('x'), tables: [`${dbName}.stock`] }, log);
    await expect(noperm.prepare()).rejects.toMatchObject({ code: 'cdc_privileges', message: expect.stringMatching(/REPLICATION SLAVE and REPLICATION CLIENT/) });

    const missing = createMysqlCdcSource({ url: mariadbUrl, topicPrefix: rid('x'), tables: [`${dbName}.nope`] }, log);
    await expect(missing.prepare()).rejects.toMatchObject({ code: 'cdc_table' });
    await db.query(`CREATE TABLE ${dbName}.nokey (sku varchar(32), qty int)`);
    const nokey = createMysqlCdcSource({ url: mariadbUrl, topicPrefix: rid('x'), tables: [`${dbName}.nokey`] }, log);
    await expect(nokey.prepare()).rejects.toMatchObject({ code: 'cdc_primary_key' });
    const down = createMysqlCdcSource({ url: 'mysql://root@127.0.0.1:1/', topicPrefix: rid('x'), tables: [`${dbName}.stock`] }, log);
    await expect(down.prepare()).rejects.toMatchObject({ code: 'mysql_unavailable', retriable: true });
    await down.stop();
    await down.stop();
  }, 30_000);
});
