// `cellar`: declares every command without loading what implements it. This file and the register*
// modules it imports load commander and nothing else from node_modules (test/cli/startup.test.ts checks
// it); each action imports what it needs when it runs, so `cellar --help` and `cellar --version` answer
// at once (bench/cli.bench.ts measures it).
import { readFileSync } from 'node:fs';
import { Argument, Command, CommanderError, Option } from 'commander';
import { assetPath } from '../core/paths.js';
import { ConfigError } from '../core/errors.js';
import { EXIT, exitCodesHelp, exitOf } from './exit-codes.js';
import { helpColumns } from './format.js';
import { WORKER_ROLES } from '../core/names.js';
import type { RunRole } from './run.js';
import { registerDlqCommands } from './dlq.js';
import { registerCatalogCommands } from './catalog.js';
import { registerSnapshotCommands } from './snapshot.js';
import { registerKeysCommands } from './keys.js';
import { registerConnectorsCommands } from './connectors.js';
import { registerReconcileCommands } from './reconcile.js';
import { registerStatusCommand } from './status.js';
import { registerReloadCommand } from './reload.js';
import { registerFeedCommands } from './feed.js';
import { registerConfigCommands } from './config.js';
import { registerWebhooksCommands } from './webhooks.js';
import { registerStockEventCommands } from './stock-events.js';

// `cellar --help | head`: a reader that stops early is no error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(process.exitCode ?? 0);
});

const args = process.argv.slice(2);
const { version } = JSON.parse(readFileSync(assetPath('package.json'), 'utf8')) as { version: string };

// The environment list needs the specs (and so zod): loaded only when the top-level help may be shown.
let environment = '';
if (args.length === 0 || args[0] === 'help' || args.includes('--help') || args.includes('-h')) {
  const { environmentHelp } = await import('./env-help.js');
  environment = `\n\n${environmentHelp(helpColumns())}`;
}

const program = new Command('cellar')
  .description('Real-time, multi-supplier, multi-region inventory pipeline')
  .version(version, '-V, --version', 'print the version of Cellar')
  // Usage errors end in the catch below: one line, exit 2 (commander's own would print and exit 1).
  .exitOverride()
  .configureOutput({ outputError: () => undefined })
  .addHelpText('after', () => `\n${exitCodesHelp(helpColumns())}${environment}\n`)
  .hook('preAction', async () => {
    // CELLAR_LOG_LEVEL=loud and the like: one error naming the variable, exit 2, before any command runs.
    const { loadProcessEnv } = await import('../core/process-env.js');
    loadProcessEnv();
  });

