import { scrubSecrets } from '../core/secrets.js';
import { parseSpec } from '../core/spec.js';
import { CONNECT_ENV, KafkaConnectSpec } from '../../connectors/kafka-connect/config.js';
import type { ConnectorStatus } from '../../connectors/kafka-connect/status-source.js';
import type { SupplierHealth } from './supplier-health.js';

/**
 * A supplier's Debezium connector as Kafka Connect reports it: its state and its tasks' (a FAILED task's
 * trace cut to its first line), or `error` when Connect could not be asked (its message, credentials removed).
 */
export type SupplierConnector =
  | { name: string; state: string; tasks: Array<{ id: number; state: string; trace?: string }> }
  | { name: string; error: string };

/** What one read of Kafka Connect gave: every connector's status, or why Connect could not be read. */
export type ConnectorReading = ConnectorStatus[] | { error: string };

/** Connector states that mean an operator (or `cellar connectors pause`) stopped it on purpose. */
const HALTED = new Set(['PAUSED', 'STOPPED']);

/**
 * The prefix of Cellar's connector names (`<prefix><supplier id>`): CELLAR_CONNECT_NAME_PREFIX, else the
 * default `cellar connectors` generates with (both from `KafkaConnectSpec`, so the two cannot drift apart).
 * Throws a ConfigError naming the variable when it is not a valid prefix.
 */
export function connectorNamePrefix(env: NodeJS.ProcessEnv = process.env): string {
  const name = CONNECT_ENV.namePrefix!;
  return parseSpec(KafkaConnectSpec.pick({ namePrefix: true }), { namePrefix: env[name] || undefined }, 'environment', () => name).namePrefix;
}


/** The first line of a Java stack trace (the exception and its message), credentials removed. */
function firstLine(trace: string | undefined): string | undefined {
  const line = trace?.split('\n').find((l) => l.trim() !== '')?.trim();
  return line === undefined ? undefined : scrubSecrets(line);
}

/** Supplier ids of the connectors carrying `namePrefix`, for listing suppliers only Connect knows of. */
export function connectorSupplierIds(reading: ConnectorReading, namePrefix: string): string[] {
  if (!Array.isArray(reading)) return [];
  return reading
    .filter((c) => c.name.startsWith(namePrefix))
    .map((c) => c.name.slice(namePrefix.length))
    .filter((id) => /^[a-z0-9][a-z0-9-]{0,62}$/.test(id));
}

/** Status and detail from a connector alone (rules in {@link withConnectorStatus}). */
function statusOfConnector(c: ConnectorStatus): Pick<SupplierHealth, 'status' | 'detail'> {
  const failed = [
    ...(c.state === 'FAILED' ? [`connector ${c.name} FAILED`] : []),
    ...c.tasks.filter((t) => t.state === 'FAILED').map((t) => {
      const why = firstLine(t.trace);
      return `connector ${c.name} task ${t.id} FAILED${why ? `: ${why}` : ''}`;
    }),
  ];
  if (failed.length) return { status: 'failing', detail: failed.join('; ') };
  if (HALTED.has(c.state)) return { status: 'stopped', detail: `connector ${c.name} is ${c.state}` };
  const halted = c.tasks.filter((t) => HALTED.has(t.state));
  if (halted.length) return { status: 'stopped', detail: `connector ${c.name} ${c.state}, ${halted.map((t) => `task ${t.id} ${t.state}`).join(', ')}` };
  if (c.state === 'RUNNING' && c.tasks.length > 0 && c.tasks.every((t) => t.state === 'RUNNING')) return { status: 'ok', detail: null };
  if (c.state === 'RUNNING' && c.tasks.length === 0) return { status: 'starting', detail: `connector ${c.name} RUNNING with no tasks yet` };
  if (c.state === 'RUNNING' || c.state === 'UNASSIGNED' || c.state === 'RESTARTING') {
    const waiting = c.tasks.filter((t) => t.state !== 'RUNNING').map((t) => `task ${t.id} ${t.state}`);
    return { status: 'starting', detail: `connector ${c.name} ${c.state}${waiting.length ? `, ${waiting.join(', ')}` : ''}` };
  }
  return { status: 'unknown', detail: `connector ${c.name} reports state ${c.state}` };
}

/** The connector as shown to operators: task traces cut to their first line. */
function shown(c: ConnectorStatus): SupplierConnector {
  return {
    name: c.name,
    state: c.state,
    tasks: c.tasks.map((t) => {
      const trace = firstLine(t.trace);
      return { id: t.id, state: t.state, ...(trace ? { trace } : {}) };
    }),
  };
}

/**
 * Folds Kafka Connect's view into per-supplier health, for suppliers captured by Debezium (which write no
 * `cellar.source_status`). Pure: `connectors` is one read of Connect, `namePrefix` makes connector names
 * (`<namePrefix><supplier id>`). Each supplier gets its `connector` (or Connect's error); its status changes
 * only when no native reader reports on it (a fresh native report wins):
 * - the connector or a task FAILED → `failing`, naming the task and its trace's first line;
 * - the connector or a task PAUSED/STOPPED → `stopped`;
 * - the connector and its tasks (at least one) RUNNING → `ok`;
 * - UNASSIGNED, RESTARTING, or RUNNING without (running) tasks → `starting`;
 * - no such connector, or Connect could not be read → stays `unknown`, the detail saying which.
 */
export function withConnectorStatus(health: SupplierHealth[], connectors: ConnectorReading, namePrefix: string): SupplierHealth[] {
  const byName = Array.isArray(connectors) ? new Map(connectors.map((c) => [c.name, c])) : undefined;
  return health.map((h) => {
    const name = `${namePrefix}${h.supplierId}`;
    const native = h.capture?.reporting === true;
    // A stale native report keeps its detail after Connect's, so both are seen.
    const also = (what: string) => (h.capture ? `${what}; ${h.detail ?? `the ${h.capture.runtime} runtime reported ${h.capture.state}`}` : `${what} and no native reader reports`);
    if (!byName) {
      const error = scrubSecrets((connectors as { error: string }).error);
      const connector: SupplierConnector = { name, error };
      return native ? { ...h, connector } : { ...h, connector, detail: also(`Kafka Connect could not be reached, so connector ${name} is unknown (${error})`) };
    }
    const c = byName.get(name);
    if (!c) return native ? h : { ...h, detail: also(`no connector ${name} on Kafka Connect`) };
    return native ? { ...h, connector: shown(c) } : { ...h, ...statusOfConnector(c), connector: shown(c) };
  });
}
