import type pg from 'pg';
import { query } from '../core/pg.js';
import { HeldStore } from './held.js';
import { newestPerContributor, type Route } from '../normalize/normalize.js';

interface RouteRow {
  contributor_id: string;
  supplier_id: string;
  source_table: string;
  region: string;
  sku: string;
  supplier_sku: string;
  warehouse_id: string;
  vintage: number | null;
  bottle_size_ml: number;
  source_version: string;
  deleted: boolean;
}

const COLS = 'contributor_id, supplier_id, source_table, region, sku, supplier_sku, warehouse_id, vintage, bottle_size_ml, source_version, deleted';
/** {@link COLS} of `cellar.contributor_routes r`, for queries that join it. */
const R_COLS = COLS.split(', ').map((c) => `r.${c}`).join(', ');

function toRoute(r: RouteRow): Route {
  return {
    contributorId: r.contributor_id,
    supplierId: r.supplier_id,
    sourceTable: r.source_table,
    region: r.region,
    sku: r.sku,
    supplierSku: r.supplier_sku,
    warehouseId: r.warehouse_id,
    vintage: r.vintage,
    bottleSizeMl: r.bottle_size_ml,
    sourceVersion: r.source_version,
    deleted: r.deleted,
  };
}

/**
 * Durable routes of the normalizer in `cellar.contributor_routes`. Saved after the observations they
 * produced are acknowledged by Kafka, and before input offsets are committed; a save never moves a
 * route to an older source version.
 */
export class RouteStore {
  /** Contributors held at their last valid state; saved with the routes of the same batch. */
  readonly held: HeldStore;

  constructor(private readonly pool: pg.Pool) {
    this.held = new HeldStore(pool);
  }

  /** Routes of the given contributors, one query. */
  async get(ids: string[]): Promise<Map<string, Route>> {
    const out = new Map<string, Route>();
    if (ids.length === 0) return out;
    const { rows } = await query<RouteRow>(this.pool, 'reading contributor routes', `SELECT ${COLS} FROM cellar.contributor_routes WHERE contributor_id = ANY($1::text[])`, [ids]);
    for (const r of rows) out.set(r.contributor_id, toRoute(r));
    return out;
  }

  /** The newest truncate recorded for a table: its source version and commit time, or undefined. */
  async truncatedAt(supplierId: string, table: string): Promise<{ version: string; tsMs: number } | undefined> {
    const { rows } = await query<{ source_version: string; ms: number | null }>(
      this.pool,
      'reading the table\'s last truncate',
      'SELECT source_version, extract(epoch from source_ts) * 1000 AS ms FROM cellar.table_truncates WHERE supplier_id = $1 AND source_table = $2',
      [supplierId, table],
    );
    return rows[0] && { version: rows[0].source_version, tsMs: Math.round(Number(rows[0].ms ?? 0)) };
  }

  /** Records a truncate (committed at once, before its rows are looked up); never moves back to an older one. */
  async recordTruncate(supplierId: string, table: string, version: string, tsMs: number): Promise<void> {
    await query(
      this.pool,
      'recording a truncate',
      `INSERT INTO cellar.table_truncates AS t (supplier_id, source_table, source_version, source_ts) VALUES ($1, $2, $3, to_timestamp($4 / 1000.0))
       ON CONFLICT (supplier_id, source_table) DO UPDATE SET source_version = excluded.source_version, source_ts = excluded.source_ts, updated_at = now()
       WHERE t.source_version < excluded.source_version`,
      [supplierId, table, version, tsMs],
    );
  }

