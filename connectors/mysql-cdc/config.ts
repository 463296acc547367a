import { ConfigError } from '../../pipelines/core/errors.js';
import { readPem } from '../../pipelines/core/pg-tls.js';
import { z } from 'zod';
import { parseSpec } from '../../pipelines/core/spec.js';

/** A random replica server id, clear of the small ids people give real servers. */
function randomServerId(): number {
  return 10_000 + Math.floor(Math.random() * (2 ** 31 - 10_000));
}

/** Settings of the native MySQL/MariaDB CDC reader. */
export const MysqlCdcSpec = z.object({
  /**
   * Connection URL of the supplier server, `mysql://user:password@host:port/`. The user needs
   * REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and SELECT on the captured tables.
   */
  url: z.string().regex(/^(mysql|mariadb):\/\/[^/]+/, 'mysql://user:password@host:port/').describe('connection URL of the supplier server'),
  /** Debezium logical server name: topics and `source.name` are `<topicPrefix>.<database>.<table>`. */
  topicPrefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).describe('Debezium topic.prefix'),
  /** Captured tables as `database.table`. */
  tables: z.array(z.string().regex(/^[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+$/, 'database.table')).min(1),
  /**
   * Server id the reader announces as a replica; must differ from every server and replica in the
   * topology. Default: random in [10000, 2^31).
   */
  serverId: z.number().int().min(1).max(2 ** 32 - 1).default(randomServerId),
  /**
   * How a restart resumes when its saved position carries GTIDs: `gtid` (default; valid across a failover
   * to another server of the same replication topology, needs `gtid_mode=ON` on MySQL, always on MariaDB)
   * or `position` (binlog file and offset of the server the position was read from).
   */
  resumeBy: z.enum(['gtid', 'position']).default('gtid'),
  /** `initial`: read existing rows in a consistent snapshot, then stream. `never`: stream only. */
  snapshot: z.enum(['initial', 'never']).default('initial'),
  /**
   * Rows per snapshot batch. Default 5000. At most 999999: a snapshot row's `source.row` is its index
   * within the batch and must fit the six digits of the pipeline's source version.
   */
  snapshotFetchRows: z.number().int().min(1).max(999_999).default(5000),
});

/** The parsed settings of the MySQL/MariaDB CDC reader, with connection parts split out of `url`. */
export type MysqlCdcConfig = z.output<typeof MysqlCdcSpec> & {
  connection: MysqlConnection;
};

/** A MySQL/MariaDB connection as the driver takes it, TLS included. */
export interface MysqlConnection {
  host: string;
  port: number;
  user: string;
  password?: string;
  database?: string;
  ssl?: { ca?: string; cert?: string; key?: string; rejectUnauthorized: boolean; checkServerIdentity?: () => undefined };
}

const SSL_MODES = ['DISABLED', 'PREFERRED', 'REQUIRED', 'VERIFY_CA', 'VERIFY_IDENTITY'] as const;

/**
 * The connection of a `mysql://user:password@host:port/db` URL, its TLS parameters named as the mysql
 * client names them: `ssl-mode` (`REQUIRED` encrypts, `VERIFY_CA` checks the chain to `ssl-ca`,
 * `VERIFY_IDENTITY` the host name too), `ssl-ca`, `ssl-cert`, `ssl-key` (PEM files; a supplier's
 * `connection.options` put them there).
 */
export function mysqlConnection(url: string): MysqlConnection {
  const u = new URL(url.replace(/^mariadb:/, 'mysql:'));
  const p = (k: string) => u.searchParams.get(k) ?? undefined;
  const mode = (p('ssl-mode') ?? (p('ssl-ca') ? 'VERIFY_IDENTITY' : 'DISABLED')).toUpperCase();
  if (!(SSL_MODES as readonly string[]).includes(mode)) throw new ConfigError(`ssl-mode=${mode}: expected ${SSL_MODES.join(', ')}`);
  const read = (k: string) => {
    const f = p(k);
    return f ? readPem(f, k) : undefined;
  };
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  const out: MysqlConnection = {
    host: u.hostname || '127.0.0.1',
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username || 'root'),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(database ? { database } : {}),
  };
  if (mode === 'DISABLED' || mode === 'PREFERRED') return out;
  const verify = mode !== 'REQUIRED';
  const [ca, cert, key] = [read('ssl-ca'), read('ssl-cert'), read('ssl-key')];
  out.ssl = { rejectUnauthorized: verify, ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), ...(mode === 'VERIFY_CA' ? { checkServerIdentity: () => undefined } : {}) };
  return out;
}

/** Parses the reader's config, naming every bad field. */
export function parseMysqlCdcConfig(input: unknown): MysqlCdcConfig {
  const c = parseSpec(MysqlCdcSpec, input, 'mysql-cdc');
  const { database: _db, ...connection } = mysqlConnection(c.url);
  return { ...c, connection };
}
