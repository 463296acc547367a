import { loadProcessEnv } from '../core/process-env.js';
import { Command, Option } from 'commander';
import { loadRuntimeConfig, RUNTIME_ENV, RuntimeConfigSpec } from '../core/config.js';
import { CellarError, ConfigError } from '../core/errors.js';
import { createLogger, redactUrl } from '../core/logger.js';
import { WORKER_ROLES, startWorker, type WorkerRole } from '../runtime/kafka-runtime.js';
import { createPgPool } from '../core/pg.js';
import { migrate } from '../state/migrate.js';
import { canonicalSchemaText, createCodecs, valueSubject } from '../../schemas/registry.js';
import { checkSchemas } from '../../schemas/check.js';
import { cellarTopics } from '../kafka/topics.js';
import { runDemo } from './demo.js';
import { startEmbedded } from '../runtime/embedded-runtime.js';
import { startCapture } from '../runtime/capture.js';
import { CellarMetrics } from '../core/metrics.js';
import { startOpsServer } from '../core/http.js';
import { mappingTestCommand } from './mapping-test.js';
import { registerDlqCommands } from './dlq.js';
import { registerCatalogCommands } from './catalog.js';
import { registerSnapshotCommands } from './snapshot.js';
import { registerKeysCommands } from './keys.js';
import { runApiProcess, startApi } from '../api/index.js';
import { registerConnectorsCommands } from './connectors.js';
import { registerReconcileCommands, runSchedulerCommand } from './reconcile.js';
import { registerRepartitionCommand } from './repartition.js';
import { registerStatusCommand } from './status.js';
import { registerReloadCommand } from './reload.js';

const program = new Command('cellar')
  .description('Real-time, multi-supplier, multi-region inventory pipeline')
  .showHelpAfterError()
  .addHelpText('after', () => `\nEnvironment:\n${Object.entries(RUNTIME_ENV).map(([k, v]) => `  ${v.padEnd(34)} ${describe(k)}`).join('\n')}\n`);

function describe(key: string): string {
  const field = (RuntimeConfigSpec.shape as Record<string, { description?: string }>)[key];
  return (field?.description ?? '').replace(/^CELLAR_\w+: /, '');
}

program
  .command('migrate')
  .description('apply pending Postgres migrations to CELLAR_PG_URL (safe to run twice, and concurrently)')
  .action(async () => {
    const cfg = loadRuntimeConfig();
    const pool = createPgPool(cfg.pgUrl);
    try {
      const applied = await migrate(pool);
      console.log(applied.length ? `applied migrations: ${applied.join(', ')}` : 'database is up to date');
    } finally {
      await pool.end();
    }
  });

program
  .command('run')
  .description('run one worker of the Kafka runtime until SIGTERM/SIGINT')
  .addArgument(new (await import('commander')).Argument('<role>', 'worker role; embedded (the whole pipeline in one process); capture (native Postgres/MySQL/MariaDB reader → Kafka raw topics); api (read API and dashboard); scheduler (scheduled reconciliation)').choices([...WORKER_ROLES, 'embedded', 'capture', 'api', 'scheduler']))
  .option('--supplier <id>', 'with capture: the supplier to capture')
  .option('--api', 'with embedded: also serve the read API and dashboard on CELLAR_API_PORT')
  .option('--take-over', 'with embedded or capture: take the single-writer lease from the process holding it (ends its database session; it cannot commit afterwards) instead of refusing to start')
  .action(async (role: WorkerRole | 'embedded' | 'capture' | 'api' | 'scheduler', opts: { supplier?: string; api?: boolean; takeOver?: boolean }) => {
    if (role === 'scheduler') return runSchedulerCommand();
    if (role === 'embedded') return runEmbeddedCommand(Boolean(opts.api), Boolean(opts.takeOver));
    if (role === 'api') return runApiProcess(loadRuntimeConfig(), createLogger('api'), new CellarMetrics());
    if (role === 'capture') return runCaptureCommand(opts.supplier, Boolean(opts.takeOver));
    const cfg = loadRuntimeConfig();
    const log = createLogger(role);
    log.info({ brokers: cfg.kafkaBrokers, compat: cfg.kafkaCompat, pg: redactUrl(cfg.pgUrl), topicPrefix: cfg.topicPrefix }, 'starting');
    const running = await startWorker(role, cfg, log);
    process.on('SIGHUP', () => {
      if (running.reload) void running.reload();
      else log.info({ role }, 'SIGHUP: this role reads no supplier files; nothing to reload');
    });
    let exiting = false;
    const shutdown = async (signal: string) => {
      if (exiting) return;
      exiting = true;
      log.info({ signal }, 'draining');
      await running.stop();
      process.exit(0);
    };
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    process.on('SIGINT', () => void shutdown('SIGINT'));
  });

