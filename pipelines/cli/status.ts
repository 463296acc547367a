import type { Command } from 'commander';
import type { SupplierConnector } from '../state/connector-health.js';
import type { SupplierHealth } from '../state/supplier-health.js';
import { formatTable } from './format.js';

/** `12 s ago`, `3 min ago`, `2 h ago`, or `never`. */
export function age(d: Date | null | undefined, now = Date.now()): string {
  if (!d) return 'never';
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : s < 172_800 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86_400)} d ago`;
}

const bytes = (n: number | null | undefined) => (n === null || n === undefined ? '-' : n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : n < 1 << 30 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / (1 << 30)).toFixed(2)} GiB`);

/** A connector in a few words: `RUNNING`, `RUNNING, task 0 FAILED`, `PAUSED`, or `unreachable`. */
export function connectorState(c: SupplierConnector | undefined): string {
  if (!c) return '-';
  if ('error' in c) return 'unreachable';
  const odd = c.tasks.filter((t) => t.state !== c.state).map((t) => `task ${t.id} ${t.state}`);
  return [c.state, ...odd, ...(c.tasks.length ? [] : ['no tasks'])].join(', ');
}

/**
 * The terminal view of {@link supplierHealth}; the connector column only when Kafka Connect was asked.
 * `connectError` is why Kafka Connect could not be read, said once.
 */
export function formatStatus(list: SupplierHealth[], now = Date.now(), connectError?: string): string {
  const unreachable = connectError ? `Kafka Connect could not be reached: ${connectError}` : undefined;
  if (!list.length) return ['no suppliers: none in the registry and none reported', ...(unreachable ? [unreachable] : [])].join('\n');
  const withConnect = list.some((h) => h.connector);
  const lines = [formatTable(
    ['supplier', 'status', 'runtime', 'last change', 'source lag', 'dead letters', 'held', 'last reconciliation', ...(withConnect ? ['connector'] : [])],
    list.map((h) => [
      h.supplierId,
      h.status,
      h.capture?.runtime ?? (h.connector && 'state' in h.connector ? 'kafka-connect' : '-'),
      age(h.lastChangeAt, now),
      bytes(h.capture?.lagBytes),
      h.deadLetters.pending ? `${h.deadLetters.pending} pending` : '0',
      h.held,
      h.lastReconciliation ? `${h.lastReconciliation.outcome} ${age(h.lastReconciliation.at, now)}` : 'never',
      ...(withConnect ? [connectorState(h.connector)] : []),
    ]),
  )];
  if (unreachable) lines.push('', unreachable);
  // A reader's own detail (a feed's last file) is shown when it says more than the status does.
  const captureDetail = (h: SupplierHealth) => (h.capture?.detail && h.capture.detail !== h.detail && !h.detail?.includes(h.capture.detail) ? h.capture.detail : undefined);
  for (const h of list.filter((x) => x.detail || x.deadLetters.newest.length || captureDetail(x))) {
    lines.push('', `${h.supplierId}: ${h.status}${h.detail ? `: ${h.detail}` : ''}`);
    const own = captureDetail(h);
    if (own) lines.push(`  capture: ${own}`);
    if (h.capture?.lagDetail) lines.push(`  source: ${h.capture.lagDetail}`);
    if (h.connector && 'state' in h.connector) lines.push(`  connector ${h.connector.name}: ${connectorState(h.connector)}`);
    for (const r of h.deadLetters.byReason.filter((x) => x.pending)) lines.push(`  dead letters ${r.reason}: ${r.pending} pending of ${r.total}`);
    for (const l of h.deadLetters.newest) lines.push(`  newest letter ${l.id} (${l.reason}, ${age(l.createdAt, now)}): ${l.message.slice(0, 120)}`);
  }
  return lines.join('\n');
}

/**
 * Why Cellar's Redis cannot serve snapshots now (it does not answer a PING within 2 s), or undefined when
 * it answers. `where` names it without credentials. The runtimes go on without it (see the message).
 */
export async function redisProblem(url: string, where: string): Promise<string | undefined> {
  const [{ pingRedis }, { scrubSecrets }] = await Promise.all([import('../core/redis.js'), import('../core/secrets.js')]);
  try {
    await pingRedis(url, 2_000);
    return undefined;
  } catch (err) {
    const why = scrubSecrets(String((err as Error)?.message ?? err));
    return `${where} does not answer (${why}): totals still go to Postgres (cellar.regional_stock); Redis snapshots are stale until it answers, then rebuilt from Postgres`;
  }
}

/**
 * `cellar status`: every supplier's health, and a line when Cellar's Redis does not answer; exit 1 when
 * any supplier is failing or unknown, or Redis does not answer. With CELLAR_CONNECT_URL,
 * Kafka Connect is read once for the Debezium suppliers' connector states (Connect unreachable leaves them
 * `unknown`, with the error).
 */
export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('per-supplier health: capture or Debezium connector state, last change, source lag, dead letters, held rows, last reconciliation; exit 1 when a supplier is failing or nothing reports on it, or Cellar\'s Redis does not answer')
    .option('--supplier <id>', 'one supplier')
    .option('--json', 'one JSON object per supplier and line')
    .action(async (o: { supplier?: string; json?: boolean }) => {
      const [{ loadRuntimeConfig, dependencyAt }, { loadRegistry }, { createConnectStatusSource }, { createPgPool }, { connectorNamePrefix }, { readConnectorStatus, supplierHealth }] = await Promise.all([
        import('../core/config.js'), import('../../connectors/registry/loader.js'), import('../../connectors/kafka-connect/status-source.js'), import('../core/pg.js'), import('../state/connector-health.js'), import('../state/supplier-health.js'),
      ]);
      const cfg = loadRuntimeConfig();
      let ids: string[] = [];
      try {
        ids = loadRegistry(cfg.suppliersDir).map((s) => s.id);
      } catch {
        // The view still works from Cellar's tables; the registry only adds suppliers nothing reported on.
      }
      const namePrefix = cfg.connectUrl ? connectorNamePrefix() : undefined;
      const connectors = cfg.connectUrl && namePrefix !== undefined ? { reading: readConnectorStatus(createConnectStatusSource(cfg.connectUrl)), namePrefix } : undefined;
      const pool = createPgPool(cfg.pgUrl, { max: 2 });
      try {
        const redisDown = redisProblem(cfg.redisUrl, dependencyAt(cfg, 'Redis'));
        const list = await supplierHealth(pool, o.supplier ? { only: o.supplier, connectors } : { supplierIds: ids, connectors });
        const read = await connectors?.reading;
        const stores = await redisDown;
        if (o.json) {
          for (const h of list) process.stdout.write(`${JSON.stringify(h)}\n`);
          if (stores) process.stderr.write(`${stores}\n`);
        } else console.log([formatStatus(list, Date.now(), read && 'error' in read ? read.error : undefined), ...(stores ? ['', stores] : [])].join('\n'));
        process.exitCode = stores || list.some((h) => h.status === 'failing' || h.status === 'unknown') ? 1 : 0;
      } finally {
        await pool.end();
      }
    });
}
