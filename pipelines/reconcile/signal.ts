import { randomUUID } from 'node:crypto';
import { pgConfig } from '../core/pg-tls.js';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { generateConnectorConfigs, loadKafkaConnectOptions } from '../../connectors/kafka-connect/index.js';
import { mysqlUrl, postgresUrl } from '../../connectors/registry/connection.js';
import type { Supplier } from '../../connectors/registry/loader.js';
import type { RuntimeConfig } from '../core/config.js';
import { ConfigError, fromPgError } from '../core/errors.js';
import { fromMysqlError } from '../../connectors/mysql-cdc/source.js';

/** A Debezium signal row: `INSERT INTO <signal table> (id, type, data)`. */
export interface DebeziumSignal {
  id: string;
  type: 'execute-snapshot';
  data: string;
}

const quoteIdent = (kind: string, name: string) => (kind === 'postgres' ? `"${name.replace(/"/g, '""')}"` : `\`${name.replace(/`/g, '``')}\``);
const quoteText = (v: string) => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;

/**
 * The `execute-snapshot` signal of an incremental snapshot of the given rows (primary key column → text
 * value, per table), as Debezium's signal table expects it: one data collection per table, each with an
 * `additional-conditions` filter selecting exactly those rows.
 */
export function incrementalSnapshotSignal(kind: Supplier['source']['kind'], rows: Map<string, Array<Record<string, string>>>): DebeziumSignal {
  const tables = [...rows.keys()].sort();
  const conditions = tables.map((table) => {
    const keys = rows.get(table)!;
    const filter = keys.map((k) => `(${Object.entries(k).map(([col, v]) => `${quoteIdent(kind, col)} = ${quoteText(v)}`).join(' AND ')})`).join(' OR ');
    return { 'data-collection': table, filter };
  });
  return { id: randomUUID(), type: 'execute-snapshot', data: JSON.stringify({ 'data-collections': tables, type: 'incremental', 'additional-conditions': conditions }) };
}

/** The signal table (`signal.data.collection`) of the supplier's generated Debezium connector. */
export function signalCollection(supplier: Supplier, cfg: RuntimeConfig): string {
  const [connector] = generateConnectorConfigs([supplier], loadKafkaConnectOptions(cfg));
  const collection = connector?.config['signal.data.collection'];
  if (!collection) throw new ConfigError(`${supplier.file}: source.kind ${supplier.source.kind} has no Debezium connector, so no signal table`);
  return collection;
}

/**
 * Writes a signal into the supplier's signal table (the connector's CDC user needs INSERT on it, as
 * Debezium's signalling requires). Debezium reads it from the change stream and re-reads those rows.
 */
export async function sendSignal(supplier: Supplier, cfg: RuntimeConfig, signal: DebeziumSignal): Promise<string> {
  const collection = signalCollection(supplier, cfg);
  const kind = supplier.source.kind;
  const table = collection.split('.').map((p) => quoteIdent(kind, p)).join('.');
  if (kind === 'postgres') {
    const c = new pg.Client(pgConfig(postgresUrl(supplier), { application_name: 'cellar-reconcile' }));
    try {
      await c.connect();
      await c.query(`INSERT INTO ${table} (id, type, data) VALUES ($1, $2, $3)`, [signal.id, signal.type, signal.data]);
    } catch (err) {
      throw fromPgError(err, `writing the incremental-snapshot signal into ${collection}`);
    } finally {
      await c.end().catch(() => undefined);
    }
  } else if (kind === 'mysql' || kind === 'mariadb') {
    let c: mysql.Connection | undefined;
    try {
      c = await mysql.createConnection({ uri: mysqlUrl(supplier).replace(/^mariadb:/, 'mysql:') });
      await c.query(`INSERT INTO ${table} (id, type, data) VALUES (?, ?, ?)`, [signal.id, signal.type, signal.data]);
    } catch (err) {
      throw fromMysqlError(err, `writing the incremental-snapshot signal into ${collection}`);
    } finally {
      await c?.end().catch(() => undefined);
    }
  } else {
    throw new ConfigError(`${supplier.file}: repairs through the signal table are written for Postgres, MySQL and MariaDB suppliers`);
  }
  return collection;
}
