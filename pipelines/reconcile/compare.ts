/**
 * The pure core of reconciliation: what a source row should contribute, how that differs from what Cellar
 * holds, and how Cellar's own layers (contributions, totals, Redis) disagree. No I/O.
 */

/** Where a contributor's bottles are counted. */
export interface Placed {
  region: string;
  sku: string;
  bottles: number;
  /** Bottle size, ml; absent where Cellar's contribution predates sizes (then not compared). */
  bottleSizeMl?: number | null;
}

export type { Drift, DriftKind } from '../state/runs.js';
import type { Drift } from '../state/runs.js';

/** One (region, sku) as a map key within reconciliation (a NUL cannot occur in either). */
export const keyId = (k: { region: string; sku: string }): string => `${k.region}\u0000${k.sku}`;

const samePlace = (a: Placed, b: Placed) => a.region === b.region && a.sku === b.sku;
const sameSize = (a: Placed, b: Placed) => a.bottleSizeMl == null || b.bottleSizeMl == null || a.bottleSizeMl === b.bottleSizeMl;

/** True when Cellar's live contribution equals what the source row implies (both absent counts as equal). */
export function contributionMatches(expected: Placed | undefined, actual: Placed | undefined): boolean {
  if (!expected || !actual) return !expected && !actual;
  return samePlace(expected, actual) && expected.bottles === actual.bottles && sameSize(expected, actual);
}

/** Why a source row and Cellar's contribution differ, in an on-call engineer's words. */
export function contributionCause(expected: Placed | undefined, actual: Placed | undefined): string {
  if (expected && !actual) return 'the source row is not counted in Cellar: a lost insert, or a change lost after a delete';
  if (!expected && actual) return 'Cellar still counts a row the source no longer has: a lost delete';
  if (expected && actual && !samePlace(expected, actual)) {
    return `counted under ${actual.region}/${actual.sku}, the source row says ${expected.region}/${expected.sku}: a lost move (warehouse or SKU change)`;
  }
  if (expected && actual && !sameSize(expected, actual)) {
    return `counted as ${actual.bottleSizeMl} ml bottles, the source row is ${expected.bottleSizeMl} ml: counted before bottle sizes were kept, or changed outside the pipeline`;
  }
  return 'the quantity differs: a lost update, or the contribution was changed outside the pipeline';
}

/**
 * A contribution difference as a drift row. `extra`: further live contributions of the same row under
 * other keys (it is then counted more than once; `actual.alsoCountedAt` lists them).
 */
export function contributionDrift(contributorId: string, expected: Placed | undefined, actual: Placed | undefined, extra: Placed[] = []): Drift {
  const at = expected ?? actual;
  if (extra.length) {
    const where = [actual, ...extra].filter(Boolean).map((p) => `${p!.region}/${p!.sku}`).join(', ');
    return {
      kind: 'contribution', region: at?.region ?? null, sku: at?.sku ?? null, contributorId, expected: expected ?? null,
      actual: { ...actual, alsoCountedAt: extra.map((p) => ({ region: p.region, sku: p.sku, bottles: p.bottles })) },
      likelyCause: `one source row counted under ${extra.length + 1} keys at once (${where}): contributions changed outside the pipeline`,
    };
  }
  return { kind: 'contribution', region: at?.region ?? null, sku: at?.sku ?? null, contributorId, expected: expected ?? null, actual: actual ?? null, likelyCause: contributionCause(expected, actual) };
}

/** A total or Redis field at a key no contributor was ever counted under. */
export function orphanDrift(k: KeyState): Drift {
  return {
    kind: 'orphan', region: k.region, sku: k.sku, contributorId: null, expected: null, actual: k.stored ?? k.cached,
    likelyCause: k.stored !== null
      ? 'cellar.regional_stock has a total for a key no contributor of any supplier was ever counted under: written outside the pipeline, or left from a removed supplier'
      : 'the Redis snapshot has a field for a key cellar.regional_stock does not have: written outside the pipeline, or left after its row was removed',
  };
}

/** What Cellar holds for one (region, sku): the sum over live contributions, the table row, the Redis field. */
export interface KeyState {
  region: string;
  sku: string;
  /** Sum of live `stock_contributions` of every supplier. */
  contributed: number;
  /** `regional_stock.bottles`, or null without a row. */
  stored: number | null;
  /** The Redis snapshot's field, or null when absent. */
  cached: number | null;
}

/**
 * Cellar's internal disagreements at one key: `regional_stock` against the sum of contributions, and
 * Redis against `regional_stock` (only when the table is right, so one fault is reported once). A missing
 * row or field counts as 0 bottles.
 */
export function keyDrift(k: KeyState): Drift | undefined {
  const stored = k.stored ?? 0;
  if (stored !== k.contributed) {
    return { kind: 'regional_total', region: k.region, sku: k.sku, contributorId: null, expected: k.contributed, actual: k.stored, likelyCause: 'cellar.regional_stock differs from the sum of its contributions: changed outside the pipeline, or a lost sink write' };
  }
  if ((k.cached ?? 0) !== stored) {
    return { kind: 'redis', region: k.region, sku: k.sku, contributorId: null, expected: k.stored, actual: k.cached, likelyCause: k.cached === null ? 'the Redis field is missing: deleted, evicted or expired' : 'the Redis snapshot differs from cellar.regional_stock: changed outside the pipeline' };
  }
  return undefined;
}

/** A stable text of a drift's observed values, to tell a persistent difference from one still moving. */
export function driftSignature(d: Drift): string {
  return JSON.stringify([d.kind, d.expected, d.actual]);
}

/**
 * The primary key of a contributor from its id `supplier/table/k=v[,k=v]`, given each table's key
 * columns (in any order). Undefined when the id does not belong to one of `tables`.
 */
export function keyOfContributor(contributorId: string, supplierId: string, tables: Map<string, string[]>): { table: string; key: Record<string, string> } | undefined {
  const prefix = `${supplierId}/`;
  if (!contributorId.startsWith(prefix)) return undefined;
  const rest = contributorId.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  const table = rest.slice(0, slash);
  const cols = tables.get(table);
  if (!cols?.length) return undefined;
  const text = rest.slice(slash + 1);
  // Split only before `,<key column>=`, so values may hold commas.
  const esc = cols.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
  const parts = text.split(new RegExp(`,(?=(?:${esc})=)`));
  const key: Record<string, string> = {};
  for (const p of parts) {
    const eq = p.indexOf('=');
    const col = p.slice(0, eq);
    if (eq < 0 || !cols.includes(col)) return undefined;
    key[col] = p.slice(eq + 1);
  }
  return cols.every((c) => c in key) ? { table, key } : undefined;
}

/**
 * The version of a correction: just above the newest version Cellar holds for the row (so it applies) and
 * below every later real change (which sorts above that version at some digit), so a correction never
 * hides a change still in flight. For a row Cellar never saw, `+r` sorts below every real version
 * (they start with a digit or hex letter).
 */
export function repairVersion(newestHeld: string | null | undefined): string {
  return `${newestHeld ?? ''}+r`;
}