program
  .command('migrate')
  .description('apply pending Postgres migrations to CELLAR_PG_URL (safe to run twice, and concurrently)')
  .action(async () => {
    const [{ loadRuntimeConfig }, { createPgPool }, { migrate }] = await Promise.all([import('../core/config.js'), import('../core/pg.js'), import('../state/migrate.js')]);
    const pool = createPgPool(loadRuntimeConfig().pgUrl);
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
  .addArgument(new Argument('<role>', 'worker role; embedded (the whole pipeline in one process); capture (native Postgres/MySQL/MariaDB reader → Kafka raw topics); api (read API and dashboard); scheduler (scheduled reconciliation)').choices([...WORKER_ROLES, 'embedded', 'capture', 'api', 'scheduler']))
  .option('--supplier <id>', 'with capture: the supplier to capture')
  .option('--api', 'with embedded: also serve the read API and dashboard on CELLAR_API_PORT')
  .option('--take-over', 'with embedded or capture: take the single-writer lease from the process holding it (ends its database session; it cannot commit afterwards) instead of refusing to start')
  .action(async (role: RunRole, opts: { supplier?: string; api?: boolean; takeOver?: boolean }) => {
    const { runCommand } = await import('./run.js');
    await runCommand(role, opts);
  });

const schemas = program.command('schemas').description('canonical Avro schemas in the Schema Registry');
schemas
  .command('register')
  .description('register the canonical schemas for Cellar topics (BACKWARD compatibility)')
  .action(async () => {
    const [{ loadRuntimeConfig }, { createCodecs, valueSubject }, { cellarTopics }] = await Promise.all([import('../core/config.js'), import('../../schemas/registry.js'), import('../kafka/topics.js')]);
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
    const [{ loadRuntimeConfig }, { canonicalSchemaText, valueSubject }, { checkSchemas }, { cellarTopics }] = await Promise.all([
      import('../core/config.js'), import('../../schemas/registry.js'), import('../../schemas/check.js'), import('../kafka/topics.js'),
    ]);
    const cfg = loadRuntimeConfig();
    const t = cellarTopics(cfg);
    const results = await checkSchemas(cfg.schemaRegistryUrl, [
      { subject: valueSubject(t.observations), schema: canonicalSchemaText('StockObservation') },
      { subject: valueSubject(t.regionalStock), schema: canonicalSchemaText('RegionalStock') },
      { subject: valueSubject(t.dlq), schema: canonicalSchemaText('DeadLetter') },
    ]);
    for (const r of results) console.log(`${r.subject}: ${r.verdict}${r.messages?.length ? ` (${r.messages.join('; ')})` : ''}`);
    process.exitCode = results.some((r) => r.verdict === 'incompatible') ? EXIT.problem : EXIT.ok;
  });

program
  .command('mapping')
  .description('check a supplier mapping before going live')
  .command('test')
  .description('normalize sample change events with a supplier file; one JSON line per event; exit 0 only if all were accepted')
  .option('--file <path>', 'the supplier YAML file to test (required)')
  .addOption(new Option('--supplier <path>', 'deprecated name of --file (--supplier is a supplier id in every other command)').hideHelp())
  .requiredOption('--events <file>', 'JSON lines: {"key": …, "value": …} as the Debezium JSON converter writes them')
  .option('--sku-map <csv>', 'rows of cellar.sku_map for suppliers that use it (supplier_sku,canonical_sku[,vintage][,bottle_size_ml] with a header row); default: read CELLAR_PG_URL')
  .option('--catalog <csv>', 'the canonical catalog (sku,bottle_size_ml[,vintage][,name]); default: cellar.catalog when CELLAR_PG_URL is set, else sizes pinned as first seen')
  .action(async (opts: { file?: string; supplier?: string; events: string; skuMap?: string; catalog?: string }, cmd: Command) => {
    if (opts.supplier !== undefined) {
      if (opts.file !== undefined) cmd.error('error: --supplier is the old name of --file; give only --file');
      process.stderr.write('cellar mapping test: --supplier <file> is deprecated and goes in the next release; use --file <file>\n');
    }
    const file = opts.file ?? opts.supplier;
    if (file === undefined) cmd.error('error: required option \'--file <path>\' not specified');
    const { mappingTestCommand } = await import('./mapping-test.js');
    process.exitCode = await mappingTestCommand({ ...opts, file });
  });

program
  .command('repartition')
  .description('raise the partitions of Cellar\'s keyed topics (<prefix>.observations, <prefix>.regional-stock) and re-file the aggregator\'s state (cellar.stock_contributions) under the partition of each key; refused (exit 2) while aggregators or normalizers run or have lag')
  .option('--partitions <n>', 'the partition count both topics should have (never lowered)')
  .option('--dry-run', 'only print what would be done, and why it would be refused')
  .action(async (o: { partitions?: string; dryRun?: boolean }) => {
    const [{ parseRepartitionFlags, repartition }, { loadRuntimeConfig }] = await Promise.all([import('./repartition.js'), import('../core/config.js')]);
    const flags = parseRepartitionFlags(o);
    process.exitCode = await repartition(loadRuntimeConfig(), flags, (l) => console.log(l), (l) => console.error(l));
  });

registerDlqCommands(program);
registerCatalogCommands(program);
registerSnapshotCommands(program);
registerKeysCommands(program);
registerConnectorsCommands(program);
registerReconcileCommands(program);
registerStatusCommand(program);
registerReloadCommand(program);
registerFeedCommands(program);
registerConfigCommands(program);
registerWebhooksCommands(program);
registerStockEventCommands(program);

program
  .command('demo')
  .description('run the pipeline end to end on private services: three Postgres suppliers and a MariaDB one (when installed) captured by the embedded runtime under a live change generator, with the read API and dashboard, then regional totals checked against the suppliers\' rows (--kafka: the Kafka-runtime demo); logs go to a file it names, the terminal shows what happens')
  .addOption(new Option('--rate <changes/s>', 'row changes per second the generator makes').default('500'))
  .addOption(new Option('--duration <s>', 'seconds the generator runs').default('20'))
  .addOption(new Option('--kafka', 'run the Kafka-runtime demo instead: four worker processes and a scripted scenario of Debezium events'))
  .addOption(new Option('--keep-running', 'leave the pipeline, read API and dashboard running after the summary until Ctrl-C (make demo ARGS=--keep-running)'))
  .addOption(new Option('--no-api', 'do not serve the read API and live dashboard (served by default on CELLAR_API_PORT, else any free port)'))
  .action(async (opts: { rate: string; duration: string; kafka?: boolean; keepRunning?: boolean; api?: boolean }) => {
    const rate = Number(opts.rate);
    const durationS = Number(opts.duration);
    if (!(rate > 0 && rate <= 100_000)) throw new ConfigError(`--rate ${opts.rate}: expected changes per second between 1 and 100000`);
    if (!(durationS > 0 && durationS <= 86_400)) throw new ConfigError(`--duration ${opts.duration}: expected seconds between 1 and 86400`);
    const { runDemo } = await import('./demo.js');
    process.exitCode = await runDemo({ kafka: Boolean(opts.kafka), keepRunning: Boolean(opts.keepRunning), rate, durationS, api: opts.api !== false });
  });

/** `cellar mapping test`, say: the command the arguments name, for "see … --help". */
function commandPath(root: Command, argv: string[]): string {
  const names = [root.name()];
  let cmd = root;
  for (const a of argv) {
    if (a.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    names.push(sub.name());
    cmd = sub;
  }
  return names.join(' ');
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version exit 0. Help shown for a missing subcommand (`cellar dlq`) is a usage error; every
    // other usage error is one line naming the command and where its help is.
    if (err.exitCode !== 0 && err.code !== 'commander.help') {
      const path = commandPath(program, args);
      const what = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').replace(/\.$/, '');
      console.error(`${path}: ${what}; see ${path} --help`);
    }
    process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else {
    const exit = exitOf(err);
    if (!exit) throw err; // a bug: its stack trace, exit 1
    console.error(exit.message);
    process.exit(exit.code);
  }
}
