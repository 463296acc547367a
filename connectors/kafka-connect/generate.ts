import { ConfigError } from '../../pipelines/core/errors.js';
import type { Supplier } from '../registry/loader.js';
import type { SourceKind } from '../registry/schema.js';
import type { KafkaConnectOptions } from './config.js';
import { providerReference } from './secrets.js';

/** Debezium connector class of each database source kind (Debezium 2.7+ for MariaDB). */
export const CONNECTOR_CLASSES = {
  postgres: 'io.debezium.connector.postgresql.PostgresConnector',
  mysql: 'io.debezium.connector.mysql.MySqlConnector',
  mariadb: 'io.debezium.connector.mariadb.MariaDbConnector',
  mongodb: 'io.debezium.connector.mongodb.MongoDbConnector',
  sqlserver: 'io.debezium.connector.sqlserver.SqlServerConnector',
} as const satisfies Partial<Record<SourceKind, string>>;

export type DebeziumKind = keyof typeof CONNECTOR_CLASSES;

/** One Debezium connector generated from one supplier. */
export interface GeneratedConnector {
  /** Connector name on Connect: `<namePrefix><supplier id>`. */
  name: string;
  supplierId: string;
  /** The supplier file it came from (validation errors are reported against it). */
  file: string;
  kind: DebeziumKind;
  /** The full connector config, every value a string; secrets only as config-provider references. */
  config: Record<string, string>;
  /** Connector property → the supplier field it comes from (e.g. `database.hostname` → `source.connection.host`). */
  fieldSources: Record<string, string>;
  /** Raw topics the connector writes, exactly the ones the normalizer subscribes to (`<topicPrefix>.<table>`). */
  topics: string[];
}

/** A supplier that has no Debezium connector (its source is read by Cellar itself). */
export interface ConnectorlessSupplier {
  supplierId: string;
  file: string;
  kind: SourceKind;
  reason: string;
}

const DEFAULT_PORT: Record<DebeziumKind, number> = { postgres: 5432, mysql: 3306, mariadb: 3306, mongodb: 27017, sqlserver: 1433 };
const DEFAULT_USER: Partial<Record<DebeziumKind, string>> = { postgres: 'postgres', mysql: 'root', mariadb: 'root', sqlserver: 'sa' };

export function isDebeziumKind(kind: SourceKind): kind is DebeziumKind {
  return kind in CONNECTOR_CLASSES;
}

/** Suppliers without a connector, and why. */
export function connectorlessSuppliers(suppliers: Supplier[]): ConnectorlessSupplier[] {
  return suppliers
    .filter((s) => !isDebeziumKind(s.source.kind))
    .map((s) => ({
      supplierId: s.id,
      file: s.file,
      kind: s.source.kind,
      reason: `${s.source.kind} source: no Debezium connector; its rows are published to ${s.topicPrefix}.* as feed-format change events (connector "cellar-feed")`,
    }));
}

/** Anchored-regex form of a literal name, as Debezium's include lists expect (`.` and `$` escaped). */
function literal(name: string): string {
  return name.replace(/[.$\\^*+?()[\]{}|]/g, (c) => `\\${c}`);
}

