import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { localServer, type LocalHttpOptions } from './http-serve.js';
import type { AddressInfo } from 'node:net';

/**
 * A single-process server for the Kafka Connect REST contract, for tests where no Connect worker can
 * run. It keeps connectors in memory and answers the documented endpoints with their documented shapes:
 * `GET /connectors` (with `expand=status`/`expand=info`), `GET|PUT /connectors/{name}/config` (201
 * created / 200 updated, 400 when the config is invalid), `GET /connectors/{name}[/status|/tasks]`,
 * `DELETE /connectors/{name}` (204), `PUT .../pause|resume` (202), `POST .../restart` (204, or 202 with
 * the status when `includeTasks`/`onlyFailed` is set), `POST .../tasks/{id}/restart` (204),
 * `PUT /connector-plugins/{class}/config/validate` (`{name, error_count, groups, configs}` with per-field
 * errors), errors as `{error_code, message}`. Validation knows the required and typed fields of the
 * Debezium connectors Cellar generates. Tests steer it with {@link LocalKafkaConnect} methods: answer
 * 409 (rebalance) or 500 to the next requests, fail a connector or task with a trace, make a database
 * host unreachable for validation. Production uses a real Connect worker (infra/compose).
 */
export interface LocalKafkaConnect {
  url: string;
  /** Every request received, in order (config bodies included). */
  requests: Array<{ method: string; path: string; body?: unknown }>;
  /** Answers the next `count` requests (matching `match`, default all) with `status` and Connect's error body. */
  failNext(count: number, status: number, opts?: { message?: string; match?: (method: string, path: string) => boolean }): void;
  /** Marks a task FAILED with a Java-style stack trace. */
  failTask(name: string, task: number, trace: string): void;
  /** Marks a connector instance FAILED with a trace. */
  failConnector(name: string, trace: string): void;
  /** Database hosts the validate endpoint reports as unreachable (as Debezium's connection check does). */
  unreachableHosts: Set<string>;
  /** Current state, for assertions. */
  connector(name: string): { config: Record<string, string>; state: string; tasks: Array<{ id: number; state: string }> } | undefined;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

interface Task { id: number; state: string; trace?: string }
interface Connector { config: Record<string, string>; state: string; trace?: string; tasks: Task[] }

interface PluginDef {
  type: 'source';
  version: string;
  required: string[];
  ints: string[];
  enums: Record<string, string[]>;
  /** Field whose value names the database host, checked against `unreachableHosts`. */
  hostField: string;
}

const SNAPSHOT_MODES = ['always', 'initial', 'initial_only', 'no_data', 'schema_only', 'never', 'when_needed', 'recovery', 'configuration_based', 'custom'];
const DECIMAL_MODES = ['precise', 'double', 'string'];
const HISTORY = ['schema.history.internal.kafka.bootstrap.servers', 'schema.history.internal.kafka.topic'];
const binlog = (): PluginDef => ({
  type: 'source', version: '3.1.0.Final', hostField: 'database.hostname',
  required: ['database.hostname', 'database.user', 'database.server.id', 'topic.prefix', ...HISTORY],
  ints: ['database.port', 'database.server.id', 'heartbeat.interval.ms'],
  enums: { 'decimal.handling.mode': DECIMAL_MODES, 'snapshot.mode': SNAPSHOT_MODES },
});

/** The connector plugins this worker has installed, with the validation rules it applies. */
const PLUGINS: Record<string, PluginDef> = {
  'io.debezium.connector.postgresql.PostgresConnector': {
    type: 'source', version: '3.1.0.Final', hostField: 'database.hostname',
    required: ['database.hostname', 'database.user', 'database.dbname', 'topic.prefix'],
    ints: ['database.port', 'heartbeat.interval.ms'],
    enums: {
      'plugin.name': ['decoderbufs', 'pgoutput'],
      'publication.autocreate.mode': ['all_tables', 'disabled', 'filtered', 'no_tables'],
      'decimal.handling.mode': DECIMAL_MODES,
      'snapshot.mode': SNAPSHOT_MODES,
    },
  },
  'io.debezium.connector.mysql.MySqlConnector': binlog(),
  'io.debezium.connector.mariadb.MariaDbConnector': binlog(),
  'io.debezium.connector.mongodb.MongoDbConnector': {
    type: 'source', version: '3.1.0.Final', hostField: 'mongodb.connection.string',
    required: ['mongodb.connection.string', 'topic.prefix'],
    ints: ['heartbeat.interval.ms'],
    enums: { 'capture.mode': ['change_streams', 'change_streams_update_full', 'change_streams_update_full_with_pre_image', 'change_streams_with_pre_image'], 'snapshot.mode': SNAPSHOT_MODES },
  },
  'io.debezium.connector.sqlserver.SqlServerConnector': {
    type: 'source', version: '3.1.0.Final', hostField: 'database.hostname',
    required: ['database.hostname', 'database.names', 'topic.prefix', ...HISTORY],
    ints: ['database.port', 'heartbeat.interval.ms'],
    enums: { 'decimal.handling.mode': DECIMAL_MODES, 'snapshot.mode': SNAPSHOT_MODES },
  },
};
const CONVERTERS = new Set(['io.confluent.connect.avro.AvroConverter', 'org.apache.kafka.connect.json.JsonConverter', 'org.apache.kafka.connect.storage.StringConverter']);
const GROUPS = ['Common', 'Transforms', 'Predicates', 'Error Handling', 'Topic Creation', 'Exactly Once Support', 'offsets.topic', 'Connector'];

function pluginOf(name: string): [string, PluginDef] | undefined {
  const hit = Object.entries(PLUGINS).find(([cls]) => cls === name || cls.endsWith(`.${name}`));
  return hit;
}

/** Connect's validation of one config: every field the rules know, with its errors. */
function validate(config: Record<string, string>, pluginClass: string, def: PluginDef, unreachable: Set<string>) {
  const keys = new Set(['name', 'connector.class', 'tasks.max', 'key.converter', 'value.converter', ...def.required, ...def.ints, ...Object.keys(def.enums), def.hostField]);
  const configs = [...keys].map((name) => {
    const value = config[name];
    const errors: string[] = [];
    const has = value !== undefined && value.trim() !== '';
    if (name === 'name' && !has) errors.push('Missing required configuration "name" which has no default value.');
    if (def.required.includes(name) && !has) errors.push(`The '${name}' value is invalid: A value is required`);
    if (has && (def.ints.includes(name) || name === 'tasks.max') && !/^-?\d+$/.test(value!)) errors.push(`Invalid value ${value} for configuration ${name}: Not a number of type INT`);
    if (has && def.enums[name] && !def.enums[name]!.includes(value!.toLowerCase())) errors.push(`The '${name}' value '${value}' is invalid: Value must be one of ${def.enums[name]!.join(', ')}`);
    if (has && (name === 'key.converter' || name === 'value.converter') && !CONVERTERS.has(value!)) errors.push(`Invalid value ${value} for configuration ${name}: Class ${value} could not be found.`);
    if (has && name === def.hostField && [...unreachable].some((h) => value!.includes(h))) {
      errors.push(`Unable to connect: Connection to ${value} refused. Check that the hostname and port are correct and that the database accepts TCP/IP connections.`);
    }
    const hidden = /password/.test(name) && has;
    return {
      definition: { name, type: def.ints.includes(name) ? 'INT' : /password/.test(name) ? 'PASSWORD' : 'STRING', required: def.required.includes(name), default_value: null, importance: 'HIGH', documentation: '', group: 'Connector', width: 'MEDIUM', display_name: name, dependents: [], order: 0 },
      value: { name, value: hidden ? '[hidden]' : (value ?? null), recommended_values: def.enums[name] ?? [], errors, visible: true },
    };
  });
  const error_count = configs.reduce((n, c) => n + c.value.errors.length, 0);
  return { name: pluginClass, error_count, groups: GROUPS, configs };
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(500, `Unrecognized token: ${(err as Error).message}`);
  }
}

