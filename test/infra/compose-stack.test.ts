import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { StartedDockerComposeEnvironment } from 'testcontainers';
import { dockerAvailable } from '../../infra/local/containers.js';
import { artifactDir, eventually, rid } from '../support/services.js';
import { COMPOSE_DIR, COMPOSE_FILE, WORKERS, composeSuppliers, expectedTotals, type Row } from './compose-support.js';

/**
 * The compose stack itself, where a Docker engine answers: builds the images, brings every service up and
 * waits for their health checks (so `setup` has migrated, registered the schemas and created the Debezium
 * connectors), then changes rows in the seeded supplier databases (Postgres and MySQL) and waits until
 * Cellar's Postgres `cellar.regional_stock` and Redis `cellar:stock:<region>` hold the totals computed from
 * the suppliers' rows: supplier database → Debezium (Kafka Connect) → Kafka → normalizer → aggregator →
 * sinks. Without an engine (or with CELLAR_TEST_DOCKER=never) the suite is reported as skipped with the
 * reason. Service logs are written to test-artifacts/compose-stack-*.
 */

const mode = process.env.CELLAR_TEST_DOCKER ?? 'auto';
const docker = mode === 'never' ? { ok: false, reason: 'CELLAR_TEST_DOCKER=never' } : await dockerAvailable();
if (mode === 'always' && !docker.ok) throw new Error(`CELLAR_TEST_DOCKER=always but ${docker.reason}`);
if (!docker.ok) console.log(`compose stack end to end: skipped: ${docker.reason}`);

