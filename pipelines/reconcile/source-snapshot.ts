import pg from 'pg';
import mysql from 'mysql2/promise';
import { createMysqlCdcSource, type MysqlCdcSource } from '../../connectors/mysql-cdc/index.js';
import { createPostgresCdcSource, type PostgresCdcSource } from '../../connectors/postgres-cdc/index.js';
import { mysqlUrl, postgresUrl } from '../../connectors/registry/connection.js';
import type { Supplier } from '../../connectors/registry/loader.js';
import { CellarError, ConfigError, fromPgError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { fromMysqlError } from '../../connectors/mysql-cdc/source.js';

/** One current row of a captured table, as the database driver returns it. */
export interface SourceRow {
  table: string;
  row: Record<string, unknown>;
}

/** A Debezium JSON message of a source row (the shape the readers emit). */
export interface SourceMessage {
  topic: string;
  key: string | null;
  value: string;
}

/**
 * Read-only access to a supplier's current rows for reconciliation: a chunked scan inside one consistent
 * snapshot, point reads of given keys, and the Debezium message of a row (to normalize it with the
 * pipeline's own code, or to correct it).
 */
export interface SupplierSnapshot {
  /** Streams every captured row of every table, in chunks of at most `chunkRows`, from one consistent snapshot. */
  scan(onChunk: (rows: SourceRow[]) => void | Promise<void>, chunkRows: number): Promise<void>;
  /** The current rows of `table` with the given primary keys (column → text value); absent keys are deleted rows. */
  fetch(table: string, keys: Array<Record<string, string>>): Promise<SourceRow[]>;
  /** The row as a snapshot (`r`) or delete (`d`) message; `cellarVersion` makes it a repair. */
  message(row: SourceRow, op: 'r' | 'd', cellarVersion?: string): SourceMessage;
  /** The key and values the normalizer would decode from the row's snapshot message (without building it). */
  image(row: SourceRow): { key: Record<string, unknown>; after: Record<string, unknown> };
  /** Primary key columns of a table. */
  keyColumns(table: string): string[];
  close(): Promise<void>;
}

const quotePg = (t: string) => t.split('.').map((p) => `"${p.replace(/"/g, '""')}"`).join('.');
const quoteMy = (t: string) => t.split('.').map((p) => `\`${p.replace(/`/g, '``')}\``).join('.');
/** Point reads are batched by this many keys per statement. */
const FETCH_KEYS = 500;

class PostgresSnapshot implements SupplierSnapshot {
  constructor(private readonly reader: PostgresCdcSource, private readonly url: string, private readonly tables: string[]) {}

