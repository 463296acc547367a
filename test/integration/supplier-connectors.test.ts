import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/cellar-process.js';
import { startLocalKafkaConnect, type LocalKafkaConnect } from '../../infra/local/kafka-connect.js';
import { createConnectStatusSource } from '../../connectors/kafka-connect/status-source.js';
import { call, keysByRole, startTestApi, type TestApi } from '../api/api-support.js';
import { runCellar } from '../support/cli.js';
import { artifactDir, cellarEnv, eventually, freshDatabase, rid, services, supplierDir } from '../support/services.js';

/**
 * Debezium suppliers in the per-supplier health view: a MongoDB supplier (no native reader, so no
 * `cellar.source_status` row) shows its connector's state in `GET /v1/suppliers/{id}` and `cellar status`,
 * read from the Kafka Connect REST contract server (infra/local/kafka-connect.ts), as an on-call engineer sees it.
 */
describe('Debezium connector status in supplier health', () => {
  const EXAMPLES = join(REPO_ROOT, 'connectors/suppliers/examples');
  const SUPPLIER = 'harbor-spirits';
  const CONNECTOR = `cellar-${SUPPLIER}`;
  const TRACE = 'org.apache.kafka.connect.errors.ConnectException: boom\n\tat io.debezium.connector.mongodb.MongoDbConnectorTask.start(MongoDbConnectorTask.java:101)\n\tat org.apache.kafka.connect.runtime.WorkerTask.run(WorkerTask.java:234)';
  const logDir = artifactDir('supplier-connectors');
  let connect: LocalKafkaConnect;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let api: TestApi;
  let reader: string;
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    connect = await startLocalKafkaConnect();
    db = await freshDatabase();
    dir = supplierDir({});
    copyFileSync(join(EXAMPLES, `${SUPPLIER}.yaml`), join(dir, `${SUPPLIER}.yaml`));
    env = cellarEnv({ CELLAR_PG_URL: db.url, CELLAR_CONNECT_URL: connect.url, CELLAR_SUPPLIERS_DIR: dir, CELLAR_LOG_LEVEL: 'warn' });
    api = await startTestApi({ pgUrl: db.url, redisUrl: services().redisUrl, connectors: createConnectStatusSource(connect.url) });
    reader = (await keysByRole(db.pool, rid('k'))).reader;
    const applied = await runCellar(['connectors', 'apply'], env, logDir);
    expect(applied.code, applied.out).toBe(0);
    expect(connect.connector(CONNECTOR)?.state).toBe('RUNNING');
  }, 120_000);

  afterAll(async () => {
    await api?.close();
    await connect?.close();
    await db?.pool.end();
  });

  it('shows a MongoDB supplier whose connector runs as ok, in the API and in cellar status', async () => {
    const one = await call(`${api.url}/v1/suppliers/${SUPPLIER}`, reader);
    expect(one.status, JSON.stringify(one.body)).toBe(200);
    expect(one.body).toMatchObject({ supplierId: SUPPLIER, status: 'ok', detail: null, capture: null, connector: { name: CONNECTOR, state: 'RUNNING', tasks: [{ id: 0, state: 'RUNNING' }] } });

    // Nothing but Connect knows of it: the list shows it all the same.
    const all = await call(`${api.url}/v1/suppliers`, reader);
    expect(all.status).toBe(200);
    expect(all.body.kafkaConnect).toBeUndefined();
    expect(all.body.suppliers.map((s: { supplierId: string; status: string }) => [s.supplierId, s.status])).toEqual([[SUPPLIER, 'ok']]);
    expect((await call(`${api.url}/v1/suppliers/nope`, reader)).body.error.message).toBe('no supplier nope: nothing has reported on it and Kafka Connect has no connector cellar-nope');

    const st = await runCellar(['status'], env, logDir);
    expect(st.code, st.out).toBe(0);
    expect(st.out).toMatch(/supplier\s+status\s+runtime\s+.*connector/);
    expect(st.out).toMatch(/harbor-spirits\s+ok\s+kafka-connect\s+never\s+-\s+0\s+0\s+never\s+RUNNING/);
  }, 60_000);

  it('shows it failing once its task fails, naming the task and the first line of the trace; cellar status exits 1', async () => {
    connect.failTask(CONNECTOR, 0, TRACE);
    const one = await call(`${api.url}/v1/suppliers/${SUPPLIER}`, reader);
    expect(one.status).toBe(200);
    expect(one.body.status).toBe('failing');
    expect(one.body.detail).toBe(`connector ${CONNECTOR} task 0 FAILED: org.apache.kafka.connect.errors.ConnectException: boom`);
    expect(one.body.connector).toEqual({ name: CONNECTOR, state: 'RUNNING', tasks: [{ id: 0, state: 'FAILED', trace: 'org.apache.kafka.connect.errors.ConnectException: boom' }] });

    const st = await runCellar(['status'], env, logDir);
    expect(st.code, st.out).toBe(1);
    expect(st.out).toMatch(/harbor-spirits\s+failing\s+kafka-connect\s+.*RUNNING, task 0 FAILED/);
    expect(st.out).toContain(`harbor-spirits: failing: connector ${CONNECTOR} task 0 FAILED: org.apache.kafka.connect.errors.ConnectException: boom`);
    expect(st.out).not.toContain('MongoDbConnectorTask');

    const json = await runCellar(['status', '--supplier', SUPPLIER, '--json'], env, logDir);
    expect(json.code, json.out).toBe(1);
    expect(JSON.parse(json.out.trim().split('\n')[0]!)).toMatchObject({ supplierId: SUPPLIER, status: 'failing', connector: { name: CONNECTOR, tasks: [{ id: 0, state: 'FAILED' }] } });

    // `cellar connectors restart` brings it back, and the view follows on the next read.
    const restarted = await runCellar(['connectors', 'restart'], env, logDir);
    expect(restarted.code, restarted.out).toBe(0);
    expect(await eventually(async () => (await call(`${api.url}/v1/suppliers/${SUPPLIER}`, reader)).body.status === 'ok', 10_000, 100)).toBe(true);
  }, 60_000);

  it('keeps a registry supplier without a connector unknown, saying no connector and no reader report on it', async () => {
    const withMeridian = supplierDir({});
    for (const f of [`${SUPPLIER}.yaml`, 'meridian-trading.yaml']) copyFileSync(join(EXAMPLES, f), join(withMeridian, f));
    const st = await runCellar(['status'], { ...env, CELLAR_SUPPLIERS_DIR: withMeridian }, logDir);
    expect(st.code, st.out).toBe(1);
    expect(st.out).toMatch(/^meridian-trading\s+unknown\s+-\s+never\s+-\s+0\s+0\s+never\s+-$/m);
    expect(st.out).toContain('meridian-trading: unknown: no connector cellar-meridian-trading on Kafka Connect and no native reader reports');
    expect(st.out).toMatch(/harbor-spirits\s+ok\s+/);
  }, 60_000);

  it('answers 200 with Connect down: the connector error, the supplier unknown, and cellar status says so', async () => {
    await connect.close();
    const one = await call(`${api.url}/v1/suppliers/${SUPPLIER}`, reader);
    expect(one.status, JSON.stringify(one.body)).toBe(200);
    expect(one.body.status).toBe('unknown');
    expect(one.body.connector).toEqual({ name: CONNECTOR, error: expect.stringMatching(/^cannot reach Kafka Connect at http:\/\/127\.0\.0\.1:\d+ .*ECONNREFUSED/) });
    expect(one.body.detail).toMatch(new RegExp(`^Kafka Connect could not be reached, so connector ${CONNECTOR} is unknown \\(cannot reach Kafka Connect at http://127\\.0\\.0\\.1:\\d+ .*\\) and no native reader reports$`));

    const all = await call(`${api.url}/v1/suppliers`, reader);
    expect(all.status).toBe(200);
    expect(all.body.kafkaConnect.error).toMatch(/^cannot reach Kafka Connect at http:\/\/127\.0\.0\.1:\d+/);

    const st = await runCellar(['status'], env, logDir);
    expect(st.code, st.out).toBe(1);
    expect(st.out).toMatch(/harbor-spirits\s+unknown\s+-\s+.*unreachable/);
    expect(st.out).toMatch(/Kafka Connect could not be reached: cannot reach Kafka Connect at http:\/\/127\.0\.0\.1:\d+/);
    expect(st.out).toContain(`harbor-spirits: unknown: Kafka Connect could not be reached, so connector ${CONNECTOR} is unknown`);
  }, 60_000);
});