/** Ports published by the stack, chosen free so a run never collides with services on this host. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const PORT_VARS = ['KAFKA', 'SCHEMA_REGISTRY', 'CONNECT', 'PG', 'REDIS', 'SUPPLIER_PG', 'SUPPLIER_MYSQL', 'PROMETHEUS', 'GRAFANA'] as const;
type Ports = Record<(typeof PORT_VARS)[number], number>;

describe.skipIf(!docker.ok)(`compose stack end to end${docker.ok ? '' : ` (skipped: ${docker.reason})`}`, () => {
  const project = rid('cellar-stack-');
  const suppliers = composeSuppliers();
  let env: StartedDockerComposeEnvironment | undefined;
  let ports: Ports;
  let logsDir: string;
  let cellarPg: pg.Pool;
  let supplierPg: pg.Pool;
  let supplierMysql: mysql.Connection;
  let redis: Redis;

  /** `docker compose` for this project (v2 plugin, or Debian's standalone docker-compose). */
  function compose(args: string[]): { status: number | null; stdout: string; stderr: string } {
    const v2 = spawnSync('docker', ['compose', 'version']).status === 0;
    const [cmd, pre] = v2 ? ['docker', ['compose']] : ['docker-compose', []];
    const r = spawnSync(cmd, [...pre, '-p', project, '-f', COMPOSE_FILE, ...args], {
      encoding: 'utf8',
      env: { ...process.env, ...portEnv() },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  function portEnv(): Record<string, string> {
    return Object.fromEntries(PORT_VARS.map((v) => [`CELLAR_COMPOSE_${v}_PORT`, String(ports[v])]));
  }

  function saveLogs(): void {
    const r = compose(['logs', '--no-color', '--timestamps']);
    writeFileSync(join(logsDir, 'compose.log'), `${r.stdout}\n${r.stderr}`);
    const ps = compose(['ps', '-a']);
    writeFileSync(join(logsDir, 'ps.txt'), ps.stdout);
  }

  beforeAll(async () => {
    logsDir = artifactDir('compose-stack');
    ports = Object.fromEntries(await Promise.all(PORT_VARS.map(async (v) => [v, await freePort()]))) as Ports;
    const { DockerComposeEnvironment, Wait } = await import('testcontainers');
    const v2 = spawnSync('docker', ['compose', 'version']).status === 0;
    let environment = new DockerComposeEnvironment(COMPOSE_DIR, 'docker-compose.yml')
      .withProjectName(project)
      .withBuild()
      .withEnvironment(portEnv())
      // Every long-running service has a health check; `setup` has exited successfully before the workers start.
      .withDefaultWaitStrategy(Wait.forHealthCheck())
      .withStartupTimeout(600_000);
    if (!v2) environment = environment.withClientOptions({ executable: { standalone: true } });
    try {
      env = await environment.up();
    } catch (err) {
      saveLogs();
      throw new Error(`compose stack did not come up (logs in ${logsDir}): ${(err as Error).message}`);
    }
    cellarPg = new pg.Pool({ connectionString: `postgres://cellar:cellar@127.0.0.1:${ports.PG}/cellar`, max: 2 });
    supplierPg = new pg.Pool({ connectionString: `postgres://erp:loire-erp@127.0.0.1:${ports.SUPPLIER_PG}/erp`, max: 2 });
    supplierMysql = await mysql.createConnection({ host: '127.0.0.1', port: ports.SUPPLIER_MYSQL, user: 'root', password: 'sonoma-root', database: 'inventory' });
    redis = new Redis(`redis://127.0.0.1:${ports.REDIS}/0`, { lazyConnect: false, maxRetriesPerRequest: 3 });
  }, 1_800_000);

  afterAll(async () => {
    await Promise.allSettled([cellarPg?.end(), supplierPg?.end(), supplierMysql?.end()]);
    redis?.disconnect();
    if (env) {
      saveLogs();
      await env.down({ removeVolumes: true, timeout: 10_000 });
    }
  }, 300_000);

  /** The suppliers' current rows, as their mappings read them. */
  async function supplierRows(): Promise<Map<string, Row[]>> {
    const loire = (await supplierPg.query('SELECT item_code, depot, cases, vintage, bottle_ml FROM public.stock_positions')).rows as Row[];
    const [sonoma] = await supplierMysql.query('SELECT sku, warehouse, bottles FROM inventory.stock');
    return new Map([
      ['loire-estates', loire],
      ['sonoma-direct', sonoma as Row[]],
    ]);
  }

  /** Keys where Postgres or Redis differ from `expected` (keys absent from it must hold 0 bottles). */
  async function differences(expected: Map<string, number>): Promise<string[]> {
    const stored = new Map<string, number>();
    for (const r of (await cellarPg.query('SELECT region, sku, bottles FROM cellar.regional_stock')).rows as Array<{ region: string; sku: string; bottles: string }>) {
      stored.set(`${r.region}|${r.sku}`, Number(r.bottles));
    }
    const regions = new Set([...expected.keys(), ...stored.keys()].map((k) => k.split('|')[0]!));
    const cached = new Map<string, number>();
    for (const region of regions) {
      for (const [sku, bottles] of Object.entries(await redis.hgetall(`cellar:stock:${region}`))) cached.set(`${region}|${sku}`, Number(bottles));
    }
    const out: string[] = [];
    for (const key of new Set([...expected.keys(), ...stored.keys(), ...cached.keys()])) {
      const want = expected.get(key) ?? 0;
      const inPg = stored.get(key) ?? 0;
      const inRedis = cached.get(key) ?? 0;
      if (inPg !== want || inRedis !== want) out.push(`${key}: suppliers ${want}, postgres ${inPg}, redis ${inRedis}`);
    }
    return out.sort();
  }

  async function converge(timeoutMs: number): Promise<{ expected: Map<string, number>; diff: string[] }> {
    const expected = expectedTotals(await supplierRows(), suppliers);
    let diff: string[] = ['not checked yet'];
    await eventually(async () => (diff = await differences(expected)).length === 0, timeoutMs, 1_000);
    return { expected, diff };
  }

  it('every service is healthy and the workers serve metrics', async () => {
    for (const w of WORKERS) {
      const ps = compose(['ps', w]);
      expect(ps.stdout, w).toMatch(/\(healthy\)/);
    }
    const targets = await eventually(async () => {
      const r = await fetch(`http://127.0.0.1:${ports.PROMETHEUS}/api/v1/targets?state=active`);
      const body = (await r.json()) as { data: { activeTargets: Array<{ labels: { job: string }; health: string }> } };
      return WORKERS.every((w) => body.data.activeTargets.some((t) => t.labels.job === `cellar-${w}` && t.health === 'up'));
    }, 90_000, 2_000);
    expect(targets, 'Prometheus scrapes every worker').toBe(true);
  }, 180_000);

  it('the seeded rows of both suppliers reach Postgres and Redis through Debezium and Kafka', async () => {
    const { expected, diff } = await converge(300_000);
    expect(diff).toEqual([]);
    // loire-estates (Postgres, 12-bottle cases) and sonoma-direct (MySQL, bottles) share this total.
    expect(expected.get('eu-west|sancerre-2022')).toBe(55 * 12 + 96);
  }, 360_000);

  it('inserts, updates and deletes in both supplier databases change the regional totals', async () => {
    await supplierPg.query("UPDATE public.stock_positions SET cases = cases + 2 WHERE item_code = 'LE-SANC-22' AND depot = 'NTE-01'");
    await supplierPg.query("INSERT INTO public.stock_positions (item_code, depot, cases, vintage) VALUES ('LE-CHIN-20', 'TRS-02', 3, 2020)");
    await supplierPg.query("DELETE FROM public.stock_positions WHERE item_code = 'LE-VOUV-21' AND depot = 'PAR-03'");
    // A move: the row's warehouse changes region, so us-west loses the bottles and eu-west gains them.
    await supplierMysql.query("UPDATE inventory.stock SET warehouse = 'LON-1' WHERE sku = 'SD-SANC-22' AND warehouse = 'OAK-1'");
    await supplierMysql.query("INSERT INTO inventory.stock (sku, warehouse, bottles) VALUES ('SD-ZIN-21', 'SFO-2', 36)");
    await supplierMysql.query("UPDATE inventory.stock SET bottles = bottles - 12 WHERE sku = 'SD-CAB-19' AND warehouse = 'OAK-1'");

    const { expected, diff } = await converge(180_000);
    expect(diff).toEqual([]);
    expect(expected.get('eu-west|sancerre-2022')).toBe(57 * 12 + 96 + 60);
    expect(expected.get('us-west|sancerre-2022') ?? 0).toBe(0);
    expect(expected.get('eu-central|vouvray-2021') ?? 0).toBe(0);
    expect(expected.get('us-west|sonoma-cabernet-2019')).toBe(588);
    // Cellar's own topics were created with the partitions the stack asks for.
    const topics = compose(['exec', '-T', 'kafka', '/opt/kafka/bin/kafka-topics.sh', '--bootstrap-server', 'localhost:9092', '--describe', '--topic', 'cellar.regional-stock']);
    expect(topics.stdout).toMatch(/PartitionCount:\s*6/);
    expect(topics.stdout).toMatch(/cleanup\.policy=compact/);
  }, 240_000);
});
