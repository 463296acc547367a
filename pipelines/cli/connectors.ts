import { Option, type Command } from 'commander';
import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import {
  applyPlan,
  connectorHealth,
  connectorlessSuppliers,
  createKafkaConnectClient,
  formatProblem,
  generateConnectorConfigs,
  hasChanges,
  loadKafkaConnectOptions,
  planConnectors,
  renderHealth,
  renderPlan,
  restartFailed,
  secretScrubber,
  type ConnectorPlan,
  type KafkaConnectClient,
  type KafkaConnectOptions,
} from '../../connectors/kafka-connect/index.js';
import { loadRuntimeConfig } from '../core/config.js';
import { CellarError, ConfigError } from '../core/errors.js';

/** Options shared by every `cellar connectors` command. */
interface CommonOpts {
  suppliers?: string;
  converter?: 'avro' | 'json';
}

/** Everything a command needs: suppliers, options, a client whose messages are scrubbed of secrets. */
interface Context {
  suppliers: Supplier[];
  options: KafkaConnectOptions;
  client: KafkaConnectClient;
  scrub: (text: string) => string;
}

/** `registry: 'optional'` (pause/resume) still works when the registry cannot be read, e.g. mid-incident. */
function context(o: CommonOpts, registry: 'required' | 'optional' = 'required'): Context {
  const cfg = loadRuntimeConfig();
  let suppliers: Supplier[] = [];
  try {
    suppliers = loadRegistry(o.suppliers ?? cfg.suppliersDir);
  } catch (err) {
    if (registry === 'required' || !(err instanceof ConfigError)) throw err;
  }
  const options = loadKafkaConnectOptions(cfg, process.env, { converter: o.converter });
  const scrub = secretScrubber(suppliers);
  const client = createKafkaConnectClient({
    ...options,
    scrub,
    onRetry: (err, attempt, delayMs) => {
      const why = err.code === 'kafka_connect_rebalancing' ? 'rebalance in progress (409)' : err.message;
      process.stderr.write(`Kafka Connect: ${why}; retry ${attempt}/${options.retries} in ${delayMs} ms\n`);
    },
  });
  return { suppliers, options, client, scrub };
}

async function plan(ctx: Context): Promise<ConnectorPlan> {
  const desired = generateConnectorConfigs(ctx.suppliers, ctx.options);
  const actual = await ctx.client.listConnectors();
  return planConnectors(desired, actual, ctx.options.namePrefix, connectorlessSuppliers(ctx.suppliers));
}

function common(c: Command): Command {
  return c
    .option('--suppliers <dir>', 'supplier registry folder (default CELLAR_SUPPLIERS_DIR)')
    .addOption(new Option('--converter <kind>', 'converter of generated configs (default CELLAR_CONNECT_CONVERTER or avro)').choices(['avro', 'json']));
}

/**
 * `cellar connectors plan|apply|status|restart|pause|resume|generate`: keeps the Debezium connectors on
 * Kafka Connect (CELLAR_CONNECT_URL) in line with the supplier registry. Exit codes: 0 done, 1 Connect
 * refused or failed (validation errors, unreachable, FAILED connectors for `status`), 2 bad configuration.
 */
