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
  if (typeof v !== 'object' || v === null) return String(v);
  if ('unscaled' in v) return decimalToString(v as Decimal);
  return JSON.stringify(v);
}

/**
 * Ids of rows with a one-column key (a number or text) seen lately, per supplier, table and column. A row
 * changes again and again: its id is then the same string each time, not one built per event (and each
 * Map holding it hashes it once). Bounded: past 65,536 ids (a few MB) it forgets them all and starts over.
 */
class RecentIds {
  private static readonly LIMIT = 65_536;
  private readonly byColumn = new Map<string, Map<unknown, string>>();
  private count = 0;
  private supplierId = '';
  private table = '';
  private column = '';
  private prefix = '';
  private ids = new Map<unknown, string>();

  idOf(supplierId: string, table: string, column: string, v: number | string): string {
    if (supplierId !== this.supplierId || table !== this.table || column !== this.column) {
      this.prefix = `${supplierId}/${table}/${column}=`;
      let ids = this.byColumn.get(this.prefix);
      if (!ids) this.byColumn.set(this.prefix, (ids = new Map()));
      this.ids = ids;
      this.supplierId = supplierId;
      this.table = table;
      this.column = column;
    }
    let id = this.ids.get(v);
    if (id === undefined) {
      if (++this.count > RecentIds.LIMIT) {
        this.byColumn.clear();
        this.byColumn.set(this.prefix, (this.ids = new Map()));
        this.count = 1;
      }
      id = this.prefix + String(v);
      this.ids.set(v, id);
    }
    return id;
  }
}

const recentIds = new RecentIds();

/**
 * Stable id of the source row: `supplier/table/k=v[,k=v]`. Key columns come from the mapping's table
 * config when given, else from the Debezium message key.
 */
export function contributorIdOf(supplierId: string, change: Pick<ChangeEvent, 'table' | 'after' | 'before' | 'key'>, keyColumns?: string[]): string {
  if (keyColumns) {
    const row = change.after ?? change.before ?? {};
    let id = `${supplierId}/${change.table}/`;
    for (let i = 0; i < keyColumns.length; i++) {
      const c = keyColumns[i]!;
      const v = row[c] ?? change.key?.[c];
      if (v === undefined || v === null) throw new Rejection('missing_key', `key column "${c}" is missing from the change`);
      if (keyColumns.length === 1 && (typeof v === 'number' || typeof v === 'string')) return recentIds.idOf(supplierId, change.table, c, v);
      id += `${i ? ',' : ''}${c}=${keyText(v)}`;
    }
    return id;
  }
  const key = change.key;
  const names = key ? Object.keys(key) : [];
  if (!key || names.length === 0) {
    throw new Rejection('missing_key', `change on ${change.table} has no message key; configure source.tables[].key`);
  }
  const first = key[names[0]!];
  if (names.length === 1 && (typeof first === 'number' || typeof first === 'string')) return recentIds.idOf(supplierId, change.table, names[0]!, first);
  let id = `${supplierId}/${change.table}/`;
  for (let i = 0; i < names.length; i++) id += `${i ? ',' : ''}${names[i]}=${keyText(key[names[i]!])}`;
  return id;
}

type Where = Omit<Placement, 'bottles'>;

/** Nowhere: the route a delete leaves when the row was never placed. */
const NOWHERE: Where = { supplierSku: '', sku: '', warehouseId: '', region: '', vintage: null, bottleSizeMl: 0 };

function routeAt(p: Where, contributorId: string, supplierId: string, change: ChangeEvent, deleted: boolean): Route {
  return {
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
  };
}

/** The observation of `change` at `p`, for contributor `contributorId` of `supplierId`. */
function observation(
  p: Where,
  supplierId: string,
  contributorId: string,
  op: 'UPSERT' | 'DELETE',
  bottles: number,
  change: ChangeEvent,
  nowMs: number,
  traceId: string,
): StockObservation {
  return {
    supplierId,
    warehouseId: p.warehouseId,
    region: p.region,
    sku: p.sku,
    supplierSku: p.supplierSku,
    vintage: p.vintage,
    bottleSizeMl: p.bottleSizeMl,
    bottles,
    op,
    contributorId,
    sourceVersion: change.sourceVersion,
    sourceTsMs: change.sourceTsMs,
    ingestTsMs: nowMs,
    traceId,
  };
}

/** The defined ones of `a, b, c`, in order, in an array of that length (`[]` and push would allocate room for 16). */
function list<T>(a: T | undefined, b: T | undefined, c?: T): T[] {
  if (a === undefined) return b === undefined ? (c === undefined ? [] : [c]) : c === undefined ? [b] : [b, c];
  return b === undefined ? (c === undefined ? [a] : [a, c]) : c === undefined ? [a, b] : [a, b, c];
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
  const traceId = `${supplierId}@${change.position}`;
  // Where the row may have been counted before: its live route, then its before-image when elsewhere.
  const atRoute = route && !route.deleted ? route : undefined;
  const placedBefore = tryPlace(mapping, change.before);
  const atBefore = placedBefore && !(atRoute && atRoute.region === placedBefore.region && atRoute.sku === placedBefore.sku) ? placedBefore : undefined;

  if (change.op === 'd') {
    const fromRoute = atRoute && observation(atRoute, supplierId, contributorId, 'DELETE', 0, change, nowMs, traceId);
    const fromBefore = atBefore && observation(atBefore, supplierId, contributorId, 'DELETE', 0, change, nowMs, traceId);
    return { kind: 'changed', observations: list(fromRoute, fromBefore), route: routeAt(atRoute ?? atBefore ?? route ?? NOWHERE, contributorId, supplierId, change, true) };
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
  // DELETE where the row was counted under another (region, sku), then UPSERT where it is now.
  const fromRoute = atRoute && (atRoute.region !== placement.region || atRoute.sku !== placement.sku) ? observation(atRoute, supplierId, contributorId, 'DELETE', 0, change, nowMs, traceId) : undefined;
  const fromBefore = atBefore && (atBefore.region !== placement.region || atBefore.sku !== placement.sku) ? observation(atBefore, supplierId, contributorId, 'DELETE', 0, change, nowMs, traceId) : undefined;
  const upsert = observation(placement, supplierId, contributorId, 'UPSERT', placement.bottles, change, nowMs, traceId);
  return { kind: 'changed', observations: list(fromRoute, fromBefore, upsert), route: routeAt(placement, contributorId, supplierId, change, false) };
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
    observations.push(observation(next, next.supplierId, next.contributorId, 'DELETE', 0, change, nowMs, `${next.supplierId}@${change.position}`));
    routes.push(next);
  }
  return { observations, routes };
}