  private async client(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: this.url, application_name: 'cellar-reconcile' });
    c.on('error', () => undefined);
    try {
      await c.connect();
    } catch (err) {
      throw fromPgError(err, 'connecting to the supplier database');
    }
    return c;
  }

  async scan(onChunk: (rows: SourceRow[]) => void | Promise<void>, chunkRows: number): Promise<void> {
    const c = await this.client();
    try {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      for (const table of this.tables) {
        await c.query(`DECLARE recon NO SCROLL CURSOR FOR SELECT * FROM ${quotePg(table)}`);
        for (;;) {
          const r = await c.query(`FETCH ${chunkRows} FROM recon`);
          if (!r.rowCount) break;
          await onChunk(r.rows.map((row) => ({ table, row })));
        }
        await c.query('CLOSE recon');
      }
      await c.query('COMMIT');
    } catch (err) {
      throw err instanceof CellarError ? err : fromPgError(err, 'reading the supplier\'s rows');
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  async fetch(table: string, keys: Array<Record<string, string>>): Promise<SourceRow[]> {
    const cols = this.reader.keyColumns(table);
    const c = await this.client();
    try {
      const out: SourceRow[] = [];
      for (let i = 0; i < keys.length; i += FETCH_KEYS) {
        const chunk = keys.slice(i, i + FETCH_KEYS);
        const tuples = chunk.map((_, j) => `(${cols.map((_, k) => `$${j * cols.length + k + 1}`).join(', ')})`);
        const r = await c.query(
          `SELECT * FROM ${quotePg(table)} WHERE (${cols.map((k) => `"${k}"::text`).join(', ')}) IN (${tuples.join(', ')})`,
          chunk.flatMap((k) => cols.map((col) => k[col] ?? '')),
        );
        out.push(...r.rows.map((row) => ({ table, row })));
      }
      return out;
    } catch (err) {
      throw fromPgError(err, `reading rows of ${table}`);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  message(r: SourceRow, op: 'r' | 'd', cellarVersion?: string): SourceMessage {
    return this.reader.rowMessage(r.table, op, r.row, { lsn: '0/0', tsMs: Date.now(), ...(cellarVersion !== undefined ? { cellarVersion } : {}) });
  }

  image(r: SourceRow): { key: Record<string, unknown>; after: Record<string, unknown> } {
    return this.reader.rowImage(r.table, r.row);
  }

  keyColumns(table: string): string[] {
    return this.reader.keyColumns(table);
  }

  async close(): Promise<void> {}
}

class MysqlSnapshot implements SupplierSnapshot {
  constructor(private readonly reader: MysqlCdcSource, private readonly url: string, private readonly tables: string[]) {}

  private async connection(): Promise<mysql.Connection> {
    try {
      return await mysql.createConnection({ uri: url(this.url), timezone: 'Z', supportBigNumbers: true });
    } catch (err) {
      throw fromMysqlError(err, 'connecting to the supplier database');
    }
  }

  async scan(onChunk: (rows: SourceRow[]) => void | Promise<void>, chunkRows: number): Promise<void> {
    const c = await this.connection();
    try {
      await c.query("SET SESSION time_zone = '+00:00'");
      await c.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      await c.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
      for (const table of this.tables) {
        const cols = this.reader.keyColumns(table);
        const order = cols.map((k) => `\`${k}\``).join(', ');
        let last: unknown[] | undefined;
        // Keyset pages inside the snapshot transaction: every page sees the same snapshot.
        for (;;) {
          const where = last ? `WHERE (${order}) > (${cols.map(() => '?').join(', ')})` : '';
          const [rows] = await c.query<mysql.RowDataPacket[]>(`SELECT * FROM ${quoteMy(table)} ${where} ORDER BY ${order} LIMIT ${chunkRows}`, last ?? []);
          if (!rows.length) break;
          await onChunk(rows.map((row) => ({ table, row: row as Record<string, unknown> })));
          last = cols.map((k) => rows[rows.length - 1]![k]);
          if (rows.length < chunkRows) break;
        }
      }
      await c.query('COMMIT');
    } catch (err) {
      throw err instanceof CellarError ? err : fromMysqlError(err, 'reading the supplier\'s rows');
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  async fetch(table: string, keys: Array<Record<string, string>>): Promise<SourceRow[]> {
    const cols = this.reader.keyColumns(table);
    const c = await this.connection();
    try {
      await c.query("SET SESSION time_zone = '+00:00'");
      const out: SourceRow[] = [];
      for (let i = 0; i < keys.length; i += FETCH_KEYS) {
        const chunk = keys.slice(i, i + FETCH_KEYS);
        const tuples = chunk.map(() => `(${cols.map(() => '?').join(', ')})`);
        const [rows] = await c.query<mysql.RowDataPacket[]>(
          `SELECT * FROM ${quoteMy(table)} WHERE (${cols.map((k) => `\`${k}\``).join(', ')}) IN (${tuples.join(', ')})`,
          chunk.flatMap((k) => cols.map((col) => k[col] ?? '')),
        );
        out.push(...rows.map((row) => ({ table, row: row as Record<string, unknown> })));
      }
      return out;
    } catch (err) {
      throw fromMysqlError(err, `reading rows of ${table}`);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  message(r: SourceRow, op: 'r' | 'd', cellarVersion?: string): SourceMessage {
    return this.reader.rowMessage(r.table, op, r.row as never, { position: { file: 'bin.000001', pos: 4 }, tsMs: Date.now(), ...(cellarVersion !== undefined ? { cellarVersion } : {}) });
  }

  image(r: SourceRow): { key: Record<string, unknown>; after: Record<string, unknown> } {
    return this.reader.rowImage(r.table, r.row as never);
  }

  keyColumns(table: string): string[] {
    return this.reader.keyColumns(table);
  }

  async close(): Promise<void> {}
}

/** mysql2 wants `mysql://`; the registry may say `mariadb://`. */
const url = (u: string) => u.replace(/^mariadb:/, 'mysql:');

/** Opens read-only access to a supplier's rows (Postgres, MySQL, MariaDB); other kinds cannot be read here. */
export async function openSupplierSnapshot(supplier: Supplier, log: Logger): Promise<SupplierSnapshot> {
  const tables = supplier.source.tables.map((t) => t.name);
  const kind = supplier.source.kind;
  if (kind === 'postgres') {
    const u = postgresUrl(supplier);
    const reader = createPostgresCdcSource({ url: u, topicPrefix: supplier.topicPrefix, tables }, log);
    await reader.inspect();
    return new PostgresSnapshot(reader, u, tables);
  }
  if (kind === 'mysql' || kind === 'mariadb') {
    const u = mysqlUrl(supplier);
    const reader = createMysqlCdcSource({ url: u, topicPrefix: supplier.topicPrefix, tables }, log);
    await reader.inspect();
    return new MysqlSnapshot(reader, u, tables);
  }
  throw new ConfigError(`${supplier.file}: source.kind ${kind}: reconciliation reads Postgres, MySQL and MariaDB suppliers; ${supplier.id} cannot be read directly`);
}
