import type { ConnectorInfo } from './client.js';
import type { ConnectorlessSupplier, GeneratedConnector } from './generate.js';
import { isProviderReference } from './secrets.js';

/** One field that differs between Connect and the registry. */
export interface FieldChange {
  key: string;
  kind: 'add' | 'change' | 'remove';
  /** What Connect runs now (absent for `add`). */
  before?: string;
  /** What the registry wants (absent for `remove`). */
  after?: string;
}

export type PlanAction =
  | { action: 'create'; name: string; desired: GeneratedConnector }
  | { action: 'update'; name: string; desired: GeneratedConnector; changes: FieldChange[] }
  | { action: 'unchanged'; name: string; desired: GeneratedConnector }
  | { action: 'delete'; name: string; actual: Record<string, string> };

/** The difference between the registry and what Connect runs. */
export interface ConnectorPlan {
  /** Sorted by connector name. */
  actions: PlanAction[];
  /** Suppliers that have no connector (http, csv). */
  connectorless: ConnectorlessSupplier[];
  /** Connectors on Connect outside Cellar's name prefix: never touched. */
  unmanaged: string[];
}

/** Field-level difference of two configs; keys sorted. */
export function diffConfig(actual: Record<string, string>, desired: Record<string, string>): FieldChange[] {
  const keys = [...new Set([...Object.keys(actual), ...Object.keys(desired)])].sort();
  const out: FieldChange[] = [];
  for (const key of keys) {
    const a = actual[key];
    const d = desired[key];
    if (a === d) continue;
    if (a === undefined) out.push({ key, kind: 'add', after: d });
    else if (d === undefined) out.push({ key, kind: 'remove', before: a });
    else out.push({ key, kind: 'change', before: a, after: d });
  }
  return out;
}

/**
 * Plans what `apply` would do: create connectors the registry has and Connect lacks, update those whose
 * config differs (field by field), delete managed connectors (name starting with `namePrefix`) that no
 * supplier generates any more. Connectors outside the prefix are listed as unmanaged and left alone.
 */
export function planConnectors(
  desired: GeneratedConnector[],
  actual: Record<string, { info?: ConnectorInfo }>,
  namePrefix: string,
  connectorless: ConnectorlessSupplier[] = [],
): ConnectorPlan {
  const actions: PlanAction[] = [];
  const wanted = new Map(desired.map((d) => [d.name, d]));
  for (const d of desired) {
    const a = actual[d.name];
    if (!a) {
      actions.push({ action: 'create', name: d.name, desired: d });
      continue;
    }
    const changes = diffConfig(a.info?.config ?? {}, d.config);
    actions.push(changes.length ? { action: 'update', name: d.name, desired: d, changes } : { action: 'unchanged', name: d.name, desired: d });
  }
  const unmanaged: string[] = [];
  for (const [name, a] of Object.entries(actual)) {
    if (wanted.has(name)) continue;
    if (name.startsWith(namePrefix)) actions.push({ action: 'delete', name, actual: a.info?.config ?? {} });
    else unmanaged.push(name);
  }
  actions.sort((x, y) => x.name.localeCompare(y.name));
  return { actions, connectorless, unmanaged: unmanaged.sort() };
}

/** Config keys whose values are credentials. */
const SENSITIVE_KEY = /(password|secret|token|credential|jaas\.config|api\.key|apikey|private\.key|key\.password)/i;
/** Keys whose values are URLs or connection strings that may carry `user:password@`. */
const URL_KEY = /(connection\.string|\.url$|\.uri$|^connection\.url$)/i;

/**
 * Renders a config value for plans and logs. Config-provider references (`${env:X}`) are shown as they
 * are: they name where a secret lives, not the secret. Anything else under a credential key is hidden
 * (a connector created by hand may hold an inline password), and a password inside a URL is masked.
 */
export function renderValue(key: string, value: string): string {
  if (isProviderReference(value)) return JSON.stringify(value);
  if (SENSITIVE_KEY.test(key)) return '(sensitive value hidden)';
  if (URL_KEY.test(key)) return JSON.stringify(maskUrlPassword(value));
  return JSON.stringify(value);
}

/** Masks `user:password@` in URLs unless the password is a config-provider reference. */
export function maskUrlPassword(value: string): string {
  return value.replace(/(\/\/[^:/@\s]+:)([^@\s]+)@/g, (m, head: string, pw: string) => (isProviderReference(pw) ? m : `${head}***@`));
}

/** Counts of a plan's actions. */
export function planSummary(plan: ConnectorPlan): Record<PlanAction['action'], number> {
  const n = { create: 0, update: 0, unchanged: 0, delete: 0 };
  for (const a of plan.actions) n[a.action]++;
  return n;
}

/** True when applying the plan (with `prune` as given) would change something on Connect. */
export function hasChanges(plan: ConnectorPlan, prune: boolean): boolean {
  return plan.actions.some((a) => a.action === 'create' || a.action === 'update' || (prune && a.action === 'delete'));
}

/**
 * Renders a plan like a Terraform plan: `+` create (every field), `~` update (only changed fields,
 * old → new), `-` delete (with `--prune` only), then suppliers without connectors and a summary line.
 */
export function renderPlan(plan: ConnectorPlan, opts: { prune: boolean; connectUrl: string }): string {
  const lines: string[] = [`Kafka Connect ${opts.connectUrl}`, ''];
  for (const a of plan.actions) {
    if (a.action === 'create') {
      lines.push(`  + ${a.name}  (create; supplier ${a.desired.supplierId}, ${a.desired.file})`);
      for (const [k, v] of Object.entries(a.desired.config).sort(([x], [y]) => x.localeCompare(y))) lines.push(`      + ${k} = ${renderValue(k, v)}`);
    } else if (a.action === 'update') {
      lines.push(`  ~ ${a.name}  (update ${a.changes.length} field${a.changes.length === 1 ? '' : 's'}; supplier ${a.desired.supplierId}, ${a.desired.file})`);
      for (const c of a.changes) {
        if (c.kind === 'add') lines.push(`      + ${c.key} = ${renderValue(c.key, c.after!)}`);
        else if (c.kind === 'remove') lines.push(`      - ${c.key} = ${renderValue(c.key, c.before!)}`);
        else lines.push(`      ~ ${c.key}: ${renderValue(c.key, c.before!)} → ${renderValue(c.key, c.after!)}`);
      }
    } else if (a.action === 'delete') {
      lines.push(opts.prune ? `  - ${a.name}  (delete: no supplier generates it)` : `  - ${a.name}  (no supplier generates it; deleted only by apply --prune)`);
    } else {
      lines.push(`    ${a.name}  (unchanged)`);
    }
  }
  if (plan.actions.length === 0) lines.push('  (no connectors)');
  if (plan.connectorless.length) {
    lines.push('', 'Suppliers without a connector:');
    for (const s of plan.connectorless) lines.push(`    ${s.supplierId} (${s.file}): ${s.reason}`);
  }
  if (plan.unmanaged.length) lines.push('', `Not managed by Cellar (left alone): ${plan.unmanaged.join(', ')}`);
  const n = planSummary(plan);
  const del = opts.prune ? `${n.delete} to delete` : `${n.delete} to delete with --prune`;
  lines.push('', `Plan: ${n.create} to create, ${n.update} to update, ${del}, ${n.unchanged} unchanged.`);
  return lines.join('\n');
}
