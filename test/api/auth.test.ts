import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { startLocalKafkaConnect, type LocalKafkaConnect } from '../../infra/local/kafka-connect.js';
import { connectProducer, createKafka } from '../../pipelines/kafka/client.js';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';
import { createApiKey, revokeApiKey, type Role } from '../../pipelines/api/keys-store.js';
import { createConnectStatusSource } from '../../connectors/kafka-connect/status-source.js';
import { startApi } from '../../pipelines/api/index.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { insertDeadLetters } from '../../pipelines/state/dead-letters.js';
import { upsertRegionalStock } from '../../sinks/postgres/sink.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { tempDir } from '../../infra/local/process.js';
import type { Producer } from 'kafkajs';
import { cellarEnv, freshDatabase, rid, services, supplierDir } from '../support/services.js';
import { call, keysByRole, memoryLogger, openEvents, startTestApi, stock, type TestApi } from './api-support.js';

/** Every /v1 operation of the OpenAPI document with the least role it needs. */
async function operations(api: TestApi): Promise<Array<{ method: string; path: string; role: Role }>> {
  const doc = (await call(`${api.url}/openapi.json`, undefined)).body as { paths: Record<string, Record<string, { 'x-cellar-role'?: Role }>> };
  return Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => ({ method: method.toUpperCase(), path, role: op['x-cellar-role']! })),
  );
}

/** A concrete URL and body for an operation of the document. */
function request(op: { method: string; path: string }, region: string): { url: string; body?: unknown } {
  const url = op.path.replace('{region}', region).replace('{sku}', 'sku-1');
  if (op.path === '/v1/ops/dead-letters/replay') return { url, body: { reason: 'unknown_sku', dryRun: true } };
  if (op.method === 'POST') return { url, body: {} };
  return { url };
}

/** Runs `cellar <args>` against the test database; resolves with exit code and output. */
async function cellar(args: string[], pgUrl: string): Promise<{ code: number | null; out: string }> {
  const file = join(tempDir('keys-cli'), 'out.log');
  const child = spawnCellar(args, cellarEnv({ CELLAR_PG_URL: pgUrl, CELLAR_LOG_LEVEL: 'warn' }), file);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  await new Promise((r) => setTimeout(r, 50)); // the log stream flushes
  return { code, out: readFileSync(file, 'utf8') };
}

