import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { stopChild } from '../../infra/local/process.js';
import { runCellar } from '../support/cli.js';
import { artifactDir, cellarEnv, eventually, freshDatabase, rid, supplierDir } from '../support/services.js';
import { postgresSupplierYaml } from '../support/suppliers.js';

/**
 * Each broken input as an operator makes it: the command's exit code, one line naming the variable (or
 * file and field) to fix, no stack trace, no secret. Workers waiting for a dependency say so in one line
 * naming it, its variable and the next retry, with the Kafka client's own chatter kept at debug level.
 */
describe('broken input and dead dependencies: one line, the variable, no stack, no secret', () => {
  const logDir = artifactDir('broken-input');
  const SECRET = 'pw-s3cret-9c1f';
  let db: { url: string; pool: pg.Pool };
  let env: Record<string, string>;
  const noStack = (out: string) => expect(out, out).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);

  beforeAll(async () => {
    db = await freshDatabase();
    env = cellarEnv({ CELLAR_PG_URL: db.url, CELLAR_SUPPLIERS_DIR: supplierDir({ acme: postgresSupplierYaml(db.url, { regions: { d1: rid('r') } }) }) });
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  it.each([
    ['CELLAR_LOG_LEVEL', 'loud', 'expected one of trace, debug, info'],
    ['CELLAR_PG_URL', 'notaurl', 'expected a postgres:// URL'],
    ['CELLAR_REDIS_URL', 'localhost:6379', 'expected a redis:// or rediss:// URL'],
    ['CELLAR_KAFKA_STALL_MS', 'soon', 'expected a whole number'],
  ])('%s=%s exits 2 naming the variable', async (name, value, says) => {
    const r = await runCellar(['status'], { ...env, [name]: value }, logDir);
    expect(r.code, r.out).toBe(2);
    expect(r.out).toContain(`${name}: ${says}`);
    noStack(r.out);
  });

  it('a Postgres that does not answer: one line naming it, no password', async () => {
    const r = await runCellar(['status'], { ...env, CELLAR_PG_URL: `postgres://cellar:${SECRET}@127.0.0.1:1/cellar` }, logDir);
    expect(r.code, r.out).toBe(3);
    expect(r.out.trim().split('\n')).toHaveLength(1);
    expect(r.out).toMatch(/^cellar: postgres_unavailable: .*ECONNREFUSED 127\.0\.0\.1:1/);
    expect(r.out).not.toContain(SECRET);
  });

  it('a Schema Registry that does not answer: named with its variable, not "status 400"', async () => {
    const r = await runCellar(['schemas', 'register'], { ...env, CELLAR_SCHEMA_REGISTRY_URL: `http://reg:${SECRET}@127.0.0.1:1` }, logDir);
    expect(r.code, r.out).toBe(3);
    expect(r.out).toContain('the Schema Registry at http://127.0.0.1:1/ does not answer (ECONNREFUSED 127.0.0.1:1; CELLAR_SCHEMA_REGISTRY_URL)');
    expect(r.out).not.toContain('status 400');
    expect(r.out).not.toContain(SECRET);
    noStack(r.out);
  });

  /** Runs a worker until `line` appears in its log (or 30 s), then stops it; returns the log. */
  async function workerLog(role: string, extra: Record<string, string>, line: RegExp): Promise<string> {
    const file = join(logDir, `${role}-${Date.now()}.log`);
    const child = spawnCellar(['run', role], { ...env, ...extra }, file);
    const seen = await eventually(async () => line.test(readFileSync(file, 'utf8')), 30_000);
    await stopChild(child, 'SIGKILL', 5_000);
    const out = readFileSync(file, 'utf8');
    expect(seen, out).toBe(true);
    return out;
  }

  it('a worker waiting for an unreachable broker says so in one line per attempt, kafkajs at debug only', async () => {
    const out = await workerLog('normalizer', { CELLAR_KAFKA_BROKERS: '127.0.0.1:1' }, /attempt 2/);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string; component: string });
    const waiting = lines.filter((l) => l.msg.startsWith('waiting for'));
    expect(waiting[0]?.msg, out).toMatch(/^waiting for Kafka topics at 127\.0\.0\.1:1 \(CELLAR_KAFKA_BROKERS\), attempt 1, next in [\d.]+ m?s: /);
    // Every line above debug is Cellar's own: nothing from kafkajs' retries and reconnects.
    expect(lines.filter((l) => l.level > 20 && !/^(starting|waiting for)/.test(l.msg)), out).toEqual([]);
  }, 60_000);

  it('a worker waiting for an unreachable Redis names it and its variable, without the password', async () => {
    const out = await workerLog('sink-redis', { CELLAR_REDIS_URL: `redis://:${SECRET}@127.0.0.1:1/0` }, /attempt 2/);
    expect(out).toMatch(/waiting for Redis at 127\.0\.0\.1:1\/0 \(CELLAR_REDIS_URL\), attempt 1, next in [\d.]+ m?s: connecting to Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0: /);
    expect(out).not.toContain("Stream isn't writeable");
    expect(out).not.toContain(SECRET);
  }, 60_000);
});
