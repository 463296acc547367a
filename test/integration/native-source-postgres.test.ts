import pg from 'pg';
import { createDatabase } from '../../infra/local/postgres.js';
import { describeNativeSourceConformance, type NativeSourceHarness, type SourceDatabase, type StockRow } from '../conformance/native-source.suite.js';
import { supplierFromYaml } from '../support/fixtures.js';
import { rid, services } from '../support/services.js';
import { postgresSupplierYaml } from '../support/suppliers.js';

/**
 * The Postgres pgoutput reader behind the native-source contract: a fresh database per case on the run's
 * Postgres (wal_level=logical); retained log is the slot's unconfirmed WAL.
 */
const postgres: NativeSourceHarness = {
  kind: 'postgres',
  async setup(): Promise<SourceDatabase> {
    const name = rid('conf_');
    const url = await createDatabase(services().pgUrl, name);
    const db = new pg.Client(url);
    await db.connect();
    await db.query('CREATE TABLE public.stock (id int PRIMARY KEY, sku text, depot text, qty int)');
    await db.query('CREATE TABLE public.other (id int PRIMARY KEY, note text)');
    const prefix = rid('conf');
    const slot = `cellar_${prefix}`;
    const supplier = supplierFromYaml(postgresSupplierYaml(url, { id: rid('acme'), prefix, regions: { d1: 'eu-west', d2: 'us-east' } }));
    const lsn = async (sql: string) => Number((await db.query(sql, sql.includes('$1') ? [slot] : [])).rows[0]?.n ?? Number.NaN);
    return {
      supplier,
      stock: 'public.stock',
      other: 'public.other',
      async sql(statements) {
        if (typeof statements === 'string') return void (await db.query(statements));
        await db.query('BEGIN');
        try {
          for (const s of statements) await db.query(s);
          await db.query('COMMIT');
        } catch (err) {
          await db.query('ROLLBACK');
          throw err;
        }
      },
      async rows() {
        const r = await db.query<StockRow>('SELECT id, sku, depot, qty FROM public.stock');
        return new Map(r.rows.map((row) => [row.id, { ...row }]));
      },
      async rotateLog() {
        // A segment switch only moves on when the current segment has WAL: write some first.
        await db.query(`INSERT INTO public.other VALUES (-1, 'rotate') ON CONFLICT (id) DO UPDATE SET note = excluded.note || now()::text`);
        await db.query('SELECT pg_switch_wal()');
      },
      retainedLog: () => lsn('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS n FROM pg_replication_slots WHERE slot_name = $1'),
      logPosition: () => lsn(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS n`),
      async drop() {
        // The slot pins WAL for the whole cluster: drop it (its last session may still be ending).
        for (let i = 0; i < 50; i++) {
          const r = await db.query<{ active: boolean; pid: number | null }>('SELECT active, active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1', [slot]);
          if (!r.rows[0]) break;
          if (r.rows[0].active) await db.query('SELECT pg_terminate_backend($1)', [r.rows[0].pid]);
          else await db.query('SELECT pg_drop_replication_slot($1)', [slot]).catch(() => undefined);
          await new Promise((res) => setTimeout(res, 100));
        }
        await db.end();
        const admin = new pg.Client(services().pgUrl);
        await admin.connect();
        try {
          await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        } finally {
          await admin.end();
        }
      },
    };
  },
};

describeNativeSourceConformance('Postgres (pgoutput)', postgres);