export function registerConnectorsCommands(program: Command): void {
  const connectors = program.command('connectors').description('Debezium connectors on Kafka Connect, generated from the supplier registry');

  common(connectors.command('plan'))
    .description('show what apply would change on Kafka Connect: connectors to create, fields to update, connectors to delete')
    .action(async (o: CommonOpts) => {
      const ctx = context(o);
      console.log(renderPlan(await plan(ctx), { prune: false, connectUrl: ctx.client.url }));
    });

  common(connectors.command('apply'))
    .description('validate every changed connector through Connect, then create/update them (PUT config); nothing changes if any validation fails')
    .option('--prune', 'also delete managed connectors that no supplier generates any more')
    .action(async (o: CommonOpts & { prune?: boolean }) => {
      const ctx = context(o);
      const prune = Boolean(o.prune);
      const p = await plan(ctx);
      console.log(renderPlan(p, { prune, connectUrl: ctx.client.url }));
      if (!hasChanges(p, prune)) {
        console.log('\nNo changes: Kafka Connect matches the registry.');
        return;
      }
      const result = await applyPlan(ctx.client, p, { prune, onStep: (line) => console.log(`  ${line}`) });
      if (result.problems.length) {
        console.error(`\nKafka Connect rejected ${result.problems.length} field(s); nothing was changed:`);
        for (const problem of result.problems) console.error(`  ${formatProblem(problem)}`);
        process.exitCode = 1;
        return;
      }
      const kept = result.keptWithoutPrune.length ? `; ${result.keptWithoutPrune.length} kept (use --prune to delete: ${result.keptWithoutPrune.join(', ')})` : '';
      console.log(`\nApplied: ${result.created.length} created, ${result.updated.length} updated, ${result.deleted.length} deleted, ${result.unchanged.length} unchanged${kept}.`);
    });

  common(connectors.command('status'))
    .description('connector and task states of the managed connectors, with the stack trace of failures; exit 1 if any failed')
    .argument('[name]', 'only this connector')
    .option('--full-traces', 'print whole stack traces')
    .action(async (name: string | undefined, o: CommonOpts & { fullTraces?: boolean }) => {
      const ctx = context(o);
      let rows = await connectorHealth(ctx.client, generateConnectorConfigs(ctx.suppliers, ctx.options), ctx.options.namePrefix);
      if (name) {
        rows = rows.filter((r) => r.name === name);
        if (rows.length === 0) throw new CellarError('kafka_connect_not_found', `connector ${name} is neither in the registry nor on Kafka Connect ${ctx.client.url}`);
      }
      console.log(renderHealth(rows, { traceLines: o.fullTraces ? Infinity : 12, scrub: ctx.scrub }));
      process.exitCode = rows.some((r) => r.failed) ? 1 : 0;
    });

  common(connectors.command('restart'))
    .description('restart failed connectors and failed tasks only (running ones are left alone)')
    .argument('[name]', 'only this connector')
    .action(async (name: string | undefined, o: CommonOpts) => {
      const ctx = context(o);
      const rows = await connectorHealth(ctx.client, generateConnectorConfigs(ctx.suppliers, ctx.options), ctx.options.namePrefix);
      const done = await restartFailed(ctx.client, rows, name);
      if (done.length === 0) console.log('Nothing failed: no connector or task restarted.');
      for (const d of done) {
        const what = [d.connectorRestarted ? 'connector' : '', d.tasksRestarted.length ? `task${d.tasksRestarted.length > 1 ? 's' : ''} ${d.tasksRestarted.join(', ')}` : ''].filter(Boolean).join(' and ');
        console.log(`restarted ${d.name}: ${what}`);
      }
    });

  for (const verb of ['pause', 'resume'] as const) {
    common(connectors.command(verb))
      .description(verb === 'pause' ? 'pause a connector and its tasks (state kept across restarts)' : 'resume a paused connector')
      .argument('<name>', 'connector name')
      .action(async (name: string, o: CommonOpts) => {
        const ctx = context(o, 'optional');
        await ctx.client[verb](name);
        console.log(`${verb === 'pause' ? 'pausing' : 'resuming'} ${name} (Connect applies it asynchronously; see cellar connectors status)`);
      });
  }

  common(connectors.command('generate'))
    .description('print the generated connector configs as JSON (secrets only as config-provider references)')
    .action((o: CommonOpts) => {
      const ctx = context(o);
      const out = generateConnectorConfigs(ctx.suppliers, ctx.options).map((g) => ({ name: g.name, supplier: g.supplierId, file: g.file, topics: g.topics, config: g.config }));
      console.log(JSON.stringify(out, null, 2));
    });
}
