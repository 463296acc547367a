import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REPO_ROOT, spawnCellar } from '../../infra/local/cellar-process.js';
import { startLocalKafkaConnect, type LocalKafkaConnect } from '../../infra/local/kafka-connect.js';
import { loadRegistry } from '../../connectors/registry/loader.js';
import { createKafkaConnectClient, generateConnectorConfigs, parseKafkaConnectOptions } from '../../connectors/kafka-connect/index.js';
import { CellarError } from '../../pipelines/core/errors.js';

/**
 * Contract tests of `cellar connectors …` run as a process against a local server implementing Kafka
 * Connect's documented REST endpoints and error shapes (infra/local/kafka-connect.ts).
 */

const EXAMPLES = join(REPO_ROOT, 'connectors/suppliers/examples');
/** Secret values: they must never appear in any output, request or stored config. */
const SENTINELS = { RHONE_PG_PASSWORD: 'sentinel-rhone-7f3a9c', HARBOR_MONGO_PASSWORD: 'sentinel-harbor-51be02', MERIDIAN_MSSQL_PASSWORD: 'sentinel-meridian-c4d1e8' };
const FILE_SENTINEL = 'sentinel-cascade-file-0b9e77';
const ALL_SENTINELS = [...Object.values(SENTINELS), FILE_SENTINEL];

/** Every output of every run, checked for secrets at the end. */
const outputs: string[] = [];
let connect: LocalKafkaConnect;
let dir: string;

function writeSuppliers(): string {
  const d = mkdtempSync(join(tmpdir(), 'cellar-connectors-'));
  for (const f of readdirSync(EXAMPLES).filter((n) => /\.(ya?ml|csv)$/.test(n))) copyFileSync(join(EXAMPLES, f), join(d, f));
  // The MySQL supplier's password comes from a file, as a mounted secret would.
  writeFileSync(join(d, 'cascade-password'), `${FILE_SENTINEL}\n`);
  edit(d, 'cascade-wines.yaml', '/run/secrets/cascade-mysql-password', join(d, 'cascade-password'));
  return d;
}

function edit(d: string, file: string, from: string, to: string): void {
  const p = join(d, file);
  const text = readFileSync(p, 'utf8');
  if (!text.includes(from)) throw new Error(`${file} has no ${from}`);
  writeFileSync(p, text.replace(from, to));
}

interface Run { code: number; stdout: string; stderr: string; out: string }

/** Runs `cellar connectors <args>` as a process; resolves when it has exited and its output is read. */
async function cellar(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = spawnCellar(['connectors', ...args], { CELLAR_CONNECT_URL: connect.url, CELLAR_SUPPLIERS_DIR: dir, CELLAR_LOG_LEVEL: 'debug', ...SENTINELS, ...env }, join(dir, 'cli.log'));
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number>((resolve) => child.once('close', (c) => resolve(c ?? -1)));
  const run = { code, stdout, stderr, out: stdout + stderr };
  outputs.push(run.out);
  return run;
}

const writes = (c: LocalKafkaConnect) => c.requests.filter((r) => (r.method === 'PUT' && /\/config$/.test(r.path)) || r.method === 'DELETE');

/** Creates the registry's connectors directly (not through the CLI), as a previous apply would have. */
async function seed(): Promise<string[]> {
  const options = parseKafkaConnectOptions({ connectUrl: connect.url, schemaRegistryUrl: 'http://127.0.0.1:8081', kafkaBootstrapServers: '127.0.0.1:9092', topicPartitions: 12, topicReplication: 3 });
  const client = createKafkaConnectClient(options);
  const gen = generateConnectorConfigs(loadRegistry(dir), options);
  for (const g of gen) await client.putConfig(g.name, g.config);
  connect.requests.length = 0;
  return gen.map((g) => g.name);
}

beforeEach(async () => {
  connect = await startLocalKafkaConnect();
  dir = writeSuppliers();
});

