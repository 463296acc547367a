import { ConfigError } from '../../pipelines/core/errors.js';
import type { Supplier } from './loader.js';
import { resolveSecret } from './loader.js';

/** Builds a driver URL from a supplier's connection, resolving its password at the moment of use. */
function connectionUrl(supplier: Supplier, scheme: string, defaults: { port: number; user: string; database?: string }, env: NodeJS.ProcessEnv): URL {
  const c = supplier.source.connection;
  if (!c) throw new ConfigError(`${supplier.file}: source.connection: required to capture ${supplier.id} natively`);
  const u = new URL(`${scheme}://placeholder/`);
  u.hostname = c.host;
  u.port = String(c.port ?? defaults.port);
  u.username = encodeURIComponent(c.user ?? defaults.user);
  if (c.password) u.password = encodeURIComponent(resolveSecret(c.password, supplier.file, env));
  if (defaults.database !== undefined) u.pathname = `/${encodeURIComponent(c.database ?? defaults.database)}`;
  return u;
}

/**
 * The connection URL of a Postgres supplier, with its password resolved from `${ENV}` or a file at the
 * moment of use. The URL carries the secret: pass it to the driver, never to a log.
 */
export function postgresUrl(supplier: Supplier, env: NodeJS.ProcessEnv = process.env): string {
  const u = connectionUrl(supplier, 'postgres', { port: 5432, user: 'postgres', database: 'postgres' }, env);
  for (const [k, v] of Object.entries(supplier.source.connection?.options ?? {})) u.searchParams.set(k, String(v));
  return u.toString();
}

/** The connection URL of a MySQL/MariaDB supplier (`mysql://user:password@host:port/`), password resolved now. */
export function mysqlUrl(supplier: Supplier, env: NodeJS.ProcessEnv = process.env): string {
  const u = connectionUrl(supplier, 'mysql', { port: 3306, user: 'root' }, env);
  // TLS as the mysql client names it: `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key` (connectors/mysql-cdc/config.ts).
  for (const [k, v] of Object.entries(supplier.source.connection?.options ?? {})) u.searchParams.set(k, String(v));
  return u.toString();
}
