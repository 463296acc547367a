import { describe, expect, it } from 'vitest';
import type { ConnectorStatus } from '../../connectors/kafka-connect/status-source.js';
import { ConfigError } from '../../pipelines/core/errors.js';
import { connectorNamePrefix, connectorSupplierIds, withConnectorStatus } from '../../pipelines/state/connector-health.js';
import type { SupplierHealth } from '../../pipelines/state/supplier-health.js';

/** Per-supplier health with Kafka Connect's view folded in (pipelines/state/connector-health.ts). */

/** A supplier nothing native reports on, as supplierHealth answers it. */
function unreported(supplierId: string): SupplierHealth {
  return {
    supplierId,
    status: 'unknown',
    detail: 'no runtime reports on this supplier (a Debezium supplier, or nothing runs it)',
    capture: null,
    rawTopics: null,
    lastChangeAt: null,
    deadLetters: { pending: 0, byReason: [], newest: [] },
    held: 0,
    lastReconciliation: null,
  };
}

/** A supplier whose embedded reader reported `state`, `reporting` telling whether that report is fresh. */
function native(supplierId: string, reporting: boolean, state: 'streaming' | 'stopped' = 'streaming'): SupplierHealth {
  const at = new Date(reporting ? Date.now() : Date.now() - 120_000);
  return {
    ...unreported(supplierId),
    status: reporting ? (state === 'streaming' ? 'ok' : 'stopped') : 'unknown',
    detail: reporting ? null : `the embedded runtime last reported at ${at.toISOString()} (${state})`,
    capture: { runtime: 'embedded', state, detail: null, snapshotRows: 0, changes: 5, lastChangeAt: at, restarts: 0, lagBytes: null, lagDetail: null, stateSince: at, updatedAt: at, reporting },
    lastChangeAt: at,
  };
}

const connector = (name: string, state: string, tasks: Array<[string, string?]>): ConnectorStatus => ({
  name,
  state,
  type: 'source',
  tasks: tasks.map(([s, trace], id) => ({ id, state: s, workerId: '10.0.0.1:8083', ...(trace ? { trace } : {}) })),
});

const TRACE = 'org.apache.kafka.connect.errors.ConnectException: boom\n\tat io.debezium.connector.mongodb.MongoDbConnectorTask.start(MongoDbConnectorTask.java:101)\n\tat org.apache.kafka.connect.runtime.WorkerTask.run(WorkerTask.java:234)';

const one = (h: SupplierHealth, c: ConnectorStatus[] | { error: string }, prefix = 'cellar-') => withConnectorStatus([h], c, prefix)[0]!;

