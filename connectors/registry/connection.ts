import { ConfigError } from '../../pipelines/core/errors.js';
import type { Supplier } from './loader.js';
import { resolveSecret } from './loader.js';

/**
 * The connection URL of a Postgres supplier, with its password resolved from `${ENV}` or a file at the
 * moment of use. The URL carries the secret: pass it to the driver, never to a log.
 */
export function postgresUrl(supplier: Supplier, env: NodeJS.ProcessEnv = process.env): string {
  const c = supplier.source.connection;
  if (!c) throw new ConfigError(`${supplier.file}: source.connection: required to capture ${supplier.id} natively`);
  const u = new URL('postgres://placeholder');
  u.hostname = c.host;
  u.port = String(c.port ?? 5432);
  u.pathname = `/${encodeURIComponent(c.database ?? 'postgres')}`;
  u.username = encodeURIComponent(c.user ?? 'postgres');
  if (c.password) u.password = encodeURIComponent(resolveSecret(c.password, supplier.file, env));
  for (const [k, v] of Object.entries(c.options ?? {})) u.searchParams.set(k, String(v));
  return u.toString();
}

/** The connection URL of a MySQL/MariaDB supplier (`mysql://user:password@host:port/`), password resolved now. */
export function mysqlUrl(supplier: Supplier, env: NodeJS.ProcessEnv = process.env): string {
  const c = supplier.source.connection;
  if (!c) throw new ConfigError(`${supplier.file}: source.connection: required to capture ${supplier.id} natively`);
  const u = new URL('mysql://placeholder/');
  u.hostname = c.host;
  u.port = String(c.port ?? 3306);
  u.username = encodeURIComponent(c.user ?? 'root');
  if (c.password) u.password = encodeURIComponent(resolveSecret(c.password, supplier.file, env));
  return u.toString();
}
