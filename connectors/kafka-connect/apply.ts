import type { KafkaConnectClient } from './client.js';
import type { GeneratedConnector } from './generate.js';
import type { ConnectorPlan } from './plan.js';

/** One field Connect's validate endpoint rejected, placed in the supplier file it comes from. */
export interface ValidationProblem {
  connector: string;
  supplierId: string;
  /** The supplier file to fix. */
  file: string;
  /** The connector property Connect named. */
  property: string;
  /** The supplier field behind the property, when there is one (e.g. `source.connection.host`). */
  supplierField?: string;
  messages: string[];
}

/** Formats a problem as `file: field (property): message; message`. */
export function formatProblem(p: ValidationProblem): string {
  const where = p.supplierField ? `${p.supplierField} (connector property ${p.property})` : `connector property ${p.property} (generated; see CELLAR_CONNECT_* settings)`;
  return `${p.file}: ${where}: ${p.messages.join('; ')}`;
}

/**
 * Validates each connector through `PUT /connector-plugins/{class}/config/validate`. Connect changes
 * nothing for this call; every field error comes back against the supplier file and field behind it.
 */
export async function validateConnectors(client: KafkaConnectClient, connectors: GeneratedConnector[]): Promise<ValidationProblem[]> {
  const problems: ValidationProblem[] = [];
  for (const g of connectors) {
    const result = await client.validate(g.config['connector.class']!, g.config);
    if (result.error_count === 0) continue;
    let found = 0;
    for (const c of result.configs) {
      const errors = c.value?.errors ?? [];
      if (errors.length === 0) continue;
      found++;
      const property = c.value.name ?? c.definition?.name ?? '(unknown)';
      problems.push({ connector: g.name, supplierId: g.supplierId, file: g.file, property, supplierField: g.fieldSources[property], messages: errors });
    }
    if (found === 0) {
      // error_count without per-field errors: still a failed validation.
      problems.push({ connector: g.name, supplierId: g.supplierId, file: g.file, property: '(connector)', messages: [`Connect reports ${result.error_count} error(s) without naming a field`] });
    }
  }
  return problems;
}

/** What `apply` did. */
export interface ApplyResult {
  /** Validation failed: nothing was changed. */
  problems: ValidationProblem[];
  created: string[];
  updated: string[];
  deleted: string[];
  unchanged: string[];
  /** Managed connectors no supplier generates, left in place because `prune` was off. */
  keptWithoutPrune: string[];
}

/**
 * Applies a plan: validates every connector to create or update first (any error: nothing is changed),
 * then puts their configs (PUT is create-or-update, so a repeated apply is harmless), then deletes
 * connectors no supplier generates, only when `prune` is set. Unchanged connectors are not touched.
 */
export async function applyPlan(
  client: KafkaConnectClient,
  plan: ConnectorPlan,
  opts: { prune: boolean; onStep?: (line: string) => void },
): Promise<ApplyResult> {
  const result: ApplyResult = { problems: [], created: [], updated: [], deleted: [], unchanged: [], keptWithoutPrune: [] };
  const writes = plan.actions.flatMap((a) => (a.action === 'create' || a.action === 'update' ? [a] : []));
  result.problems = await validateConnectors(client, writes.map((a) => a.desired));
  if (result.problems.length) return result;
  for (const a of plan.actions) {
    switch (a.action) {
      case 'create':
      case 'update': {
        const { created } = await client.putConfig(a.name, a.desired.config);
        (created ? result.created : result.updated).push(a.name);
        opts.onStep?.(`${created ? 'created' : 'updated'} ${a.name}`);
        break;
      }
      case 'delete':
        if (!opts.prune) {
          result.keptWithoutPrune.push(a.name);
          break;
        }
        await client.deleteConnector(a.name);
        result.deleted.push(a.name);
        opts.onStep?.(`deleted ${a.name}`);
        break;
      case 'unchanged':
        result.unchanged.push(a.name);
        break;
    }
  }
  return result;
}
