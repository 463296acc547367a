import { loadProcessEnv, logLevelOr } from '../core/process-env.js';
import { createRedis } from '../core/redis.js';
import { mkdirSync, copyFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { loadRegistry } from '../../connectors/registry/loader.js';
import { startLocalStack, type LocalStack } from '../../infra/local/stack.js';
import { REPO_ROOT, spawnCellar } from '../../infra/local/cellar-process.js';
import { onInterrupt, stopChild, tempDir } from '../../infra/local/process.js';
import { createPgPool } from '../core/pg.js';
import { migrate } from '../state/migrate.js';
import { readRegionalStock, type StockRow } from '../../sinks/postgres/read.js';
import { readRegionSnapshot } from '../../sinks/redis/read.js';
import { loadRuntimeConfig } from '../core/config.js';
import { fileLogger } from './log.js';
import { connectProducer, createKafka, ensureTopics } from '../kafka/client.js';
import { demoScenario, expectedTotals } from './scenario.js';
import { WORKER_ROLES } from '../runtime/kafka-runtime.js';
import { formatTable } from '../cli/format.js';

const say = (s: string) => process.stdout.write(`${s}\n`);

/**
 * `cellar demo --kafka`: provisions private services, starts the four Kafka-runtime workers as separate
 * processes, publishes a scripted scenario of Debezium change events, waits for the totals in Postgres
 * and Redis to match the suppliers' final rows, prints them, and cleans up. Returns the exit code.
 */
export async function runKafkaDemo(opts: { keepRunning: boolean }): Promise<number> {
  const started = Date.now();
  const work = tempDir('demo');
  // The terminal gets the demo's own lines; its log and each worker's go to files in `work`.
  const log = fileLogger(join(work, 'demo.log'), 'demo', logLevelOr('info'));
  let keepLogs = loadProcessEnv().keepLogs === '1';
  let stack: LocalStack | undefined;
  const workers = new Map<string, ChildProcess>();
  let pool: ReturnType<typeof createPgPool> | undefined;
  let redis: Redis | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await Promise.all([...workers.values()].map((w) => stopChild(w, 'SIGTERM', 15_000)));
      if (keepLogs) say(`Logs kept in ${work}; remove it when done.`);
      else rmSync(work, { recursive: true, force: true });
      redis?.disconnect();
      await pool?.end().catch(() => undefined);
      await stack?.stop();
    })());
  const unhook = onInterrupt(cleanup); // Ctrl-C: stop workers and services before the process exits
  try {
    say('Cellar demo: two suppliers, three regions, the Kafka runtime end to end.');
    say(`Logs (JSON): ${work} (demo.log, and one file per worker)\n`);
    say('1. Provisioning private services…');
    stack = await startLocalStack({ envPrefix: 'CELLAR_DEMO_' });
    say(`   Kafka ${stack.kafkaBrokers[0]} (${stack.kafkaCompat}), Schema Registry ${stack.schemaRegistryUrl}, Postgres :${new URL(stack.pgUrl).port}, Redis :${new URL(stack.redisUrl).port}`);
    for (const n of stack.notes) say(`   ${n}`);

    const suppliersDir = join(work, 'suppliers');
    mkdirSync(suppliersDir);
    const src = join(REPO_ROOT, 'connectors/suppliers/demo');
    for (const f of readdirSync(src)) copyFileSync(join(src, f), join(suppliersDir, f));
    const env: Record<string, string> = {
      CELLAR_KAFKA_BROKERS: stack.kafkaBrokers.join(','),
      CELLAR_KAFKA_COMPAT: stack.kafkaCompat,
      CELLAR_SCHEMA_REGISTRY_URL: stack.schemaRegistryUrl,
      CELLAR_PG_URL: stack.pgUrl,
      CELLAR_REDIS_URL: stack.redisUrl,
      CELLAR_SUPPLIERS_DIR: suppliersDir,
      CELLAR_LOG_LEVEL: process.env.CELLAR_LOG_LEVEL ?? 'info',
      CELLAR_KAFKA_SESSION_TIMEOUT_MS: '10000',
    };
    const cfg = loadRuntimeConfig({ ...process.env, ...env });
    pool = createPgPool(cfg.pgUrl);
    say('2. Migrating Cellar\'s database…');
    await migrate(pool);

    say(`3. Starting workers: ${WORKER_ROLES.join(', ')} (logs in ${work})`);
    // As a process manager would: a worker that exits is started again (and said so), unless it keeps failing.
    const exits = new Map<string, number[]>();
    const startWorker = (role: string): ChildProcess => {
      const w = spawnCellar(['run', role], env, join(work, `${role}.log`));
      workers.set(role, w);
      w.once('exit', (code, signal) => {
        if (cleaning) return;
        const recent = [...(exits.get(role) ?? []), Date.now()].filter((t) => t > Date.now() - 60_000);
        exits.set(role, recent);
        const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
        if (recent.length > 5) return say(`   ! ${role} worker ${how}, its ${recent.length}th exit within a minute: not restarted; see ${join(work, `${role}.log`)}`);
        const again = startWorker(role);
        say(`   ! ${role} worker ${how}: started again as pid ${again.pid} (its log: ${join(work, `${role}.log`)})`);
      });
      return w;
    };
    for (const role of WORKER_ROLES) startWorker(role);

    const suppliers = loadRegistry(suppliersDir);
    const scenario = demoScenario();
    const kafka = createKafka(cfg, log, 'demo');
    await ensureTopics(kafka, cfg, scenario.tables.map((t) => t.table.topic));
    const producer = await connectProducer(kafka, cfg);
    say('4. Publishing supplier changes as Debezium events:');
    for (const s of scenario.steps) {
      for (const m of s.messages) await producer.send({ topic: m.topic, acks: -1, messages: [{ key: m.key, value: m.value }] });
      say(`   - ${s.title} (${s.messages.length} messages)`);
    }
    await producer.disconnect();

    const expected = expectedTotals(scenario, suppliers);
    redis = createRedis(cfg.redisUrl, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    say('5. Waiting for the pipeline to converge…');
    const regions = [...new Set([...expected.values()].map((e) => e.region))];
    let rows: StockRow[] = [];
    let snap = new Map<string, Map<string, number>>();
    const matches = () =>
      [...expected.values()].every((e) => rows.some((r) => r.region === e.region && r.sku === e.sku && r.bottles === e.bottles && r.contributors === e.contributors) && snap.get(e.region)?.get(e.sku) === e.bottles) &&
      rows.every((r) => r.bottles === (expected.get(`${r.region}|${r.sku}`)?.bottles ?? 0));
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      rows = await readRegionalStock(pool);
      snap = new Map(await Promise.all(regions.map(async (r) => [r, await readRegionSnapshot(redis!, r)] as const)));
      if (matches()) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const ok = matches();
    say('\nRegional stock (Postgres cellar.regional_stock, Redis cellar:stock:<region>, expected from supplier rows):\n');
    say(
      formatTable(
        ['region', 'sku', 'bottles', 'contributors', 'redis', 'expected', 'ok'],
        rows.map((r) => {
          const e = expected.get(`${r.region}|${r.sku}`);
          const rb = snap.get(r.region)?.get(r.sku);
          return [r.region, r.sku, r.bottles, r.contributors, rb ?? '-', e?.bottles ?? 0, r.bottles === (e?.bottles ?? 0) && rb === r.bottles ? 'yes' : 'NO'];
        }),
      ),
    );
    if (!ok) keepLogs = true;
    say(`\n${ok ? 'All regional totals equal the sum of the suppliers\' rows.' : 'MISMATCH: totals did not converge within 90 s; the logs are kept'}`);
    say(`Done in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
    if (opts.keepRunning && ok) {
      say('Pipeline left running; press Ctrl-C to stop and clean up. A worker that exits is started again, and said so here.');
      say(`The CLI against it (cellar status, cellar dlq list, cellar snapshot …), in another terminal:`);
      say(`  export CELLAR_PG_URL=${stack.pgUrl} CELLAR_REDIS_URL=${stack.redisUrl} CELLAR_KAFKA_BROKERS=${stack.kafkaBrokers.join(',')} CELLAR_SCHEMA_REGISTRY_URL=${stack.schemaRegistryUrl} CELLAR_SUPPLIERS_DIR=${suppliersDir}`);
      say(`Worker processes: ${[...workers].map(([role, w]) => `${role} (pid ${w.pid})`).join(', ')}`);
      await new Promise<void>(() => undefined); // Ctrl-C runs the cleanup registered with onInterrupt and exits
    }
    return ok ? 0 : 1;
  } catch (err) {
    keepLogs = true;
    throw err;
  } finally {
    say('Cleaning up…');
    await cleanup();
    unhook();
  }
}
