import type { Supplier } from '../../connectors/registry/loader.js';

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