const schemas = program.command('schemas').description('canonical Avro schemas in the Schema Registry');
schemas
  .command('register')
  .description('register the canonical schemas for Cellar topics (BACKWARD compatibility)')
  .action(async () => {
    const cfg = loadRuntimeConfig();
    const codecs = createCodecs(cfg.schemaRegistryUrl);
    const t = cellarTopics(cfg);
    for (const [codec, topic] of [[codecs.observation, t.observations], [codecs.regionalStock, t.regionalStock], [codecs.deadLetter, t.dlq]] as const) {
      const id = await codec.register(valueSubject(topic));
      console.log(`${valueSubject(topic)}: schema id ${id}`);
    }
  });

schemas
  .command('check')
  .description('check the canonical schemas in schemas/avro against what the registry holds; exit 1 on an incompatible change')
  .action(async () => {
    const cfg = loadRuntimeConfig();
    const t = cellarTopics(cfg);
    const results = await checkSchemas(cfg.schemaRegistryUrl, [
      { subject: valueSubject(t.observations), schema: canonicalSchemaText('StockObservation') },
      { subject: valueSubject(t.regionalStock), schema: canonicalSchemaText('RegionalStock') },
      { subject: valueSubject(t.dlq), schema: canonicalSchemaText('DeadLetter') },
    ]);
    for (const r of results) console.log(`${r.subject}: ${r.verdict}${r.messages?.length ? ` (${r.messages.join('; ')})` : ''}`);
    process.exitCode = results.some((r) => r.verdict === 'incompatible') ? 1 : 0;
  });

program
  .command('mapping')
  .description('check a supplier mapping before going live')
  .command('test')
  .description('normalize sample change events with a supplier file; one JSON line per event; exit 0 only if all were accepted')
  .requiredOption('--supplier <file>', 'supplier YAML file')
  .requiredOption('--events <file>', 'JSON lines: {"key": …, "value": …} as the Debezium JSON converter writes them')
  .option('--sku-map <csv>', 'rows of cellar.sku_map for suppliers that use it (supplier_sku,canonical_sku[,vintage][,bottle_size_ml] with a header row); default: read CELLAR_PG_URL')
  .option('--catalog <csv>', 'the canonical catalog (sku,bottle_size_ml[,vintage][,name]); default: cellar.catalog when CELLAR_PG_URL is set, else sizes pinned as first seen')
  .action(async (opts: { supplier: string; events: string; skuMap?: string; catalog?: string }) => {
    process.exitCode = await mappingTestCommand(opts);
  });

registerDlqCommands(program);
registerCatalogCommands(program);
registerSnapshotCommands(program);
registerKeysCommands(program);
registerConnectorsCommands(program);
registerReconcileCommands(program);
registerRepartitionCommand(program);
registerStatusCommand(program);
registerReloadCommand(program);

