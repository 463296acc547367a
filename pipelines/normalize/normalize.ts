import type { StockObservation } from '../../schemas/records.js';
import { decimalToString, type Decimal } from './decimal.js';
import type { ChangeEvent, Row } from './debezium.js';
import type { CompiledMapping, Placement } from './mapping.js';
import { Rejection, type ReasonCode } from './reasons.js';

/**
 * Where Cellar last placed a contributor (one source row), and at which source version. The normalizer
 * keeps one per contributor so that deletes and updates without a before-image (Postgres' default
 * replica identity) still know which (region, sku) to take the bottles off, and so that a change older
 * than what was already applied (a replay, a dead letter replayed late) is recognized as stale.
 */
export interface Route extends Omit<Placement, 'bottles'> {
  contributorId: string;
  supplierId: string;
  sourceTable: string;
  sourceVersion: string;
  /** True once the row was deleted or truncated; kept so older changes cannot resurrect it. */
  deleted: boolean;
}

/** The newest route of each contributor among `routes` (by source version). */
export function newestPerContributor(routes: Route[]): Route[] {
  const latest = new Map<string, Route>();
  for (const r of routes) {
    const prev = latest.get(r.contributorId);
    if (!prev || prev.sourceVersion < r.sourceVersion) latest.set(r.contributorId, r);
  }
  return [...latest.values()];
}

export type NormalizeOutcome =
  | { kind: 'changed'; observations: StockObservation[]; route: Route }
  | { kind: 'stale'; route: Route }
  | { kind: 'rejected'; reason: ReasonCode; message: string };

function keyText(v: unknown): string {
  if (v && typeof v === 'object' && 'unscaled' in v) return decimalToString(v as Decimal);
  if (v && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/**
 * Stable id of the source row: `supplier/table/k=v[,k=v]`. Key columns come from the mapping's table
 * config when given, else from the Debezium message key.
 */
export function contributorIdOf(supplierId: string, change: ChangeEvent, keyColumns?: string[]): string {
  let parts: string[];
  if (keyColumns) {
    const row = change.after ?? change.before ?? {};
    parts = keyColumns.map((c) => {
      const v = row[c] ?? change.key?.[c];
      if (v === undefined || v === null) throw new Rejection('missing_key', `key column "${c}" is missing from the change`);
      return `${c}=${keyText(v)}`;
    });
  } else {
    const key = change.key;
    if (!key || Object.keys(key).length === 0) {
      throw new Rejection('missing_key', `change on ${change.table} has no message key; configure source.tables[].key`);
    }
    parts = Object.entries(key).map(([k, v]) => `${k}=${keyText(v)}`);
  }
  return `${supplierId}/${change.table}/${parts.join(',')}`;
}

function observation(
  route: Route,
  op: 'UPSERT' | 'DELETE',
  bottles: number,
  change: ChangeEvent,
  nowMs: number,
): StockObservation {
  return {
    supplierId: route.supplierId,
    warehouseId: route.warehouseId,
    region: route.region,
    sku: route.sku,
    supplierSku: route.supplierSku,
    vintage: route.vintage,
    bottleSizeMl: route.bottleSizeMl,
    bottles,
    op,
    contributorId: route.contributorId,
    sourceVersion: change.sourceVersion,
    sourceTsMs: change.sourceTsMs,
    ingestTsMs: nowMs,
    traceId: `${route.supplierId}@${change.position}`,
  };
}

function tryPlace(mapping: CompiledMapping, row: Row | null): Placement | undefined {
  if (!row) return undefined;
  try {
    return mapping.locate(row);
  } catch {
    return undefined;
  }
}

/**
 * Turns one change of one source row into observations. Pure: `route` is the contributor's previous
 * route (or undefined), and the returned route replaces it.
 *
 * - A change at or below the route's version is stale and emits nothing.
 * - An upsert emits UPSERT at its (region, sku) and DELETE at the previous key when the row moved
 *   (previous key known from the route or from the before-image).
 * - A delete emits DELETE at every key the row may have been counted under, and leaves a deleted route.
 */
export function normalizeChange(
  change: ChangeEvent,
  mapping: CompiledMapping,
  contributorId: string,
  route: Route | undefined,
  nowMs: number,
): NormalizeOutcome {
  if (route && change.sourceVersion <= route.sourceVersion) return { kind: 'stale', route };
  const supplierId = mapping.supplier.id;
  // Explicit construction, not object spread/rest: this is the per-event hot path.
  const routeAt = (p: Omit<Placement, 'bottles'>, deleted: boolean): Route => ({
    contributorId,
    supplierId,
    sourceTable: change.table,
    region: p.region,
    sku: p.sku,
    supplierSku: p.supplierSku,
    warehouseId: p.warehouseId,
    vintage: p.vintage,
    bottleSizeMl: p.bottleSizeMl,
    sourceVersion: change.sourceVersion,
    deleted,
  });
  const previous: Array<Omit<Placement, 'bottles'>> = [];
  if (route && !route.deleted) previous.push(route);
  const beforePlacement = tryPlace(mapping, change.before);
  if (beforePlacement && !previous.some((p) => p.region === beforePlacement.region && p.sku === beforePlacement.sku)) {
    previous.push(beforePlacement);
  }

  if (change.op === 'd') {
    const observations = previous.map((p) => observation(routeAt(p, true), 'DELETE', 0, change, nowMs));
    const last = previous[0] ?? route ?? { supplierSku: '', sku: '', warehouseId: '', region: '', vintage: null, bottleSizeMl: 0 };
    return { kind: 'changed', observations, route: routeAt(last, true) };
  }
  if (change.op !== 'c' && change.op !== 'u' && change.op !== 'r') {
    return { kind: 'rejected', reason: 'unsupported_op', message: `op "${change.op}" is not a row change` };
  }
  if (!change.after) return { kind: 'rejected', reason: 'not_debezium_envelope', message: `op "${change.op}" without "after"` };
  let placement: Placement;
  try {
    placement = mapping.place(change.after);
  } catch (err) {
    if (err instanceof Rejection) return { kind: 'rejected', reason: err.reason, message: err.message };
    throw err;
  }
  const next = routeAt(placement, false);
  const observations: StockObservation[] = [];
  for (const p of previous) {
    if (p.region !== next.region || p.sku !== next.sku) observations.push(observation(routeAt(p, true), 'DELETE', 0, change, nowMs));
  }
  observations.push(observation(next, 'UPSERT', placement.bottles, change, nowMs));
  return { kind: 'changed', observations, route: next };
}

/**
 * A truncate removes every live contributor of the table: DELETE at each one's key, at the truncate's
 * version. Routes already at or past that version are left alone.
 */
export function normalizeTruncate(change: ChangeEvent, liveRoutes: Route[], nowMs: number): { observations: StockObservation[]; routes: Route[] } {
  const observations: StockObservation[] = [];
  const routes: Route[] = [];
  for (const r of liveRoutes) {
    if (r.deleted || change.sourceVersion <= r.sourceVersion) continue;
    const next: Route = { ...r, sourceVersion: change.sourceVersion, deleted: true };
    observations.push(observation(next, 'DELETE', 0, change, nowMs));
    routes.push(next);
  }
  return { observations, routes };
}