/** A replication slot / publication name: lowercase letters, digits and `_`, at most 63 characters. */
function pgIdent(prefix: string, topicPrefix: string): string {
  return `${prefix}_${topicPrefix.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 63);
}

/** 32-bit FNV-1a: a stable hash for MySQL server ids. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

const unique = <T>(xs: T[]): T[] => [...new Set(xs)];

/** Settings every generated connector shares: converters, topic creation, heartbeats. */
function commonConfig(s: Supplier, o: KafkaConnectOptions, name: string, kind: DebeziumKind): Record<string, string> {
  const c: Record<string, string> = {
    name,
    'connector.class': CONNECTOR_CLASSES[kind],
    'tasks.max': '1',
    'topic.prefix': s.topicPrefix,
  };
  if (o.converter === 'avro') {
    for (const side of ['key', 'value']) {
      c[`${side}.converter`] = 'io.confluent.connect.avro.AvroConverter';
      c[`${side}.converter.schema.registry.url`] = o.schemaRegistryUrl;
    }
    // Topic prefixes and table names may hold '-', which Avro names cannot.
    c['schema.name.adjustment.mode'] = 'avro';
  } else {
    for (const side of ['key', 'value']) {
      c[`${side}.converter`] = 'org.apache.kafka.connect.json.JsonConverter';
      // The normalizer reads Decimal and time logical types from the schema part of each message.
      c[`${side}.converter.schemas.enable`] = 'true';
    }
  }
  c['topic.creation.default.partitions'] = String(o.topicPartitions);
  c['topic.creation.default.replication.factor'] = String(o.topicReplication);
  c['heartbeat.interval.ms'] = String(o.heartbeatIntervalMs);
  c['snapshot.mode'] = 'initial';
  c['tombstones.on.delete'] = 'true';
  return c;
}

function schemaHistory(s: Supplier, o: KafkaConnectOptions): Record<string, string> {
  return {
    'schema.history.internal.kafka.bootstrap.servers': o.kafkaBootstrapServers,
    'schema.history.internal.kafka.topic': `${o.schemaHistoryTopicPrefix}.${s.topicPrefix}`,
    // Cellar reads row changes only; the DDL topic named like the prefix would be noise.
    'include.schema.changes': 'false',
  };
}

/** Generates the connector of one database supplier. */
function generateOne(s: Supplier, kind: DebeziumKind, o: KafkaConnectOptions, serverId: number): GeneratedConnector {
  const conn = s.source.connection;
  if (!conn) throw new ConfigError(`${s.file}: source.connection: required for source kind ${kind}`);
  const name = `${o.namePrefix}${s.id}`;
  const tables = s.source.tables.map((t) => t.name);
  const parts = tables.map((t) => t.split('.'));
  const sources: Record<string, string> = { 'topic.prefix': s.source.topicPrefix ? 'source.topicPrefix' : 'id' };
  const c = commonConfig(s, o, name, kind);
  const port = String(conn.port ?? DEFAULT_PORT[kind]);
  const user = conn.user ?? DEFAULT_USER[kind];
  const password = conn.password ? providerReference(conn.password, s.file) : undefined;
  const options = Object.entries(conn.options ?? {}).map(([k, v]) => [k, String(v)] as const);
  const set = (key: string, value: string, from?: string) => {
    c[key] = value;
    if (from) sources[key] = from;
  };
  const connection = (prefix: string) => {
    set('database.hostname', conn.host, 'source.connection.host');
    set('database.port', port, 'source.connection.port');
    if (user) set('database.user', user, 'source.connection.user');
    if (password) set('database.password', password, 'source.connection.password');
    for (const [k, v] of options) set(`${prefix}${k}`, v, `source.connection.options.${k}`);
  };
  const signal = o.signalTable;
  let signalCollection: string;

  switch (kind) {
    case 'postgres': {
      bad(s, parts, 2, 'schema.table');
      connection('database.');
      set('database.dbname', conn.database ?? 'postgres', 'source.connection.database');
      set('plugin.name', 'pgoutput');
      set('slot.name', pgIdent('debezium', s.topicPrefix));
      set('publication.name', pgIdent('debezium', s.topicPrefix));
      // The publication covers exactly the include list (captured tables and the signal table).
      set('publication.autocreate.mode', 'filtered');
      signalCollection = `${parts[0]![0]}.${signal}`;
      set('table.include.list', unique([...tables, signalCollection]).map(literal).join(','), 'source.tables');
      set('decimal.handling.mode', 'precise');
      break;
    }
    case 'mysql':
    case 'mariadb': {
      bad(s, parts, 2, 'database.table');
      connection('database.');
      set('database.server.id', String(serverId));
      const dbs = unique([...parts.map((p) => p[0]!), ...(conn.database ? [conn.database] : [])]);
      signalCollection = `${conn.database ?? dbs[0]}.${signal}`;
      set('database.include.list', dbs.map(literal).join(','), 'source.tables');
      set('table.include.list', unique([...tables, signalCollection]).map(literal).join(','), 'source.tables');
      Object.assign(c, schemaHistory(s, o));
      // The binlog reader hands DECIMAL over as text, decoded exactly by the normalizer.
      set('decimal.handling.mode', 'string');
      break;
    }
    case 'mongodb': {
      bad(s, parts, 2, 'database.collection');
      const u = new URL('mongodb://placeholder/');
      u.hostname = conn.host;
      u.port = port;
      for (const [k, v] of options) u.searchParams.set(k, v);
      set('mongodb.connection.string', u.toString(), 'source.connection.host');
      if (conn.user) set('mongodb.user', conn.user, 'source.connection.user');
      if (password) set('mongodb.password', password, 'source.connection.password');
      const dbs = unique(parts.map((p) => p[0]!));
      signalCollection = `${conn.database ?? dbs[0]}.${signal}`;
      set('database.include.list', unique([...dbs, signalCollection.split('.')[0]!]).map(literal).join(','), 'source.tables');
      set('collection.include.list', unique([...tables, signalCollection]).map(literal).join(','), 'source.tables');
      // Updates carry the whole document in `after` (the normalizer maps fields of the full row).
      set('capture.mode', 'change_streams_update_full');
      break;
    }
    case 'sqlserver': {
      bad(s, parts, 3, 'database.schema.table');
      connection('driver.');
      const dbs = unique(parts.map((p) => p[0]!));
      set('database.names', dbs.join(','), 'source.tables');
      const [db0, schema0] = parts[0]!;
      signalCollection = `${db0}.${schema0}.${signal}`;
      // SQL Server include lists name tables as schema.table (databases come from database.names).
      set('table.include.list', unique([...parts.map((p) => `${p[1]}.${p[2]}`), `${schema0}.${signal}`]).map(literal).join(','), 'source.tables');
      Object.assign(c, schemaHistory(s, o));
      set('decimal.handling.mode', 'precise');
      break;
    }
  }
  c['signal.data.collection'] = signalCollection;
  return { name, supplierId: s.id, file: s.file, kind, config: c, fieldSources: sources, topics: tables.map((t) => `${s.topicPrefix}.${t}`) };
}

function bad(s: Supplier, parts: string[][], n: number, shape: string): void {
  const i = parts.findIndex((p) => p.length !== n);
  if (i >= 0) throw new ConfigError(`${s.file}: source.tables[${i}].name: a ${s.source.kind} table is named ${shape}`);
}

/**
 * Debezium connector configs for every database supplier of the registry (one connector each; http
 * and csv suppliers have none, see {@link connectorlessSuppliers}). The output is deterministic: the
 * same registry and options always give the same configs, so a plan against Connect shows only real
 * changes. Secrets appear only as config-provider references; nothing here reads a secret.
 */
export function generateConnectorConfigs(suppliers: Supplier[], options: KafkaConnectOptions): GeneratedConnector[] {
  const problems: string[] = [];
  const out: GeneratedConnector[] = [];
  const usedIds = new Set<number>();
  for (const s of [...suppliers].sort((a, b) => a.id.localeCompare(b.id))) {
    const kind = s.source.kind;
    if (!isDebeziumKind(kind)) continue;
    let serverId = options.mysqlServerIdBase + (fnv1a(s.id) % 1_000_000);
    if (kind === 'mysql' || kind === 'mariadb') {
      while (usedIds.has(serverId)) serverId++;
      usedIds.add(serverId);
    }
    try {
      out.push(generateOne(s, kind, options, serverId));
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...(err.problems.length ? err.problems : [err.message]));
      else throw err;
    }
  }
  if (problems.length) throw new ConfigError('cannot generate connector configs', problems);
  return out;
}
