import { CellarError } from '../../pipelines/core/errors.js';
import type { ConnectorStatus, KafkaConnectClient } from './client.js';
import type { GeneratedConnector } from './generate.js';

/** The health of one managed connector. */
export interface ConnectorHealth {
  name: string;
  supplierId?: string;
  /** False when the registry generates it but Connect does not run it (apply not run yet). */
  exists: boolean;
  /** False when Connect runs it under Cellar's prefix but no supplier generates it any more. */
  inRegistry: boolean;
  status?: ConnectorStatus;
  /** True when the connector or one of its tasks is FAILED. */
  failed: boolean;
}

function isFailed(s?: ConnectorStatus): boolean {
  return Boolean(s && (s.connector.state === 'FAILED' || s.tasks.some((t) => t.state === 'FAILED')));
}

/**
 * Status of every managed connector (registry and Connect, by name), from one
 * `GET /connectors?expand=status&expand=info`.
 */
export async function connectorHealth(client: KafkaConnectClient, desired: GeneratedConnector[], namePrefix: string): Promise<ConnectorHealth[]> {
  const all = await client.listConnectors();
  const byName = new Map(desired.map((d) => [d.name, d]));
  const names = new Set([...byName.keys(), ...Object.keys(all).filter((n) => n.startsWith(namePrefix))]);
  return [...names].sort().map((name) => {
    const status = all[name]?.status;
    return { name, supplierId: byName.get(name)?.supplierId, exists: name in all, inRegistry: byName.has(name), status, failed: isFailed(status) };
  });
}

function indent(text: string, pad: string, maxLines: number): string[] {
  const lines = text.split('\n');
  const shown = lines.slice(0, maxLines).map((l) => pad + l.replace(/\t/g, '    '));
  if (lines.length > maxLines) shown.push(`${pad}… ${lines.length - maxLines} more lines (--full-traces to see all)`);
  return shown;
}

/**
 * Renders connector and task states; FAILED ones with their stack trace (first `traceLines` lines),
 * passed through `scrub` because traces may echo connection strings.
 */
export function renderHealth(rows: ConnectorHealth[], opts: { traceLines: number; scrub: (t: string) => string }): string {
  const out: string[] = [];
  for (const r of rows) {
    const who = r.supplierId ? ` (supplier ${r.supplierId})` : '';
    if (!r.exists) {
      out.push(`${r.name}${who}: MISSING on Connect (run cellar connectors apply)`);
      continue;
    }
    const s = r.status;
    if (!s) {
      out.push(`${r.name}${who}: no status reported`);
      continue;
    }
    const note = r.inRegistry ? '' : ' [no supplier generates it; apply --prune deletes it]';
    out.push(`${r.name}${who}: ${s.connector.state}${s.connector.worker_id ? ` on ${s.connector.worker_id}` : ''}${note}`);
    if (s.connector.state === 'FAILED' && s.connector.trace) out.push(...indent(opts.scrub(s.connector.trace), '    | ', opts.traceLines));
    for (const t of s.tasks) {
      out.push(`  task ${t.id}: ${t.state}${t.worker_id ? ` on ${t.worker_id}` : ''}`);
      if (t.state === 'FAILED' && t.trace) out.push(...indent(opts.scrub(t.trace), '    | ', opts.traceLines));
    }
    if (s.tasks.length === 0) out.push('  (no tasks)');
  }
  if (rows.length === 0) out.push('(no managed connectors)');
  const failed = rows.filter((r) => r.failed).length;
  const missing = rows.filter((r) => !r.exists).length;
  out.push('', `${rows.length} connectors: ${rows.length - failed - missing} healthy or paused, ${failed} failed, ${missing} missing.`);
  return out.join('\n');
}

/** What a restart did to one connector. */
export interface RestartOutcome {
  name: string;
  connectorRestarted: boolean;
  tasksRestarted: number[];
}

/**
 * Restarts only what failed: for each connector (all managed ones, or `only`) whose connector instance
 * or tasks are FAILED, `POST /connectors/{name}/restart?includeTasks=true&onlyFailed=true`. On a worker
 * older than Kafka 3.0 (which ignores those parameters and answers 204) the failed tasks are restarted
 * one by one. Running connectors are not touched.
 */
export async function restartFailed(client: KafkaConnectClient, rows: ConnectorHealth[], only?: string): Promise<RestartOutcome[]> {
  if (only && !rows.some((r) => r.name === only && r.exists)) {
    throw new CellarError('kafka_connect_not_found', `connector ${only} is not running on Kafka Connect ${client.url}`);
  }
  const out: RestartOutcome[] = [];
  for (const r of rows) {
    if ((only && r.name !== only) || !r.failed || !r.status) continue;
    const failedTasks = r.status.tasks.filter((t) => t.state === 'FAILED').map((t) => t.id);
    const connectorFailed = r.status.connector.state === 'FAILED';
    const res = await client.restart(r.name, { includeTasks: true, onlyFailed: true });
    if (!res.status) for (const id of failedTasks) await client.restartTask(r.name, id);
    out.push({ name: r.name, connectorRestarted: connectorFailed || !res.status, tasksRestarted: failedTasks });
  }
  return out;
}