describe('read API access control and audit', () => {
  const region = rid('r');
  let db: { url: string; pool: pg.Pool };
  let api: TestApi;
  let keys: Record<Role, string>;
  let connect: LocalKafkaConnect;
  let producer: Producer | undefined;
  const reconcileCalls: Array<{ supplierId?: string; repair: boolean }> = [];

  beforeAll(async () => {
    db = await freshDatabase();
    await upsertRegionalStock(db.pool, [stock(region, 'sku-1', 12, 1)]);
    connect = await startLocalKafkaConnect();
    const cfg = loadRuntimeConfig(cellarEnv({ CELLAR_PG_URL: db.url }));
    api = await startTestApi({
      // Every endpoint is called with bad keys many times in a row: the per-address slowdown is tested on its own.
      failedAuthPerS: 0,
      pgUrl: db.url,
      redisUrl: services().redisUrl,
      keyPrefix: rid('p'),
      connectors: createConnectStatusSource(connect.url),
      reconcile: async (o) => {
        reconcileCalls.push(o);
        return { runId: 7, supplierId: o.supplierId ?? null, rowsCompared: 120, driftedKeys: 0 };
      },
      producer: async () => (producer ??= await connectProducer(createKafka(cfg, memoryLogger().log, 'api-test'), cfg)),
    });
    keys = await keysByRole(db.pool, rid('k'));
  });

  afterAll(async () => {
    await api?.close();
    await producer?.disconnect();
    await connect?.close();
    await db?.pool.end();
  });

  it('refuses a missing, malformed, wrong or revoked key on every /v1 endpoint, and an under-privileged one where a higher role is needed', async () => {
    const ops = await operations(api);
    expect(ops.length).toBeGreaterThanOrEqual(11);
    expect(new Set(ops.map((o) => o.role))).toEqual(new Set(['supplier', 'reader', 'operator', 'admin']));
    const wrong = keys.reader.replace(/_[^_]+$/, `_${'A'.repeat(43)}`); // right id, wrong secret
    const revoked = (await createApiKey(db.pool, { name: rid('gone'), role: 'admin', rateLimitPerS: 0 })).key;
    const [, revokedId] = /^ck_([0-9a-f]{12})_/.exec(revoked)!;
    expect((await call(`${api.url}/v1/ops/keys`, revoked)).status).toBe(200); // works (and is cached) until revoked
    await revokeApiKey(db.pool, revokedId!);
    await new Promise((r) => setTimeout(r, 100)); // the NOTIFY reaches the API
    const presented: Array<[string, string | undefined, string]> = [
      ['missing', undefined, 'missing_key'],
      ['malformed', 'not-a-key', 'invalid_key'],
      ['wrong secret', wrong, 'invalid_key'],
      ['unknown id', `ck_000000000000_${'B'.repeat(43)}`, 'invalid_key'],
      ['revoked', revoked, 'revoked_key'],
    ];
    for (const op of ops) {
      const { url, body } = request(op, region);
      for (const [what, key, code] of presented) {
        const r = await call(`${api.url}${url}`, key, { method: op.method, body });
        expect(r.status, `${op.method} ${op.path} with a ${what} key`).toBe(401);
        expect(r.body.error.code, `${op.method} ${op.path} with a ${what} key`).toBe(code);
      }
      for (const role of ['reader', 'operator', 'admin'] as const) {
        const r = op.path === '/v1/events' || op.path === '/v1/stock-events/stream' ? await openEvents(`${api.url}${url}`, keys[role]) : await call(`${api.url}${url}`, keys[role], { method: op.method, body });
        if ('close' in r) r.close();
        // A supplier's feed takes its own key (test/api/feed-push.test.ts) or an admin's, no other role.
        const allowed = op.role === 'supplier' ? role === 'admin' : ['reader', 'operator', 'admin'].indexOf(role) >= ['reader', 'operator', 'admin'].indexOf(op.role);
        if (allowed) expect(r.status, `${op.method} ${op.path} as ${role}`).not.toBeOneOf([401, 403]);
        else {
          expect(r.status, `${op.method} ${op.path} as ${role}`).toBe(403);
          expect((r as { body: { error: { message: string } } }).body.error.message).toContain(`needs ${op.role}`);
        }
      }
    }
    // The same key is refused through the other header too, and never accepted in the URL.
    expect((await call(`${api.url}/v1/stock/${region}/sku-1`, undefined, { headers: { 'x-api-key': keys.reader } })).status).toBe(200);
    expect((await call(`${api.url}/v1/stock/${region}/sku-1`, undefined, { headers: { 'x-api-key': revoked } })).status).toBe(401);
    expect((await call(`${api.url}/v1/stock/${region}/sku-1?key=${keys.reader}`, undefined)).status).toBe(401);
    // Health, metrics, the OpenAPI document and the dashboard page hold no stock data and need no key.
    for (const p of ['/healthz', '/readyz', '/metrics', '/openapi.json', '/dashboard']) expect((await call(`${api.url}${p}`, undefined)).status, p).toBe(200);
  });

  it('runs operator and admin actions and audits each one: who, what, when, outcome', async () => {
    const before = Number((await db.pool.query('SELECT coalesce(max(id), 0) AS m FROM cellar.api_audit')).rows[0].m);
    // Connector status from Kafka Connect (its REST contract served locally).
    const put = await fetch(`${connect.url}/connectors/cellar-acme/config`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ 'connector.class': 'io.debezium.connector.postgresql.PostgresConnector', 'database.hostname': 'db', 'database.user': 'cdc', 'database.dbname': 'erp', 'topic.prefix': 'acme' }),
    });
    expect(put.status).toBe(201);
    connect.failTask('cellar-acme', 0, 'org.apache.kafka.connect.errors.ConnectException: boom');
    const st = await call(`${api.url}/v1/ops/connectors`, keys.operator);
    expect(st.status).toBe(200);
    expect(st.body.connectors).toEqual([expect.objectContaining({ name: 'cellar-acme', tasks: [expect.objectContaining({ id: 0, state: 'FAILED' })] })]);

    const rec = await call(`${api.url}/v1/ops/reconcile`, keys.operator, { method: 'POST', body: { supplierId: 'acme' } });
    expect(rec.status).toBe(200);
    expect(rec.body).toMatchObject({ runId: 7, supplierId: 'acme' });
    expect(reconcileCalls.at(-1)).toEqual({ supplierId: 'acme', repair: true });

    // A dead letter from a real topic, replayed to that topic on the test broker.
    const topic = rid('raw.');
    await insertDeadLetters(db.pool, [
      { stage: 'normalizer', reason: 'unknown_sku', message: 'no canonical SKU for X1', supplierId: 'acme', topic, partition: 0, offset: '5', sourcePosition: null, key: Buffer.from('k'), value: Buffer.from('{"op":"c"}'), tsMs: Date.now() },
    ]);
    const denied = await call(`${api.url}/v1/ops/dead-letters/replay`, keys.operator, { method: 'POST', body: { reason: 'unknown_sku' } });
    expect(denied.status).toBe(403);
    const listed = await call(`${api.url}/v1/ops/dead-letters?reason=unknown_sku`, keys.operator);
    expect(listed.body.letters).toHaveLength(1);
    const replay = await call(`${api.url}/v1/ops/dead-letters/replay`, keys.admin, { method: 'POST', body: { reason: 'unknown_sku' } });
    expect(replay.status).toBe(200);
    expect(replay.body).toMatchObject({ replayed: [listed.body.letters[0].id], skipped: [], dryRun: false });
    const { rows: marked } = await db.pool.query('SELECT replay_count FROM cellar.dead_letters');
    expect(marked[0].replay_count).toBe(1);
    const everything = await call(`${api.url}/v1/ops/dead-letters/replay`, keys.admin, { method: 'POST', body: {} });
    expect(everything.status).toBe(400);

    const audit = await call(`${api.url}/v1/ops/audit?limit=20`, keys.admin);
    expect(audit.status).toBe(200);
    const mine = (audit.body.entries as Array<Record<string, any>>).filter((e) => e.id > before && e.action !== 'audit.read').reverse();
    const admin = (await db.pool.query<{ name: string }>("SELECT name FROM cellar.api_keys WHERE role = 'admin' AND revoked_at IS NULL")).rows[0]!.name;
    const operator = (await db.pool.query<{ name: string }>("SELECT name FROM cellar.api_keys WHERE role = 'operator'")).rows[0]!.name;
    expect(mine.map((e) => [e.action, e.actor, e.outcome, e.status])).toEqual([
      ['connectors.status', `key:${operator}`, 'ok', 200],
      ['reconcile.run', `key:${operator}`, 'ok', 200],
      ['dead-letters.replay', `key:${operator}`, 'denied', 403],
      ['dead-letters.list', `key:${operator}`, 'ok', 200],
      ['dead-letters.replay', `key:${admin}`, 'ok', 200],
      ['dead-letters.replay', `key:${admin}`, 'failed', 400],
    ]);
    expect(mine[1]).toMatchObject({ target: 'acme', params: { body: { supplierId: 'acme' } } });
    expect(mine[4]).toMatchObject({ target: 'unknown_sku', detail: 'replayed 1, queued 0, skipped 0' });
    expect(mine[5]!.detail).toMatch(/name the letters/);
    // The audit read itself is audited; no row holds a key or its secret.
    const { rows } = await db.pool.query<{ t: string }>('SELECT row_to_json(a)::text AS t FROM cellar.api_audit a');
    expect(rows.some((r) => r.t.includes('"audit.read"'))).toBe(true);
    for (const k of Object.values(keys)) expect(rows.every((r) => !r.t.includes(k.slice(-43)))).toBe(true);
  });

  it('answers connector status with 503 without Kafka Connect and reconciliation with 501 without a reconciler', async () => {
    const bare = await startTestApi({ pgUrl: db.url, redisUrl: services().redisUrl, failedAuthPerS: 0 });
    try {
      const c = await call(`${bare.url}/v1/ops/connectors`, keys.operator);
      expect(c.status).toBe(503);
      expect(c.body.error.message).toBe('Kafka Connect not configured: set CELLAR_CONNECT_URL');
      const r = await call(`${bare.url}/v1/ops/reconcile`, keys.operator, { method: 'POST' });
      expect(r.status).toBe(501);
    } finally {
      await bare.close();
    }
  });

  it('runs reconciliation over the supplier registry when started from the configuration (cellar run api)', async () => {
    // One supplier whose source Cellar does not read itself (a CSV feed): nothing to reconcile.
    const dir = supplierDir({ valley: 'id: valley\nname: Valley\nsource: { kind: csv, topicPrefix: valley, tables: [{ name: feed.stock, key: [sku, store] }] }\nmapping: { sku: sku, warehouse: store, quantity: bottles, unit: bottles, regions: { napa: us-west } }\n' });
    const cfg = loadRuntimeConfig(cellarEnv({ CELLAR_PG_URL: db.url, CELLAR_SUPPLIERS_DIR: dir }));
    const running = await startApi(cfg, memoryLogger().log, new CellarMetrics(false), { port: 0, host: '127.0.0.1' });
    try {
      const unknown = await call(`${running.url}/v1/ops/reconcile`, keys.operator, { method: 'POST', body: { supplierId: 'nope' } });
      expect(unknown.status).toBe(400);
      expect(unknown.body.error.message).toContain('no supplier "nope" in the registry (known: valley)');
      const none = await call(`${running.url}/v1/ops/reconcile`, keys.operator, { method: 'POST', body: { repair: false } });
      expect(none.status).toBe(200);
      // No supplier source to read; the check of keys no contributor was counted under still runs, and finds
      // the totals this suite wrote straight into regional_stock (no contribution behind them).
      expect(none.body.runs.map((r: { supplierId: string }) => r.supplierId)).toEqual(['*']);
      expect(none.body.runs[0].drift.length).toBeGreaterThan(0);
      expect(none.body.runs[0].drift.every((d: { kind: string }) => d.kind === 'orphan')).toBe(true);
      const { rows } = await db.pool.query<{ outcome: string; status: number }>("SELECT outcome, status FROM cellar.api_audit WHERE action = 'reconcile.run' ORDER BY id DESC LIMIT 2");
      expect(rows.map((r) => `${r.outcome}:${r.status}`)).toEqual(['ok:200', 'failed:400']);
    } finally {
      await running.stop();
    }
  });

  it('limits each key to its rate with 429 and Retry-After, independently of other keys', async () => {
    const slow = (await createApiKey(db.pool, { name: rid('slow'), role: 'reader', rateLimitPerS: 2 })).key;
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 8; i++) {
      const r = await call(`${api.url}/v1/stock/${region}/sku-1`, slow);
      statuses.push(r.status);
      if (r.status === 429) retryAfter ??= r.headers.get('retry-after');
    }
    // A burst of twice the rate passes (a token may refill while the loop runs), then 429.
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(4);
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(5);
    expect(statuses.at(-1)).toBe(429);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect((await call(`${api.url}/v1/stock/${region}/sku-1`, keys.reader)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await call(`${api.url}/v1/stock/${region}/sku-1`, slow)).status).toBe(200);
  });

  it('manages keys with `cellar keys`: the key is printed once, never listed, refused once revoked; secrets never reach the log', async () => {
    const name = rid('svc');
    const created = await cellar(['keys', 'create', '--name', name, '--role', 'reader', '--rate-limit', '0'], db.url);
    expect(created.code, created.out).toBe(0);
    const key = /(ck_[0-9a-f]{12}_[A-Za-z0-9_-]{43})/.exec(created.out)?.[1];
    expect(key, created.out).toBeDefined();
    expect(created.out).toContain('only time the key is shown');
    expect((await call(`${api.url}/v1/stock/${region}/sku-1`, key)).status).toBe(200);
    const listed = await cellar(['keys', 'list'], db.url);
    expect(listed.code).toBe(0);
    expect(listed.out).toContain(name);
    expect(listed.out).not.toContain(key!.slice(-43));
    const bad = await cellar(['keys', 'create', '--name', 'x', '--role', 'root'], db.url);
    expect(bad.code).toBe(2);
    expect(bad.out).toMatch(/--role root: expected one of supplier, reader, operator, admin/);
    const revoked = await cellar(['keys', 'revoke', name], db.url);
    expect(revoked.code, revoked.out).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    const after = await call(`${api.url}/v1/stock/${region}/sku-1`, key);
    expect(after.status).toBe(401);
    expect(after.body.error.code).toBe('revoked_key');
    const { rows } = await db.pool.query<{ action: string; outcome: string; actor: string }>("SELECT action, outcome, actor FROM cellar.api_audit WHERE action LIKE 'keys.%' AND action <> 'keys.list' ORDER BY id");
    expect(rows.map((r) => `${r.action}:${r.outcome}`)).toEqual(['keys.create:ok', 'keys.revoke:ok']);
    expect(rows[0]!.actor).toMatch(/^cli/);
    const { rows: stored } = await db.pool.query<{ t: string }>('SELECT row_to_json(k)::text AS t FROM cellar.api_keys k');
    expect(stored.every((r) => !r.t.includes(key!.slice(-43)))).toBe(true);
    // Nothing the API logged during this whole suite holds a key.
    const logged = api.lines.join('');
    for (const k of [...Object.values(keys), key!]) expect(logged).not.toContain(k.slice(-43));
  });
});