  /**
   * The live routes of a table that a truncate at version `before` removes: those whose row Cellar saw last
   * before it, by the route's version and by the contribution's (the embedded runtime writes a route only
   * when its placement changes, the contribution at every change). Only those are read: after a snapshot
   * (which ends with a truncate just below its rows) that is none of the rows it read, so memory does not
   * grow with the table. A truncate by the supplier still reads every row of the table once.
   */
  async liveOfTable(supplierId: string, table: string, before: string): Promise<Route[]> {
    const { rows } = await query<RouteRow>(
      this.pool,
      'reading routes of table',
      `SELECT ${R_COLS} FROM cellar.contributor_routes r
        WHERE r.supplier_id = $1 AND r.source_table = $2 AND NOT r.deleted AND r.source_version COLLATE "C" < $3
          AND NOT EXISTS (SELECT 1 FROM cellar.stock_contributions c
                           WHERE c.contributor_id = r.contributor_id AND NOT c.deleted AND c.source_version COLLATE "C" >= $3)`,
      [supplierId, table, before],
    );
    return rows.map(toRoute);
  }

  /** Upserts routes (latest per contributor wins), one statement; `tx` runs it inside a caller's transaction. */
  async save(routes: Route[], tx?: pg.PoolClient): Promise<void> {
    if (routes.length === 0) return;
    const list = newestPerContributor(routes).sort((a, b) => (a.contributorId < b.contributorId ? -1 : 1));
    const col = <K extends keyof Route>(k: K) => list.map((r) => r[k]);
    await query(
      tx ?? this.pool,
      'saving contributor routes',
      `INSERT INTO cellar.contributor_routes AS t (${COLS})
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                            $8::integer[], $9::integer[], $10::text[], $11::boolean[])
       ON CONFLICT (contributor_id) DO UPDATE SET
         region = excluded.region, sku = excluded.sku, supplier_sku = excluded.supplier_sku,
         warehouse_id = excluded.warehouse_id, vintage = excluded.vintage, bottle_size_ml = excluded.bottle_size_ml,
         source_version = excluded.source_version, deleted = excluded.deleted, updated_at = now()
       WHERE t.source_version < excluded.source_version`,
      [
        col('contributorId'), col('supplierId'), col('sourceTable'), col('region'), col('sku'), col('supplierSku'),
        col('warehouseId'), col('vintage'), col('bottleSizeMl'), col('sourceVersion'), col('deleted'),
      ],
    );
  }
}

/**
 * A RouteStore for a runtime that is the only writer of its routes (the embedded runtime): routes read or
 * saved are kept in memory (an absence too), so each batch reads from Postgres only contributors it has
 * not seen since start. {@link CachedRouteStore.remember} takes a group's routes once it is prepared, before
 * its commit (at most one group commits at a time). Holds at most `maxEntries` (then starts over, keeping
 * the last two groups' routes), about 300 bytes each.
 */
export class CachedRouteStore extends RouteStore {
  private readonly cache = new Map<string, Route | null>();
  /**
   * The routes of the last two {@link CachedRouteStore.remember} calls: a group's routes are remembered when
   * it is prepared and written by its commit, which runs while the next group is prepared, so these may not
   * be in Postgres yet. They survive the cache starting over: read from Postgres instead, a row moved by the
   * group in flight would look unmoved, and its delete in the next group would remove it from the old key.
   */
  private recent: Route[][] = [];
  /** Times the cache started over: a read ahead that began before one must not fill it (see prefetch). */
  private startOvers = 0;
  /** When routes were last read from Postgres (ms, Date.now()), by a group or ahead of one. */
  lastMissAt = 0;

  /** Drops every cached route but the recent ones (bounded memory). */
  private startOver(): void {
    this.startOvers++;
    this.cache.clear();
    for (const list of this.recent) this.put(list);
  }

  /**
   * Keeps the newest route of each contributor. The cache holds copies of its own and updates them in place
   * (equal strings keep the instance held): a route lives as long as it is cached, and a new object per
   * change would outlive the young generation and become old garbage at the row's next change.
   */
  private put(routes: Route[]): void {
    for (const r of routes) {
      const prev = this.cache.get(r.contributorId);
      if (prev === r || (prev && prev.sourceVersion >= r.sourceVersion)) continue;
      if (!prev) {
        this.cache.set(r.contributorId, { ...r });
        continue;
      }
      if (prev.supplierId !== r.supplierId) prev.supplierId = r.supplierId;
      if (prev.sourceTable !== r.sourceTable) prev.sourceTable = r.sourceTable;
      if (prev.region !== r.region) prev.region = r.region;
      if (prev.sku !== r.sku) prev.sku = r.sku;
      if (prev.supplierSku !== r.supplierSku) prev.supplierSku = r.supplierSku;
      if (prev.warehouseId !== r.warehouseId) prev.warehouseId = r.warehouseId;
      prev.vintage = r.vintage;
      prev.bottleSizeMl = r.bottleSizeMl;
      prev.sourceVersion = r.sourceVersion;
      prev.deleted = r.deleted;
    }
  }

