import mysql from 'mysql2/promise';
import { describe } from 'vitest';
import { describeNativeSourceConformance, type NativeSourceHarness, type SourceDatabase, type StockRow } from '../conformance/native-source.suite.js';
import { supplierFromYaml } from '../support/fixtures.js';
import { rid, services } from '../support/services.js';

const mariadbUrl = services().mariadbUrl;

/**
 * The MySQL/MariaDB binlog reader behind the native-source contract: a fresh database per case on the
 * run's MariaDB (binlog on). A binlog source keeps no log at the server for its reader: the checkpoint
 * is the consumer's, so the retained-log case does not apply.
 */
const mariadb: NativeSourceHarness = {
  kind: 'mariadb',
  retainedLogSkipReason: 'a binlog reader holds no server-side position (binlog retention is the server\'s expire_logs setting, not the reader\'s)',
  async setup(): Promise<SourceDatabase> {
    const name = rid('conf_');
    const db = await mysql.createConnection({ uri: mariadbUrl!, multipleStatements: true });
    await db.query(`CREATE DATABASE ${name}`);
    await db.query(`CREATE TABLE ${name}.stock (id int PRIMARY KEY, sku text, depot text, qty int)`);
    await db.query(`CREATE TABLE ${name}.other (id int PRIMARY KEY, note text)`);
    const u = new URL(mariadbUrl!);
    // A password reaches the supplier as registry files name secrets: through the environment.
    if (u.password) process.env.CELLAR_CONFORMANCE_MARIADB_PASSWORD = decodeURIComponent(u.password);
    const password = u.password ? ', password: "${CELLAR_CONFORMANCE_MARIADB_PASSWORD}"' : '';
    const supplier = supplierFromYaml(`id: ${rid('cascade')}
name: Cascade
source:
  kind: mariadb
  connection: { host: ${u.hostname}, port: ${u.port || 3306}, user: ${decodeURIComponent(u.username) || 'root'}${password} }
  topicPrefix: ${rid('conf')}
  tables: [{ name: ${name}.stock }]
mapping: { sku: sku, warehouse: depot, quantity: qty, regions: { d1: eu-west, d2: us-east } }
`);
    return {
      supplier,
      stock: `${name}.stock`,
      other: `${name}.other`,
      async sql(statements) {
        if (typeof statements === 'string') return void (await db.query(statements));
        await db.beginTransaction();
        try {
          for (const s of statements) await db.query(s);
          await db.commit();
        } catch (err) {
          await db.rollback();
          throw err;
        }
      },
      async rows() {
        const [rows] = await db.query<mysql.RowDataPacket[]>(`SELECT id, sku, depot, qty FROM ${name}.stock`);
        return new Map(rows.map((r) => [Number(r.id), { id: Number(r.id), sku: r.sku as string, depot: r.depot as string, qty: Number(r.qty) } satisfies StockRow]));
      },
      async rotateLog() {
        await db.query('FLUSH BINARY LOGS');
      },
      async drop() {
        await db.query(`DROP DATABASE IF EXISTS ${name}`).catch(() => undefined);
        await db.end();
      },
    };
  },
};

describe.skipIf(!mariadbUrl)(`MariaDB binlog reader${mariadbUrl ? '' : ' (skipped: no MariaDB for this run; install mariadb-server or set CELLAR_TEST_MARIADB_URL)'}`, () => {
  describeNativeSourceConformance('MariaDB (binlog)', mariadb);
});