function stringMap(body: unknown): Record<string, string> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'Request body must be a JSON object of configuration properties');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(body)) out[k] = typeof v === 'string' ? v : String(v);
  return out;
}

/** Starts the server on 127.0.0.1 (port 0 = any free port). */
export async function startLocalKafkaConnect(port = 0, o: LocalHttpOptions = {}): Promise<LocalKafkaConnect> {
  const connectors = new Map<string, Connector>();
  const requests: LocalKafkaConnect['requests'] = [];
  const faults: Array<{ left: number; status: number; message?: string; match?: (m: string, p: string) => boolean }> = [];
  const unreachableHosts = new Set<string>();
  let workerId = '127.0.0.1:8083';

  const info = (name: string, c: Connector) => ({ name, config: c.config, tasks: c.tasks.map((t) => ({ connector: name, task: t.id })), type: 'source' });
  const status = (name: string, c: Connector) => ({
    name,
    connector: { state: c.state, worker_id: workerId, ...(c.state === 'FAILED' && c.trace ? { trace: c.trace } : {}) },
    tasks: c.tasks.map((t) => ({ id: t.id, state: t.state, worker_id: workerId, ...(t.state === 'FAILED' && t.trace ? { trace: t.trace } : {}) })),
    type: 'source',
  });
  const get = (name: string) => {
    const c = connectors.get(name);
    if (!c) throw new HttpError(404, `Connector ${name} not found`);
    return c;
  };
  const checkConfig = (config: Record<string, string>) => {
    const cls = config['connector.class'];
    if (!cls) throw new HttpError(400, 'Connector config {' + Object.keys(config).join(', ') + '} contains no connector type');
    const plugin = pluginOf(cls);
    if (!plugin) throw new HttpError(500, `Failed to find any class that implements Connector and which name matches ${cls}, available connectors are: ${Object.keys(PLUGINS).join(', ')}`);
    return plugin;
  };

  async function route(req: IncomingMessage): Promise<{ status: number; body?: unknown }> {
    const url = new URL(req.url ?? '/', 'http://x');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const m = req.method ?? 'GET';
    const body = await readBody(req);
    requests.push({ method: m, path: `${url.pathname}${url.search}`, body });
    const fault = faults.find((f) => f.left > 0 && (!f.match || f.match(m, url.pathname)));
    if (fault) {
      fault.left--;
      const message = fault.message ?? (fault.status === 409 ? 'Cannot complete request because of a conflicting operation (e.g. worker rebalance)' : 'Request failed.');
      throw new HttpError(fault.status, message);
    }
    if (parts.length === 0 && m === 'GET') return { status: 200, body: { version: '3.9.0', commit: 'local', kafka_cluster_id: 'local-contract' } };
    if (parts[0] === 'connector-plugins') {
      if (parts.length === 1 && m === 'GET') return { status: 200, body: Object.entries(PLUGINS).map(([cls, d]) => ({ class: cls, type: d.type, version: d.version })) };
      if (parts.length === 4 && parts[2] === 'config' && parts[3] === 'validate' && m === 'PUT') {
        const config = stringMap(body);
        const [cls, def] = checkConfig(config);
        const asked = pluginOf(parts[1]!);
        if (!asked || asked[0] !== cls) throw new HttpError(400, `Included connector type ${config['connector.class']} does not match request type ${parts[1]}`);
        return { status: 200, body: validate(config, cls, def, unreachableHosts) };
      }
    }
    if (parts[0] !== 'connectors') throw new HttpError(404, 'HTTP 404 Not Found');
    if (parts.length === 1) {
      if (m === 'GET') {
        const expand = url.searchParams.getAll('expand');
        if (expand.length === 0) return { status: 200, body: [...connectors.keys()] };
        const out: Record<string, unknown> = {};
        for (const [name, c] of connectors) {
          out[name] = { ...(expand.includes('info') ? { info: info(name, c) } : {}), ...(expand.includes('status') ? { status: status(name, c) } : {}) };
        }
        return { status: 200, body: out };
      }
      if (m === 'POST') {
        const b = body as { name?: string; config?: unknown };
        if (!b?.name) throw new HttpError(400, 'Connector name must be provided');
        if (connectors.has(b.name)) throw new HttpError(409, `Connector ${b.name} already exists`);
        return { status: 201, body: create(b.name, { ...stringMap(b.config), name: b.name }) };
      }
    }
    const name = parts[1]!;
    if (parts.length === 2) {
      if (m === 'GET') return { status: 200, body: info(name, get(name)) };
      if (m === 'DELETE') {
        get(name);
        connectors.delete(name);
        return { status: 204 };
      }
    }
    const sub = parts[2];
    if (parts.length === 3 && sub === 'config') {
      if (m === 'GET') return { status: 200, body: get(name).config };
      if (m === 'PUT') {
        const config = stringMap(body);
        if (config.name !== undefined && config.name !== name) throw new HttpError(400, `Connector name configuration (${config.name}) doesn't match connector name in the URL (${name})`);
        const existing = connectors.get(name);
        if (existing) {
          const [cls, def] = checkConfig(config);
          rejectInvalid(validate({ ...config, name }, cls, def, new Set()));
          existing.config = { ...config, name };
          return { status: 200, body: info(name, existing) };
        }
        return { status: 201, body: create(name, { ...config, name }) };
      }
    }
    if (parts.length === 3 && sub === 'status' && m === 'GET') return { status: 200, body: status(name, get(name)) };
    if (parts.length === 3 && sub === 'tasks' && m === 'GET') {
      const c = get(name);
      return { status: 200, body: c.tasks.map((t) => ({ id: { connector: name, task: t.id }, config: {} })) };
    }
    if (parts.length === 3 && (sub === 'pause' || sub === 'resume') && m === 'PUT') {
      const c = get(name);
      const to = sub === 'pause' ? 'PAUSED' : 'RUNNING';
      if (c.state !== 'FAILED') c.state = to;
      for (const t of c.tasks) if (t.state !== 'FAILED') t.state = to;
      return { status: 202 };
    }
    if (parts.length === 3 && sub === 'restart' && m === 'POST') {
      const c = get(name);
      const includeTasks = url.searchParams.get('includeTasks') === 'true';
      const onlyFailed = url.searchParams.get('onlyFailed') === 'true';
      const connectorToo = !onlyFailed || c.state === 'FAILED';
      const tasks = includeTasks ? c.tasks.filter((t) => !onlyFailed || t.state === 'FAILED') : [];
      if (!includeTasks && !onlyFailed) {
        restartConnector(c);
        return { status: 204 };
      }
      if (connectorToo) c.state = 'RESTARTING';
      for (const t of tasks) t.state = 'RESTARTING';
      const snapshot = status(name, c);
      // The restart completes asynchronously, as on a real worker.
      setTimeout(() => {
        if (c.state === 'RESTARTING') restartConnector(c);
        for (const t of c.tasks) if (t.state === 'RESTARTING') Object.assign(t, { state: 'RUNNING', trace: undefined });
      }, 20);
      return { status: 202, body: snapshot };
    }
    if (parts.length === 5 && sub === 'tasks' && parts[4] === 'restart' && m === 'POST') {
      const t = get(name).tasks.find((x) => x.id === Number(parts[3]));
      if (!t) throw new HttpError(404, `Task ${name}-${parts[3]} not found`);
      Object.assign(t, { state: 'RUNNING', trace: undefined });
      return { status: 204 };
    }
    throw new HttpError(m === 'GET' || m === 'PUT' || m === 'POST' || m === 'DELETE' ? 404 : 405, 'HTTP 404 Not Found');
  }

  function restartConnector(c: Connector): void {
    c.state = 'RUNNING';
    c.trace = undefined;
  }

  function rejectInvalid(result: ReturnType<typeof validate>): void {
    if (result.error_count === 0) return;
    const lines = result.configs.flatMap((c) => c.value.errors.map((e) => `${e}`));
    throw new HttpError(400, `Connector configuration is invalid and contains the following ${result.error_count} error(s):\n${lines.join('\n')}\nYou can also find the above list of errors at the endpoint \`/connector-plugins/{connectorType}/config/validate\``);
  }

  function create(name: string, config: Record<string, string>) {
    const [cls, def] = checkConfig(config);
    rejectInvalid(validate(config, cls, def, new Set()));
    const tasks = Math.max(1, Number(config['tasks.max'] ?? 1));
    const c: Connector = { config, state: 'RUNNING', tasks: Array.from({ length: tasks }, (_, id) => ({ id, state: 'RUNNING' })) };
    connectors.set(name, c);
    return info(name, c);
  }

  const server: Server = localServer((req: IncomingMessage, res: ServerResponse) => {
    route(req).then(
      ({ status: code, body }) => {
        if (body === undefined) {
          res.writeHead(code).end();
          return;
        }
        res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      },
      (err: unknown) => {
        const code = err instanceof HttpError ? err.status : 500;
        const message = err instanceof Error ? err.message : String(err);
        res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify({ error_code: code, message }));
      },
    );
  }, o);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  workerId = `127.0.0.1:${actual}`;
  return {
    url: `${o.tls ? 'https' : 'http'}://127.0.0.1:${actual}`,
    requests,
    unreachableHosts,
    failNext(count, statusCode, opts = {}) {
      faults.push({ left: count, status: statusCode, message: opts.message, match: opts.match });
    },
    failTask(name, task, trace) {
      const t = get(name).tasks.find((x) => x.id === task);
      if (!t) throw new Error(`no task ${task} of ${name}`);
      Object.assign(t, { state: 'FAILED', trace });
    },
    failConnector(name, trace) {
      Object.assign(get(name), { state: 'FAILED', trace });
    },
    connector(name) {
      const c = connectors.get(name);
      return c && { config: { ...c.config }, state: c.state, tasks: c.tasks.map((t) => ({ id: t.id, state: t.state })) };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
