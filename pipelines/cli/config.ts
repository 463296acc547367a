import { Option, type Command } from 'commander';
import { ConfigError } from '../core/errors.js';

/**
 * `cellar config check`: the effective configuration with its secrets masked, then a test of every
 * connection it describes (Cellar's Postgres, Redis, Kafka, the Schema Registry, Kafka Connect when set,
 * the read API's certificate when set, the databases of the suppliers Cellar reads natively), each failure named (DNS, TCP, timeout, TLS verification, TLS,
 * authentication, an unreadable file) with the variables to fix. Exit 0 all answered, 3 one did not,
 * 2 the configuration itself is invalid (every bad variable named).
 */
export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('Cellar\'s own configuration (CELLAR_* variables)');
  config
    .command('check')
    .description('print the effective configuration with secrets masked and test each connection it describes, naming what failed (DNS, TCP, TLS verification, authentication…) and the variable to fix (exit 0 all answered, 3 one did not, 2 invalid configuration)')
    .addOption(new Option('--only <services>', 'comma-separated services to test: postgres, redis, kafka, schema-registry, connect, api-tls, suppliers (their databases, from CELLAR_SUPPLIERS_DIR)'))
    .addOption(new Option('--skip <services>', 'comma-separated services not to test (the embedded runtime needs no Kafka: --skip kafka,schema-registry)'))
    .addOption(new Option('--no-settings', 'do not print the effective configuration'))
    .action(async (o: { only?: string; skip?: string; settings?: boolean }) => {
      const [{ loadRuntimeConfig }, { checkConnections, effectiveSettings, FAILURE_HINT, SERVICES, variablesFor }, { createLogger }] = await Promise.all([
        import('../core/config.js'), import('./config-check.js'), import('../core/logger.js'),
      ]);
      const list = (flag: string, v?: string) => {
        const names = (v ?? '').split(',').map((x) => x.trim()).filter(Boolean);
        const bad = names.filter((n) => !(SERVICES as readonly string[]).includes(n));
        if (bad.length) throw new ConfigError(`cellar config check: ${flag}: unknown service ${bad.join(', ')} (known: ${SERVICES.join(', ')})`);
        return names;
      };
      const only = o.only ? list('--only', o.only) : [...SERVICES];
      const skip = list('--skip', o.skip);
      const cfg = loadRuntimeConfig();
      if (o.settings !== false) {
        console.log('Effective configuration (secrets masked; defaults included):');
        for (const line of effectiveSettings(cfg)) console.log(`  ${line}`);
        console.log('');
      }
      const results = await checkConnections(cfg, createLogger('config-check', 'silent'), new Set(only.filter((s) => !skip.includes(s))) as Set<(typeof SERVICES)[number]>);
      console.log('Connections:');
      const width = Math.max(...results.map((r) => r.service.length), 8);
      for (const r of results) {
        console.log(`  ${r.ok ? 'ok  ' : 'FAIL'}  ${r.service.padEnd(width)}  ${r.at}${r.ok ? '' : `: ${r.kind}: ${r.message}`}`);
        if (!r.ok) console.log(`        ${' '.repeat(width)}  ${FAILURE_HINT[r.kind!]} ${variablesFor(r.kind!, r.variables).join(', ')}`);
      }
      const failed = results.filter((r) => !r.ok).length;
      console.log(failed ? `\n${failed} of ${results.length} connections failed` : `\nall ${results.length} connections answered`);
      process.exitCode = failed ? 3 : 0;
    });
}
