import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import type { Logger } from '../core/logger.js';
import type { MappingInputsStore } from '../normalize/sku-map-store.js';
import type { ReloadOutcome } from '../state/control.js';

/** How a reloaded registry differs from the running one, by supplier id. */
export interface SupplierDiff {
  added: Supplier[];
  removed: Supplier[];
  /** The file's content changed (connection, tables, mapping, schedule…). */
  changed: Supplier[];
}

const content = (s: Supplier) => JSON.stringify({ ...s, file: undefined });

/** What a reload changes: suppliers new, gone, and whose file says something else now (a renamed file alone is no change). */
export function diffSuppliers(running: Supplier[], next: Supplier[]): SupplierDiff {
  const before = new Map(running.map((s) => [s.id, s]));
  const after = new Map(next.map((s) => [s.id, s]));
  return {
    added: next.filter((s) => !before.has(s.id)),
    removed: running.filter((s) => !after.has(s.id)),
    changed: next.filter((s) => before.has(s.id) && content(before.get(s.id)!) !== content(s)),
  };
}

/** A reload that changed nothing: the outcome before any reload ran. */
export const NO_RELOAD: ReloadOutcome = { ok: true, added: [], removed: [], changed: [], skipped: [] };

/**
 * The first half of every reload: reads the supplier files, follows their SKU maps and catalog, and runs
 * `prepare` (compiling what the runtime needs). Any problem rejects the whole configuration: it is logged,
 * and the rejected outcome says every problem; the caller keeps running what it has.
 */
export async function readConfiguration<T>(dir: string, inputs: MappingInputsStore, log: Logger, prepare: (next: Supplier[]) => T): Promise<{ next: Supplier[]; prepared: T } | { rejected: ReloadOutcome }> {
  try {
    const next = loadRegistry(dir);
    inputs.track(next);
    await inputs.load();
    return { next, prepared: prepare(next) };
  } catch (err) {
    log.error({ err: (err as Error).message }, 'configuration reload rejected; the running configuration is kept');
    return { rejected: { ...NO_RELOAD, ok: false, error: (err as Error).message } };
  }
}