  constructor(pool: pg.Pool, private readonly maxEntries = 2_000_000) {
    super(pool);
  }

  /** The cached routes of `ids`, and the ids the cache knows nothing of. */
  private cached(ids: Iterable<string>): { out: Map<string, Route>; missing: string[] } {
    const out = new Map<string, Route>();
    const missing: string[] = [];
    for (const id of ids) {
      const r = this.cache.get(id);
      if (r) out.set(id, r);
      else if (r === undefined) missing.push(id);
    }
    return { out, missing };
  }

  override async get(ids: string[]): Promise<Map<string, Route>> {
    const { out, missing } = this.cached(ids);
    if (missing.length) {
      this.lastMissAt = Date.now();
      const found = await super.get(missing);
      if (this.cache.size + missing.length > this.maxEntries) this.startOver();
      this.keep(missing, found, out);
    }
    return out;
  }

  /**
   * Keeps what Postgres returned for `missing` (an absence too) and adds their routes to `out`; a route
   * remembered meanwhile, or kept across a start-over, is newer than what Postgres had and wins.
   */
  private keep(missing: string[], found: Map<string, Route>, out: Map<string, Route>): void {
    for (const id of missing) {
      const known = this.cache.get(id);
      const r = known ?? found.get(id);
      if (!known) this.cache.set(id, r ?? null);
      if (r) out.set(id, r);
    }
  }

  /**
   * Reads ahead of a group the routes of `ids` not in memory, and keeps them as {@link get} would; returns
   * the routes of `ids` known afterwards. Runs while earlier groups are prepared and committed, so what
   * Postgres returns may predate a group in flight: it is kept only where nothing was remembered meanwhile
   * (a remembered route is newer), and only when the cache did not start over since the read began (the
   * start-over may have dropped a route of a group whose commit had not landed when Postgres was read). A
   * full cache is not filled: filling it would start it over.
   */
  async prefetch(ids: Iterable<string>): Promise<Map<string, Route>> {
    const { out, missing } = this.cached(ids);
    if (!missing.length || this.cache.size + missing.length > this.maxEntries) return out;
    const startOvers = this.startOvers;
    this.lastMissAt = Date.now();
    const found = await super.get(missing);
    if (startOvers !== this.startOvers || this.cache.size + missing.length > this.maxEntries) return out;
    this.keep(missing, found, out);
    return out;
  }

  /**
   * The routes of `routes` (newest per contributor) whose placement differs from what is remembered: new
   * contributors, moves, deletes. A change of quantity alone keeps the placement, so its route need not be
   * written: only its version moved, and the aggregator's per-contribution version (written in the same
   * transaction) already keeps an older change from applying after a restart. Call before {@link remember}.
   */
  placementChanges(routes: Route[]): Route[] {
    return newestPerContributor(routes).filter((r) => {
      const was = this.cache.get(r.contributorId);
      return !was || was.deleted !== r.deleted || was.region !== r.region || was.sku !== r.sku || was.warehouseId !== r.warehouseId ||
        was.supplierSku !== r.supplierSku || was.vintage !== r.vintage || was.bottleSizeMl !== r.bottleSizeMl || was.sourceTable !== r.sourceTable;
    });
  }

  /**
   * Records the routes a group placed (the newest per contributor wins), as soon as it is prepared: the
   * next group, prepared while this one commits, must see them.
   */
  remember(routes: Route[]): void {
    if (this.cache.size + routes.length > this.maxEntries) this.startOver();
    this.put(routes);
    this.recent.push(routes);
    if (this.recent.length > 2) this.recent.shift();
  }
}