describe('withConnectorStatus', () => {
  it('is ok when the connector and every task run', () => {
    const h = one(unreported('harbor'), [connector('cellar-harbor', 'RUNNING', [['RUNNING'], ['RUNNING']])]);
    expect(h).toMatchObject({ status: 'ok', detail: null, connector: { name: 'cellar-harbor', state: 'RUNNING', tasks: [{ id: 0, state: 'RUNNING' }, { id: 1, state: 'RUNNING' }] } });
  });

  it('is failing when a task FAILED, naming the task and only the first line of its trace', () => {
    const h = one(unreported('harbor'), [connector('cellar-harbor', 'RUNNING', [['RUNNING'], ['FAILED', TRACE]])]);
    expect(h.status).toBe('failing');
    expect(h.detail).toBe('connector cellar-harbor task 1 FAILED: org.apache.kafka.connect.errors.ConnectException: boom');
    expect(h.connector).toEqual({
      name: 'cellar-harbor',
      state: 'RUNNING',
      tasks: [{ id: 0, state: 'RUNNING' }, { id: 1, state: 'FAILED', trace: 'org.apache.kafka.connect.errors.ConnectException: boom' }],
    });
  });

  it('is failing when the connector itself FAILED', () => {
    const h = one(unreported('harbor'), [connector('cellar-harbor', 'FAILED', [])]);
    expect(h).toMatchObject({ status: 'failing', detail: 'connector cellar-harbor FAILED' });
  });

  it('keeps credentials of a trace\'s connection string out', () => {
    const h = one(unreported('harbor'), [connector('cellar-harbor', 'RUNNING', [['FAILED', 'com.mongodb.MongoTimeoutException: mongodb://cdc:s3cret@mongo.harbor:27017/feed timed out\n\tat x']])]);
    expect(h.detail).not.toContain('s3cret');
    expect(JSON.stringify(h.connector)).not.toContain('s3cret');
    expect(h.detail).toContain('mongodb://cdc:***@mongo.harbor:27017/feed timed out');
  });

  it('is stopped when paused or stopped', () => {
    expect(one(unreported('harbor'), [connector('cellar-harbor', 'PAUSED', [['PAUSED']])])).toMatchObject({ status: 'stopped', detail: 'connector cellar-harbor is PAUSED' });
    expect(one(unreported('harbor'), [connector('cellar-harbor', 'STOPPED', [])])).toMatchObject({ status: 'stopped', detail: 'connector cellar-harbor is STOPPED' });
  });

  it('is starting when unassigned or running without tasks', () => {
    expect(one(unreported('harbor'), [connector('cellar-harbor', 'UNASSIGNED', [['UNASSIGNED']])])).toMatchObject({ status: 'starting', detail: 'connector cellar-harbor UNASSIGNED, task 0 UNASSIGNED' });
    expect(one(unreported('harbor'), [connector('cellar-harbor', 'RUNNING', [])])).toMatchObject({ status: 'starting', detail: 'connector cellar-harbor RUNNING with no tasks yet' });
    expect(one(unreported('harbor'), [connector('cellar-harbor', 'RUNNING', [['RUNNING'], ['UNASSIGNED']])])).toMatchObject({ status: 'starting', detail: 'connector cellar-harbor RUNNING, task 1 UNASSIGNED' });
  });

  it('stays unknown, saying so, when no connector has the supplier\'s name', () => {
    const h = one(unreported('harbor'), [connector('cellar-other', 'RUNNING', [['RUNNING']]), connector('harbor', 'RUNNING', [['RUNNING']])]);
    expect(h).toMatchObject({ status: 'unknown', detail: 'no connector cellar-harbor on Kafka Connect and no native reader reports' });
    expect(h.connector).toBeUndefined();
  });

  it('stays unknown with Connect\'s error when Connect could not be reached, never showing credentials', () => {
    const error = 'cannot reach Kafka Connect at http://admin:hunter2@connect.internal:8083 (GET /connectors?expand=status&expand=info): ECONNREFUSED';
    const h = one(unreported('harbor'), { error });
    expect(h.status).toBe('unknown');
    expect(h.detail).toMatch(/^Kafka Connect could not be reached, so connector cellar-harbor is unknown \(cannot reach Kafka Connect at http:\/\/admin:\*\*\*@connect\.internal:8083\/? .*ECONNREFUSED\) and no native reader reports$/);
    expect(h.connector).toMatchObject({ name: 'cellar-harbor', error: expect.stringContaining('ECONNREFUSED') });
    expect(JSON.stringify(h)).not.toContain('hunter2');
  });

  it('lets a fresh native report win, still showing the connector', () => {
    const fresh = native('acme', true);
    const h = one(fresh, [connector('cellar-acme', 'RUNNING', [['FAILED', TRACE]])]);
    expect(h.status).toBe('ok');
    expect(h.detail).toBeNull();
    expect(h.connector).toMatchObject({ name: 'cellar-acme', tasks: [{ id: 0, state: 'FAILED' }] });
    const stopped = one(native('acme', true, 'stopped'), [connector('cellar-acme', 'RUNNING', [['RUNNING']])]);
    expect(stopped.status).toBe('stopped');
    expect(one(fresh, [])).toEqual(fresh);
    expect(one(fresh, { error: 'down' })).toMatchObject({ status: 'ok', detail: null, connector: { name: 'cellar-acme', error: 'down' } });
  });

  it('overrides a stale native report with the connector\'s state, keeping the stale report', () => {
    const stale = native('acme', false);
    const ok = one(stale, [connector('cellar-acme', 'RUNNING', [['RUNNING']])]);
    expect(ok).toMatchObject({ status: 'ok', detail: null, capture: { runtime: 'embedded', reporting: false } });
    const failing = one(stale, [connector('cellar-acme', 'RUNNING', [['FAILED', TRACE]])]);
    expect(failing).toMatchObject({ status: 'failing', detail: 'connector cellar-acme task 0 FAILED: org.apache.kafka.connect.errors.ConnectException: boom' });
    const missing = one(stale, []);
    expect(missing.status).toBe('unknown');
    expect(missing.detail).toBe(`no connector cellar-acme on Kafka Connect; ${stale.detail}`);
  });

  it('uses the given name prefix', () => {
    expect(one(unreported('harbor'), [connector('prod.harbor', 'RUNNING', [['RUNNING']])], 'prod.')).toMatchObject({ status: 'ok', connector: { name: 'prod.harbor' } });
  });

  it('does not change its input', () => {
    const h = unreported('harbor');
    const copy = structuredClone(h);
    withConnectorStatus([h], [connector('cellar-harbor', 'FAILED', [])], 'cellar-');
    expect(h).toEqual(copy);
  });
});

describe('connectorSupplierIds', () => {
  it('lists the suppliers of the connectors with the prefix, nothing when Connect could not be read', () => {
    const all = [connector('cellar-harbor', 'RUNNING', []), connector('cellar-meridian', 'FAILED', []), connector('other-thing', 'RUNNING', []), connector('cellar-Bad_Id', 'RUNNING', [])];
    expect(connectorSupplierIds(all, 'cellar-')).toEqual(['harbor', 'meridian']);
    expect(connectorSupplierIds({ error: 'down' }, 'cellar-')).toEqual([]);
  });
});

describe('connectorNamePrefix', () => {
  it('is CELLAR_CONNECT_NAME_PREFIX, else the default of `cellar connectors`', () => {
    expect(connectorNamePrefix({})).toBe('cellar-');
    expect(connectorNamePrefix({ CELLAR_CONNECT_NAME_PREFIX: '' })).toBe('cellar-');
    expect(connectorNamePrefix({ CELLAR_CONNECT_NAME_PREFIX: 'prod.' })).toBe('prod.');
    expect(() => connectorNamePrefix({ CELLAR_CONNECT_NAME_PREFIX: 'bad prefix' })).toThrow(ConfigError);
  });
});