program
  .command('demo')
  .description('run the pipeline end to end on private services: three Postgres suppliers and a MariaDB one (when installed) captured by the embedded runtime under a live change generator, with the read API and dashboard, then regional totals checked against the suppliers\' rows (--kafka: the Kafka-runtime demo)')
  .addOption(new Option('--rate <changes/s>', 'row changes per second the generator makes').default('500'))
  .addOption(new Option('--duration <s>', 'seconds the generator runs').default('20'))
  .addOption(new Option('--kafka', 'run the Kafka-runtime demo instead: four worker processes and a scripted scenario of Debezium events'))
  .addOption(new Option('--keep-running', 'leave the pipeline running after the summary until Ctrl-C'))
  .addOption(new Option('--no-api', 'do not serve the read API and live dashboard (served by default on CELLAR_API_PORT, else any free port)'))
  .action(async (opts: { rate: string; duration: string; kafka?: boolean; keepRunning?: boolean; api?: boolean }) => {
    const rate = Number(opts.rate);
    const durationS = Number(opts.duration);
    if (!(rate > 0 && rate <= 100_000)) throw new ConfigError(`--rate ${opts.rate}: expected changes per second between 1 and 100000`);
    if (!(durationS > 0 && durationS <= 86_400)) throw new ConfigError(`--duration ${opts.duration}: expected seconds between 1 and 86400`);
    process.exitCode = await runDemo({ kafka: Boolean(opts.kafka), keepRunning: Boolean(opts.keepRunning), rate, durationS, api: opts.api !== false });
  });

/** `cellar run capture --supplier ID`: runs until SIGTERM/SIGINT. */
async function runCaptureCommand(supplierId: string | undefined, takeOver = false): Promise<void> {
  if (!supplierId) throw new ConfigError('cellar run capture needs --supplier <id>');
  const loaded = loadRuntimeConfig();
  const cfg = { ...loaded, takeOver: loaded.takeOver || takeOver };
  const log = createLogger(`capture-${supplierId}`);
  const metrics = new CellarMetrics();
  const capture = await startCapture(cfg, supplierId, log, metrics);
  const ops = cfg.httpPort >= 0 ? await startOpsServer(cfg.httpPort, metrics, { live: () => true, ready: () => true }) : undefined;
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      log.info({ signal: sig }, 'draining');
      void Promise.all([ops?.close(), capture.stop()]).then(() => process.exit(0));
    });
  }
  // SIGHUP: read the supplier files again (the outcome is logged; `cellar reload` reports it).
  process.on('SIGHUP', () => void capture.reload());
  capture.done?.catch((err: unknown) => {
    log.error({ err }, 'capture failed; exiting so a restart resumes from the last checkpoint');
    process.exit(1);
  });
}

/** `cellar run embedded`: runs until SIGTERM/SIGINT (drains) or a fatal error (exit 1, restart resumes). */
async function runEmbeddedCommand(withApi = false, takeOver = false): Promise<void> {
  const loaded = loadRuntimeConfig();
  const cfg = { ...loaded, takeOver: loaded.takeOver || takeOver };
  const log = createLogger('embedded');
  const metrics = new CellarMetrics();
  const rt = await startEmbedded(cfg, log, metrics);
  const ops = cfg.httpPort >= 0 ? await startOpsServer(cfg.httpPort, metrics, { live: () => true, ready: () => rt.isReady(), reason: () => rt.notReadyReason() }) : undefined;
  const api = withApi ? await startApi(cfg, log, metrics) : undefined;
  log.info({ captured: rt.captured, skipped: rt.skipped, httpPort: ops?.port, api: api?.url, dashboard: api && `${api.url}/dashboard` }, 'embedded runtime started');
  const shutdown = async (signal: string) => {
    log.info({ signal }, 'draining');
    await api?.stop();
    await ops?.close();
    await rt.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  // SIGHUP: read the supplier files and SKU maps again (the outcome is logged; `cellar reload` reports it).
  process.on('SIGHUP', () => void rt.reload());
  const err = await rt.failed;
  log.error({ err }, 'embedded runtime failed; exiting so a restart resumes from the last commit');
  process.exit(1);
}

try {
  loadProcessEnv(); // CELLAR_LOG_LEVEL=loud and the like: one line naming the variable, exit 2
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`cellar: ${err.message}`);
    process.exit(2);
  }
  if (err instanceof CellarError) {
    console.error(`cellar: ${err.code}: ${err.message}`);
    process.exit(1);
  }
  throw err;
}
