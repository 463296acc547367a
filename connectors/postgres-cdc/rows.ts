import pg from 'pg';
import { pgConfig } from '../../pipelines/core/pg-tls.js';
import { CellarError, fromPgError } from '../../pipelines/core/errors.js';
import type { Logger } from '../../pipelines/core/logger.js';
import { FETCH_KEYS, type SourceMessage, type SourceRow, type SupplierSnapshot } from '../supplier-rows.js';
import { createPostgresCdcSource, type PostgresCdcSource } from './source.js';

const quotePg = (t: string) => t.split('.').map((p) => `"${p.replace(/"/g, '""')}"`).join('.');

/** A Postgres supplier's rows: a cursor inside one REPEATABLE READ snapshot, point reads by primary key. */
export class PostgresRows implements SupplierSnapshot {
  constructor(private readonly reader: PostgresCdcSource, private readonly url: string, private readonly tables: string[]) {}

  private async client(): Promise<pg.Client> {
    const c = new pg.Client(pgConfig(this.url, { application_name: 'cellar-reconcile' }));
    c.on('error', () => undefined);
    try {
      await c.connect();
    } catch (err) {
      throw fromPgError(err, 'connecting to the supplier database');
    }
    return c;
  }

  /**
   * A cursor per table inside one REPEATABLE READ snapshot. The next chunk is fetched while `onChunk`
   * handles this one (the server reads and sends rows as the caller compares them): at most two chunks
   * are held, whatever the table's size.
   */
  async scan(onChunk: (rows: SourceRow[]) => void | Promise<void>, chunkRows: number): Promise<void> {
    const c = await this.client();
    const fetch = () => {
      const p = c.query(`FETCH ${chunkRows} FROM recon`);
      // Awaited on the next turn; marked handled so a failure while onChunk runs is not reported as unhandled.
      p.catch(() => undefined);
      return p;
    };
    try {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      for (const table of this.tables) {
        await c.query(`DECLARE recon NO SCROLL CURSOR FOR SELECT * FROM ${quotePg(table)}`);
        for (let next: Promise<pg.QueryResult> | undefined = fetch(); next; ) {
          const r: pg.QueryResult = await next;
          next = r.rows.length === chunkRows ? fetch() : undefined;
          if (r.rows.length) await onChunk(r.rows.map((row) => ({ table, row })));
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

/** Opens read-only access to a Postgres supplier's captured tables (their columns and keys read first). */
export async function openPostgresRows(url: string, topicPrefix: string, tables: string[], log: Logger): Promise<SupplierSnapshot> {
  const reader = createPostgresCdcSource({ url, topicPrefix, tables }, log);
  await reader.inspect();
  return new PostgresRows(reader, url, tables);
}
