import { Option, type Command } from 'commander';
import type { Supplier } from '../../connectors/registry/loader.js';
import type { ConnectorPlan, KafkaConnectClient, KafkaConnectOptions } from '../../connectors/kafka-connect/index.js';
import { CellarError, ConfigError } from '../core/errors.js';

/** Kafka Connect's client and planner, loaded when a command runs (not for `cellar --help`). */
type KafkaConnect = typeof import('../../connectors/kafka-connect/index.js');

/** Options shared by every `cellar connectors` command. */
interface CommonOpts {
  suppliers?: string;
  converter?: 'avro' | 'json';
}

/** Everything a command needs: suppliers, options, a client whose messages are scrubbed of secrets. */
interface Context {
  kc: KafkaConnect;
  suppliers: Supplier[];
  options: KafkaConnectOptions;
  client: KafkaConnectClient;
  scrub: (text: string) => string;
}

/** `registry: 'optional'` (pause/resume) still works when the registry cannot be read, e.g. mid-incident. */
async function context(o: CommonOpts, registry: 'required' | 'optional' = 'required'): Promise<Context> {
  const [kc, { loadRegistry }, { loadRuntimeConfig }] = await Promise.all([import('../../connectors/kafka-connect/index.js'), import('../../connectors/registry/loader.js'), import('../core/config.js')]);
  const cfg = loadRuntimeConfig();
  let suppliers: Supplier[] = [];
  try {
    suppliers = loadRegistry(o.suppliers ?? cfg.suppliersDir);
  } catch (err) {
    if (registry === 'required' || !(err instanceof ConfigError)) throw err;
  }
  const options = kc.loadKafkaConnectOptions(cfg, process.env, { converter: o.converter });
  const scrub = kc.secretScrubber(suppliers);
  const client = kc.createKafkaConnectClient({
    ...options,
    scrub,
    onRetry: (err, attempt, delayMs) => {
      const why = err.code === 'kafka_connect_rebalancing' ? 'rebalance in progress (409)' : err.message;
      process.stderr.write(`Kafka Connect: ${why}; retry ${attempt}/${options.retries} in ${delayMs} ms\n`);
    },
  });
  return { kc, suppliers, options, client, scrub };
}

async function plan(ctx: Context): Promise<ConnectorPlan> {
  const { generateConnectorConfigs, planConnectors, connectorlessSuppliers } = ctx.kc;
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
 * refused (validation errors, an unknown connector, FAILED connectors for `status`), 2 bad configuration,
 * 3 Connect unreachable or failing (5xx) after the retries.
 */
export function registerConnectorsCommands(program: Command): void {
  const connectors = program.command('connectors').description('Debezium connectors on Kafka Connect, generated from the supplier registry');

  common(connectors.command('plan'))
    .description('show what apply would change on Kafka Connect: connectors to create, fields to update, connectors to delete')
    .action(async (o: CommonOpts) => {
      const ctx = await context(o);
      console.log(ctx.kc.renderPlan(await plan(ctx), { prune: false, connectUrl: ctx.client.url }));
    });

  common(connectors.command('apply'))
    .description('validate every changed connector through Connect, then create/update them (PUT config); nothing changes if any validation fails')
    .option('--prune', 'also delete managed connectors that no supplier generates any more')
    .action(async (o: CommonOpts & { prune?: boolean }) => {
      const ctx = await context(o);
      const { renderPlan, hasChanges, applyPlan, formatProblem } = ctx.kc;
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
      const ctx = await context(o);
      const { connectorHealth, generateConnectorConfigs, renderHealth } = ctx.kc;
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
      const ctx = await context(o);
      const { connectorHealth, generateConnectorConfigs, restartFailed } = ctx.kc;
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
        const ctx = await context(o, 'optional');
        await ctx.client[verb](name);
        console.log(`${verb === 'pause' ? 'pausing' : 'resuming'} ${name} (Connect applies it asynchronously; see cellar connectors status)`);
      });
  }

  common(connectors.command('generate'))
    .description('print the generated connector configs as JSON (secrets only as config-provider references)')
    .action(async (o: CommonOpts) => {
      const ctx = await context(o);
      const out = ctx.kc.generateConnectorConfigs(ctx.suppliers, ctx.options).map((g) => ({ name: g.name, supplier: g.supplierId, file: g.file, topics: g.topics, config: g.config }));
      console.log(JSON.stringify(out, null, 2));
    });
}
