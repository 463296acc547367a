import pg from 'pg';
import { pgConfig } from '../core/pg-tls.js';
import mysql from 'mysql2/promise';

/** Database engines the demo's suppliers run on. */
export type DemoEngine = 'postgres' | 'mariadb';

/** Parameter values of demo statements. */
export type SqlValue = string | number;

/**
 * One connection to a demo supplier's database, whatever its engine. Statements use Postgres-style
 * `$n` placeholders; on MariaDB they are rewritten to `?` with the values in placeholder order.
 */
export interface SupplierDb {
  query<T = Record<string, unknown>>(text: string, values?: SqlValue[]): Promise<T[]>;
  end(): Promise<void>;
}

/** `$n` placeholders → `?` with the values reordered to match (a placeholder may repeat). */
export function toMysqlPlaceholders(text: string, values: SqlValue[]): { text: string; values: SqlValue[] } {
  const ordered: SqlValue[] = [];
  const out = text.replace(/\$(\d+)/g, (_, n: string) => {
    const i = Number(n) - 1;
    if (i < 0 || i >= values.length) throw new Error(`placeholder $${n} has no value (${values.length} given)`);
    ordered.push(values[i]!);
    return '?';
  });
  return { text: out, values: ordered };
}

/** Opens a connection to a supplier database (`postgres://…` or `mysql://…`). */
export async function openSupplierDb(engine: DemoEngine, url: string, applicationName = 'cellar-demo'): Promise<SupplierDb> {
  if (engine === 'postgres') {
    const c = new pg.Client(pgConfig(url, { application_name: applicationName }));
    c.on('error', () => undefined);
    await c.connect();
    return {
      query: async <T>(text: string, values: SqlValue[] = []) => (await c.query(text, values)).rows as T[],
      end: () => c.end(),
    };
  }
  const c = await mysql.createConnection({ uri: url, multipleStatements: true, supportBigNumbers: true, bigNumberStrings: true });
  c.on('error', () => undefined);
  return {
    query: async <T>(text: string, values: SqlValue[] = []) => {
      const q = toMysqlPlaceholders(text, values);
      const [rows] = await c.query(q.text, q.values);
      return (Array.isArray(rows) ? rows : []) as T[];
    },
    end: () => c.end(),
  };
}