afterEach(async () => {
  await connect.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('cellar connectors against the Kafka Connect REST contract', () => {
  it('plan lists connectors to create with every field, and the suppliers that have none', async () => {
    const r = await cellar(['plan']);
    expect(r.code, r.out).toBe(0);
    expect(r.stdout).toContain('+ cellar-rhone-imports  (create; supplier rhone-imports');
    expect(r.stdout).toContain('+ connector.class = "io.debezium.connector.postgresql.PostgresConnector"');
    expect(r.stdout).toContain('+ database.password = "${env:RHONE_PG_PASSWORD}"');
    expect(r.stdout).toContain('+ topic.prefix = "rhone"');
    expect(r.stdout).toMatch(/valley-feed \(.*valley-feed\.yaml\): csv source: no Debezium connector/);
    expect(r.stdout).toContain('Plan: 4 to create, 0 to update, 0 to delete with --prune, 0 unchanged.');
    expect(writes(connect)).toEqual([]);
  });

  it('apply validates first, creates, and a second apply changes nothing and sends no PUT', async () => {
    const first = await cellar(['apply']);
    expect(first.code, first.out).toBe(0);
    expect(first.stdout).toContain('Applied: 4 created, 0 updated, 0 deleted, 0 unchanged.');
    const paths = connect.requests.map((q) => `${q.method} ${q.path}`);
    const lastValidate = paths.map((p) => p.includes('/config/validate')).lastIndexOf(true);
    const firstPut = paths.findIndex((p) => /^PUT \/connectors\/.+\/config$/.test(p));
    expect(paths.filter((p) => p.includes('/config/validate'))).toHaveLength(4);
    expect(lastValidate).toBeLessThan(firstPut);
    expect(connect.connector('cellar-meridian-trading')?.config['database.names']).toBe('Inventory');
    expect(connect.connector('cellar-rhone-imports')?.state).toBe('RUNNING');

    connect.requests.length = 0;
    const second = await cellar(['apply']);
    expect(second.code, second.out).toBe(0);
    expect(second.stdout).toContain('Plan: 0 to create, 0 to update, 0 to delete with --prune, 4 unchanged.');
    expect(second.stdout).toContain('No changes: Kafka Connect matches the registry.');
    expect(writes(connect)).toEqual([]);
    expect(connect.requests.filter((q) => q.path.includes('validate'))).toEqual([]);
  });

  it('plan shows a field-level diff for changed connectors and apply updates them with PUT', async () => {
    await seed();
    edit(dir, 'rhone-imports.yaml', 'host: pg.rhone-imports.example', 'host: pg2.rhone-imports.example');
    // Someone changed a connector by hand on Connect: Cellar's plan shows how it puts it back.
    const cfg = connect.connector('cellar-cascade-wines')!.config;
    await createKafkaConnectClient({ connectUrl: connect.url, timeoutMs: 2000, retries: 0, retryMinDelayMs: 0, retryMaxDelayMs: 0 }).putConfig('cellar-cascade-wines', {
      ...cfg,
      'heartbeat.interval.ms': '999',
      'poll.interval.ms': '50',
      'database.password': 'inline-pw-typed-by-hand',
    });
    connect.requests.length = 0;

    const plan = await cellar(['plan']);
    expect(plan.code, plan.out).toBe(0);
    expect(plan.stdout).toContain('~ cellar-rhone-imports  (update 1 field; supplier rhone-imports');
    expect(plan.stdout).toContain('~ database.hostname: "pg.rhone-imports.example" → "pg2.rhone-imports.example"');
    expect(plan.stdout).toContain('~ cellar-cascade-wines  (update 3 fields');
    expect(plan.stdout).toContain(`~ database.password: (sensitive value hidden) → "\${dir:${dir}:cascade-password}"`);
    expect(plan.out).not.toContain('inline-pw-typed-by-hand');
    expect(plan.stdout).toContain('~ heartbeat.interval.ms: "999" → "10000"');
    expect(plan.stdout).toContain('- poll.interval.ms = "50"');
    expect(plan.stdout).toContain('    cellar-harbor-spirits  (unchanged)');
    expect(plan.stdout).toContain('Plan: 0 to create, 2 to update, 0 to delete with --prune, 2 unchanged.');

    const apply = await cellar(['apply']);
    expect(apply.code, apply.out).toBe(0);
    expect(apply.stdout).toContain('Applied: 0 created, 2 updated, 0 deleted, 2 unchanged.');
    expect(connect.connector('cellar-rhone-imports')?.config['database.hostname']).toBe('pg2.rhone-imports.example');
    expect(connect.connector('cellar-cascade-wines')?.config['poll.interval.ms']).toBeUndefined();
    expect(writes(connect).map((w) => w.path).sort()).toEqual(['/connectors/cellar-cascade-wines/config', '/connectors/cellar-rhone-imports/config']);
  });

  it('deletes connectors no supplier generates only with --prune, and never touches unmanaged ones', async () => {
    await seed();
    const client = createKafkaConnectClient({ connectUrl: connect.url, timeoutMs: 2000, retries: 0, retryMinDelayMs: 0, retryMaxDelayMs: 0 });
    await client.putConfig('audit-sink', { 'connector.class': 'io.debezium.connector.postgresql.PostgresConnector', 'database.hostname': 'x', 'database.user': 'u', 'database.dbname': 'd', 'topic.prefix': 'audit' });
    unlinkSync(join(dir, 'harbor-spirits.yaml'));

    const plan = await cellar(['plan']);
    expect(plan.stdout).toContain('- cellar-harbor-spirits  (no supplier generates it; deleted only by apply --prune)');
    expect(plan.stdout).toContain('Not managed by Cellar (left alone): audit-sink');
    expect(plan.stdout).toContain('Plan: 0 to create, 0 to update, 1 to delete with --prune, 3 unchanged.');

    const keep = await cellar(['apply']);
    expect(keep.code, keep.out).toBe(0);
    expect(keep.stdout).toContain('No changes');
    expect(connect.connector('cellar-harbor-spirits')).toBeDefined();

    const prune = await cellar(['apply', '--prune']);
    expect(prune.code, prune.out).toBe(0);
    expect(prune.stdout).toContain('deleted cellar-harbor-spirits');
    expect(prune.stdout).toContain('Applied: 0 created, 0 updated, 1 deleted, 3 unchanged.');
    expect(connect.connector('cellar-harbor-spirits')).toBeUndefined();
    expect(connect.connector('audit-sink')).toBeDefined();
    expect(connect.requests.filter((q) => q.method === 'DELETE').map((q) => q.path)).toEqual(['/connectors/cellar-harbor-spirits']);
  });

  it('a failed validation changes nothing and names the supplier file and field', async () => {
    await seed();
    unlinkSync(join(dir, 'harbor-spirits.yaml'));
    connect.requests.length = 0;
    // One connector to update (its new host is unreachable), one to create, one to prune: none may happen.
    edit(dir, 'rhone-imports.yaml', 'host: pg.rhone-imports.example', 'host: pg-down.rhone-imports.example');
    await createKafkaConnectClient({ connectUrl: connect.url, timeoutMs: 2000, retries: 0, retryMinDelayMs: 0, retryMaxDelayMs: 0 }).deleteConnector('cellar-meridian-trading');
    connect.unreachableHosts.add('pg-down.rhone-imports.example');
    connect.requests.length = 0;

    const r = await cellar(['apply', '--prune']);
    expect(r.code, r.out).toBe(1);
    expect(r.stderr).toContain('Kafka Connect rejected 1 field(s); nothing was changed:');
    expect(r.stderr).toContain(`${join(dir, 'rhone-imports.yaml')}: source.connection.host (connector property database.hostname): Unable to connect`);
    expect(writes(connect)).toEqual([]);
    expect(connect.connector('cellar-rhone-imports')?.config['database.hostname']).toBe('pg.rhone-imports.example');
    expect(connect.connector('cellar-meridian-trading')).toBeUndefined();
    expect(connect.connector('cellar-harbor-spirits')).toBeDefined();
  });

  it('retries requests answered 409 (rebalance in progress) and then succeeds', async () => {
    connect.failNext(2, 409, { match: (m, p) => m === 'PUT' && p === '/connectors/cellar-rhone-imports/config' });
    const r = await cellar(['apply']);
    expect(r.code, r.out).toBe(0);
    expect(r.stderr).toContain('rebalance in progress (409); retry 1/5');
    expect(r.stdout).toContain('created cellar-rhone-imports');
    expect(connect.requests.filter((q) => q.method === 'PUT' && q.path === '/connectors/cellar-rhone-imports/config')).toHaveLength(3);
    expect(connect.connector('cellar-rhone-imports')?.state).toBe('RUNNING');
  });

  it('surfaces a 500 with Connect\'s error_code and message after the retries, exit code 3 (a dependency failing)', async () => {
    connect.failNext(100, 500, { message: 'Failed to write connector configuration to Kafka: org.apache.kafka.common.errors.TimeoutException' });
    const r = await cellar(['plan'], { CELLAR_CONNECT_RETRIES: '1' });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/cellar: kafka_connect_server_error: GET http:\/\/127\.0\.0\.1:\d+\/connectors\?expand=status&expand=info: HTTP 500 \(error_code 500\): Failed to write connector configuration to Kafka: org\.apache\.kafka\.common\.errors\.TimeoutException \(gave up after 2 attempts\)/);
  });

  it('says clearly when Connect is unreachable, without the credentials of its URL', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const r = await cellar(['status'], { CELLAR_CONNECT_URL: `http://admin:hunter2-connect-pw@127.0.0.1:${port}`, CELLAR_CONNECT_RETRIES: '1' });
    expect(r.code).toBe(3); // a dependency unreachable
    expect(r.stderr).toContain(`cellar: kafka_connect_unavailable: cannot reach Kafka Connect at http://127.0.0.1:${port} (GET /connectors?expand=status&expand=info): ECONNREFUSED (gave up after 2 attempts)`);
    expect(r.out).not.toContain('hunter2-connect-pw');
  });

  it('status shows a failed task with its trace (secrets masked) and exits 1', async () => {
    await seed();
    connect.failTask('cellar-rhone-imports', 0, [
      'org.apache.kafka.connect.errors.ConnectException: An exception occurred in the change event producer. This connector will be stopped.',
      '\tat io.debezium.pipeline.ErrorHandler.setProducerThrowable(ErrorHandler.java:67)',
      `Caused by: org.postgresql.util.PSQLException: FATAL: password authentication failed for user "cellar_cdc" (password ${SENTINELS.RHONE_PG_PASSWORD})`,
      '\tat org.postgresql.core.v3.ConnectionFactoryImpl.doAuthentication(ConnectionFactoryImpl.java:693)',
    ].join('\n'));
    const r = await cellar(['status']);
    expect(r.code, r.out).toBe(1);
    expect(r.stdout).toContain('cellar-rhone-imports (supplier rhone-imports): RUNNING');
    expect(r.stdout).toContain('  task 0: FAILED');
    expect(r.stdout).toContain('    | Caused by: org.postgresql.util.PSQLException: FATAL: password authentication failed for user "cellar_cdc" (password ***)');
    expect(r.stdout).toContain('cellar-cascade-wines (supplier cascade-wines): RUNNING');
    expect(r.stdout).toContain('4 connectors: 3 healthy or paused, 1 failed, 0 missing.');
  });

  it('masks secrets in traces by shape too, when this process does not hold them', async () => {
    await seed();
    connect.failTask('cellar-rhone-imports', 0, [
      'org.apache.kafka.connect.errors.ConnectException: cannot connect to jdbc:postgresql://cdc:not-in-env-5521@db.internal:5432/inv',
      '\tat io.debezium.jdbc.JdbcConnection.connect(JdbcConnection.java:1)',
      'Caused by: java.sql.SQLException: url=jdbc:postgresql://db.internal/inv?user=cdc&password=not-in-env-5522',
    ].join('\n'));
    const r = await cellar(['status', '--full-traces']);
    expect(r.code, r.out).toBe(1);
    expect(r.stdout).toContain('jdbc:postgresql://cdc:***@db.internal:5432/inv');
    expect(r.stdout).toContain('user=cdc&password=***');
    expect(r.out).not.toContain('not-in-env-552');
  });

  it('restart restarts only failed connectors and tasks', async () => {
    await seed();
    connect.failTask('cellar-rhone-imports', 0, 'java.lang.IllegalStateException: boom');
    connect.failConnector('cellar-harbor-spirits', 'com.mongodb.MongoTimeoutException: Timed out');
    connect.requests.length = 0;
    const r = await cellar(['restart']);
    expect(r.code, r.out).toBe(0);
    expect(r.stdout).toContain('restarted cellar-harbor-spirits: connector');
    expect(r.stdout).toContain('restarted cellar-rhone-imports: task 0');
    const restarts = connect.requests.filter((q) => q.method === 'POST').map((q) => q.path).sort();
    expect(restarts).toEqual([
      '/connectors/cellar-harbor-spirits/restart?includeTasks=true&onlyFailed=true',
      '/connectors/cellar-rhone-imports/restart?includeTasks=true&onlyFailed=true',
    ]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const after = await cellar(['status']);
    expect(after.code, after.out).toBe(0);
    expect(after.stdout).toContain('4 connectors: 4 healthy or paused, 0 failed, 0 missing.');
    const again = await cellar(['restart']);
    expect(again.stdout).toContain('Nothing failed: no connector or task restarted.');
  });

  it('pause and resume a connector; an unknown name is a 404 with Connect\'s message', async () => {
    await seed();
    const p = await cellar(['pause', 'cellar-cascade-wines']);
    expect(p.code, p.out).toBe(0);
    expect(connect.connector('cellar-cascade-wines')).toMatchObject({ state: 'PAUSED', tasks: [{ id: 0, state: 'PAUSED' }] });
    expect((await cellar(['status', 'cellar-cascade-wines'])).stdout).toContain('cellar-cascade-wines (supplier cascade-wines): PAUSED');
    const r = await cellar(['resume', 'cellar-cascade-wines']);
    expect(r.code, r.out).toBe(0);
    expect(connect.connector('cellar-cascade-wines')).toMatchObject({ state: 'RUNNING', tasks: [{ id: 0, state: 'RUNNING' }] });
    const missing = await cellar(['pause', 'cellar-nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/kafka_connect_not_found: PUT http:\/\/127\.0\.0\.1:\d+\/connectors\/cellar-nope\/pause: HTTP 404 \(error_code 404\): Connector cellar-nope not found/);
  });

  it('reports an answer that is not Connect\'s (HTML from a proxy, wrong shape) as unexpected', async () => {
    const proxy = createServer((req, res) => {
      if (req.url === '/') res.writeHead(200, { 'content-type': 'application/json' }).end('[1,2]');
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>');
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const client = createKafkaConnectClient({ connectUrl: url, timeoutMs: 2000, retries: 0, retryMinDelayMs: 0, retryMaxDelayMs: 0 });
    try {
      await expect(client.listConnectors()).rejects.toThrow(/kafka|not JSON: <html>login<\/html>/);
      await expect(client.listConnectors()).rejects.toMatchObject({ code: 'kafka_connect_unexpected_response' });
      await expect(client.serverInfo()).rejects.toThrow(/answer is not Connect server info: \[1,2\]/);
      const err = await client.serverInfo().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CellarError);
      expect((err as CellarError).retriable).toBe(false);
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('times out a request Connect does not answer, and retries it', async () => {
    const seen: number[] = [];
    const silent = createServer(() => seen.push(Date.now()));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const client = createKafkaConnectClient({ connectUrl: url, timeoutMs: 300, retries: 1, retryMinDelayMs: 10, retryMaxDelayMs: 10 });
    try {
      const err = (await client.status('cellar-x').catch((e: unknown) => e)) as CellarError;
      expect(err).toBeInstanceOf(CellarError);
      expect(err.code).toBe('kafka_connect_unavailable');
      expect(err.message).toBe(`cannot reach Kafka Connect at ${url} (GET /connectors/cellar-x/status): no answer within 300 ms (gave up after 2 attempts)`);
      expect(seen).toHaveLength(2);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('generate prints configs with provider references only', async () => {
    const r = await cellar(['generate', '--converter', 'json']);
    expect(r.code, r.out).toBe(0);
    const out = JSON.parse(r.stdout) as Array<{ name: string; config: Record<string, string> }>;
    expect(out.map((c) => c.name).sort()).toEqual(['cellar-cascade-wines', 'cellar-harbor-spirits', 'cellar-meridian-trading', 'cellar-rhone-imports']);
    expect(out.find((c) => c.name === 'cellar-cascade-wines')!.config['database.password']).toBe(`\${dir:${dir}:cascade-password}`);
    expect(out.every((c) => c.config['value.converter'] === 'org.apache.kafka.connect.json.JsonConverter')).toBe(true);
  });
});

afterAll(() => {
  // Runs after every test above: no secret value in any output, request to Connect or stored config.
  expect(outputs.length).toBeGreaterThan(0);
  for (const out of outputs) for (const s of ALL_SENTINELS) expect(out.includes(s), `secret ${s.slice(0, 14)}… in output:\n${out.slice(0, 400)}`).toBe(false);
});

describe('no secret leaves Cellar', () => {
  it('never sends a secret value to Connect, in plan, apply, status or restart', async () => {
    await cellar(['apply']);
    connect.failTask('cellar-harbor-spirits', 0, `com.mongodb.MongoSecurityException: Exception authenticating MongoCredential{userName='cellar_cdc', password=${SENTINELS.HARBOR_MONGO_PASSWORD}}`);
    const status = await cellar(['status']);
    expect(status.stdout).toContain("password=***}");
    await cellar(['restart']);
    await cellar(['plan']);
    const sent = JSON.stringify(connect.requests);
    for (const s of ALL_SENTINELS) expect(sent.includes(s), s).toBe(false);
    for (const name of ['cellar-rhone-imports', 'cellar-cascade-wines', 'cellar-harbor-spirits', 'cellar-meridian-trading']) {
      const stored = JSON.stringify(connect.connector(name)?.config);
      for (const s of ALL_SENTINELS) expect(stored.includes(s)).toBe(false);
    }
    expect(connect.connector('cellar-cascade-wines')?.config['database.password']).toBe(`\${dir:${dir}:cascade-password}`);
  });
});
