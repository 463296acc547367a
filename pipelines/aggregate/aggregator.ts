import type { RegionalStock, StockObservation } from '../../schemas/records.js';

/**
 * One contributor's latest state under one (region, sku). Deleted entries are kept as tombstones with
 * their version, so that an older upsert delivered late cannot resurrect the row.
 */
export interface Contribution {
  region: string;
  sku: string;
  contributorId: string;
  supplierId: string;
  warehouseId: string;
  /** Bottle size of the contributor's bottles, ml (null: restored from before sizes were kept). */
  bottleSizeMl: number | null;
  bottles: number;
  sourceVersion: string;
  sourceTsMs: number;
  deleted: boolean;
  /** The key's version right after this contribution last changed (persisted; restores key versions). */
  keyVersion: number;
}

/**
 * One effective change of a total, as the history keeps it (`cellar.stock_history`): the key's version
 * after it, the total after it and by how much it moved, which contributor moved it and when (its source
 * time). Derived from the key's deterministic version, so a replay yields the same entries.
 */
export interface HistoryEntry {
  region: string;
  sku: string;
  version: number;
  bottles: number;
  delta: number;
  contributorId: string;
  supplierId: string;
  warehouseId: string;
  op: 'UPSERT' | 'DELETE';
  sourceTsMs: number;
}

/** What {@link RegionalAggregator.apply} did with an observation. */
export type ApplyOutcome = 'applied' | 'stale' | 'bottle_size_mismatch' | 'quantity_out_of_range';

interface KeyState {
  region: string;
  sku: string;
  /** Number of effective changes applied to this key: deterministic for a given input order. */
  version: number;
  /** The bottle size every live contributor of this key has (the last one seen when none is live). */
  bottleSizeMl: number | null;
  bottles: number;
  contributors: number;
  sourceTsMs: number;
  entries: Map<string, Contribution>;
  /**
   * Whether `entries` holds every contribution of the key. A key loaded from its summary (a key with many
   * contributors: {@link KeySummary}) holds only those its changes touched; the totals above are the key's
   * all the same, and a contributor not held is loaded before it is applied ({@link RegionalAggregator.missing}).
   */
  complete: boolean;
  /** When the key was last used (the aggregator's clock): the least recently used are evicted first. */
  touched: number;
}

/** A (region, sku) key. */
export interface StockKey {
  region: string;
  sku: string;
}

/** A key as one string (a Map key): region and SKU apart by a character neither may hold. */
export const stockKeyId = (k: StockKey): string => `${k.region}\u0000${k.sku}`;

/** A key and the contributors a batch changes at it: what must be loaded before the batch is applied. */
export interface KeyWant extends StockKey {
  contributors: string[];
}

/**
 * A key's totals over all its persisted contributions (as {@link RegionalAggregator.restore} would compute
 * them from every row), for a key loaded without all its rows: `entries` rows in all, tombstones included.
 */
export interface KeySummary extends StockKey {
  version: number;
  bottles: number;
  contributors: number;
  entries: number;
  sourceTsMs: number;
  bottleSizeMl: number | null;
  /**
   * The contributors whose rows were read with it: the rows loaded are those of them that have one, and one
   * of them without a row has none. Any other contributor of the key is unknown until read.
   */
  read: string[];
}

/** Persisted state of some keys: their rows, and the summaries of the keys whose rows are only some of theirs. */
export interface KeyLoad {
  rows: Contribution[];
  partial: KeySummary[];
}

/**
 * Per-(region, sku) totals over versioned contributors. Pure and synchronous: the runtimes feed it
 * observations in partition order and persist what {@link RegionalAggregator.drain} returns.
 *
 * Invariants:
 * - a contributor's latest state wins by `sourceVersion`; equal or older observations change nothing;
 * - `bottles` and `contributors` of a key are always the sums over its live entries;
 * - a key's `version` grows by one per effective change, so the same input prefix gives the same
 *   version and the same totals, whatever the batch boundaries (replays emit identical records).
 */
export class RegionalAggregator {
  /** region → sku → state; nested so the hot path never builds a `region|sku` string. */
  private readonly keys = new Map<string, Map<string, KeyState>>();
  private readonly dirtyKeys = new Set<KeyState>();
  private readonly dirtyEntries = new Set<Contribution>();
  private history: HistoryEntry[] = [];
  private clock = 0;

  /** `history`: record every effective change for {@link drain} (off: none is built). Default on. */
  constructor(private readonly opts: { history?: boolean } = {}) {}
  private entryCount = 0;
  private evictionCount = 0;

  /**
   * How many times {@link RegionalAggregator.evict} dropped keys: state read from Postgres while this
   * stayed the same is current for every key that was not held when it was read (see ReadAhead).
   */
  get evictions(): number {
    return this.evictionCount;
  }

  /** Number of (key, contributor) entries held, tombstones included. */
  get size(): number {
    return this.entryCount;
  }

  /** Whether the key's state is in memory (held): a key not held must be loaded before it is used, or is new. */
  holds(region: string, sku: string): boolean {
    return this.keys.get(region)?.has(sku) ?? false;
  }

  /** The distinct keys of `items` whose state is not held, each with the contributors `items` has at it. */
  absent(items: Iterable<StockKey & { contributorId: string }>): KeyWant[] {
    const out = new Map<string, KeyWant>();
    for (const { region, sku, contributorId } of items) {
      if (this.holds(region, sku)) continue;
      const id = stockKeyId({ region, sku });
      const want = out.get(id);
      if (want) want.contributors.push(contributorId);
      else out.set(id, { region, sku, contributors: [contributorId] });
    }
    return [...out.values()];
  }

  /**
   * The contributors of `items` at held keys that hold only some of theirs ({@link KeySummary}) and not
   * these: their rows must be read ({@link adoptEntries}) before `items` are applied.
   */
  missing(items: Iterable<StockKey & { contributorId: string }>): KeyWant[] {
    const out = new Map<KeyState, KeyWant>();
    for (const { region, sku, contributorId } of items) {
      const k = this.keys.get(region)?.get(sku);
      if (!k || k.complete || k.entries.has(contributorId)) continue;
      const want = out.get(k);
      if (!want) out.set(k, { region, sku, contributors: [contributorId] });
      else if (!want.contributors.includes(contributorId)) want.contributors.push(contributorId);
    }
    return [...out.values()];
  }

  /**
   * Takes the persisted state of `keys` (their contributions, `rows`; none for a key never seen; for the keys
   * of `partial`, the key's summary and the rows of the contributors it says were read): restores them and
   * marks every one held, so it is not loaded again while it stays in memory. Contributors wanted at a
   * partial key but not read with it (a read ahead of other changes) stay {@link missing}.
   */
  adopt(keys: StockKey[], rows: Iterable<Contribution>, partial: KeySummary[] = []): void {
    const summaries = new Map(partial.map((p) => [stockKeyId(p), p]));
    const whole: Contribution[] = [];
    const some: Contribution[] = [];
    for (const c of rows) (summaries.has(stockKeyId(c)) ? some : whole).push(c);
    this.restore(whole);
    for (const p of summaries.values()) {
      const k = this.keyState(p.region, p.sku);
      Object.assign(k, { version: p.version, bottles: p.bottles, contributors: p.contributors, sourceTsMs: p.sourceTsMs, bottleSizeMl: p.bottleSizeMl, complete: false });
    }
    for (const k of keys) this.keyState(k.region, k.sku);
    this.adoptEntries(partial.map((p) => ({ region: p.region, sku: p.sku, contributors: p.read })), some);
  }

  /**
   * Adds the rows read for `wants` at held keys loaded from their summary, as they are (the key's totals
   * already count them); a contributor held already keeps what it has (it can only be newer). `wants` must
   * be exactly what was read: a contributor of it without a row has none, and is held as a tombstone older
   * than any version, so that it is not read again and its first change applies.
   */
  adoptEntries(wants: KeyWant[], rows: Iterable<Contribution>): void {
    const add = (k: KeyState, c: Contribution) => {
      k.entries.set(c.contributorId, c);
      this.entryCount++;
    };
    for (const c of rows) {
      const k = this.keys.get(c.region)?.get(c.sku);
      if (k && !k.complete && !k.entries.has(c.contributorId)) add(k, { ...c });
    }
    for (const w of wants) {
      const k = this.keys.get(w.region)?.get(w.sku);
      if (!k || k.complete) continue;
      for (const id of w.contributors) {
        if (k.entries.has(id)) continue;
        add(k, { region: k.region, sku: k.sku, contributorId: id, supplierId: '', warehouseId: '', bottleSizeMl: null, bottles: 0, sourceVersion: '', sourceTsMs: 0, deleted: true, keyVersion: 0 });
      }
    }
  }

  /**
   * Keeps memory bounded: when more than `maxEntries` contributions are held, drops the least recently
   * used keys that have no undrained change until 80 % of `maxEntries` remain (their state lives in
   * Postgres and is loaded again when used). The caller evicts only when every drained change is
   * persisted, so a key loaded again reads what this aggregator last had. Returns the keys dropped.
   */
  evict(maxEntries: number): number {
    if (this.entryCount <= maxEntries) return 0;
    const candidates: KeyState[] = [];
    for (const region of this.keys.values()) for (const k of region.values()) if (!this.dirtyKeys.has(k)) candidates.push(k);
    candidates.sort((a, b) => a.touched - b.touched);
    const goal = Math.floor(maxEntries * 0.8);
    let dropped = 0;
    for (const k of candidates) {
      if (this.entryCount <= goal) break;
      const byRegion = this.keys.get(k.region)!;
      byRegion.delete(k.sku);
      if (byRegion.size === 0) this.keys.delete(k.region);
      this.entryCount -= k.entries.size;
      dropped++;
    }
    if (dropped) this.evictionCount++;
    return dropped;
  }

  /** Loads persisted contributions (restore); does not mark anything dirty. */
  restore(rows: Iterable<Contribution>): void {
    // A key with no live contributor keeps the size of its most recently changed entry.
    const sizedAt = new Map<KeyState, number>();
    for (const c of rows) {
      const k = this.keyState(c.region, c.sku);
      const prev = k.entries.get(c.contributorId);
      if (prev && !prev.deleted) {
        k.bottles -= prev.bottles;
        k.contributors -= 1;
      }
      if (!prev) this.entryCount++;
      k.entries.set(c.contributorId, { ...c });
      if (!c.deleted) {
        k.bottles += c.bottles;
        k.contributors += 1;
        if (c.bottleSizeMl !== null) k.bottleSizeMl = c.bottleSizeMl;
      } else if (c.bottleSizeMl !== null && k.contributors === 0 && c.keyVersion > (sizedAt.get(k) ?? -1)) {
        k.bottleSizeMl = c.bottleSizeMl;
        sizedAt.set(k, c.keyVersion);
      }
      k.version = Math.max(k.version, c.keyVersion);
      k.sourceTsMs = Math.max(k.sourceTsMs, c.sourceTsMs);
    }
  }

  private keyState(region: string, sku: string): KeyState {
    let byRegion = this.keys.get(region);
    if (!byRegion) {
      byRegion = new Map();
      this.keys.set(region, byRegion);
    }
    let k = byRegion.get(sku);
    if (!k) {
      k = { region, sku, version: 0, bottleSizeMl: null, bottles: 0, contributors: 0, sourceTsMs: 0, entries: new Map(), complete: true, touched: this.clock };
      byRegion.set(sku, k);
    }
    return k;
  }

  /**
   * Applies one observation: `applied` when it changed the key's state, `stale` when it is not newer than
   * what the contributor already has, `bottle_size_mismatch` (nothing changes) for an upsert whose bottle
   * size differs from the size of the key's other live contributors: two sizes are never summed;
   * `quantity_out_of_range` (nothing changes) when the total would leave ±(2^53 − 1), where it stops being exact.
   */
  apply(o: StockObservation): ApplyOutcome {
    const k = this.keyState(o.region, o.sku);
    k.touched = ++this.clock;
    const prev = k.entries.get(o.contributorId);
    if (!prev && !k.complete) throw new Error(`${o.region}|${o.sku} holds only some contributors and not ${o.contributorId}: load it first (RegionalAggregator.missing)`);
    if (prev && o.sourceVersion <= prev.sourceVersion) return 'stale';
    const deleted = o.op === 'DELETE';
    if (!deleted && k.bottleSizeMl !== null && o.bottleSizeMl !== k.bottleSizeMl && k.contributors - (prev && !prev.deleted ? 1 : 0) > 0) {
      return 'bottle_size_mismatch';
    }
    const before = k.bottles;
    const next = k.bottles - (prev && !prev.deleted ? prev.bottles : 0) + (deleted ? 0 : o.bottles);
    // Totals are exact integers or refused: past 2^53 a JavaScript number (and an Avro long decoded to one) rounds.
    if (!Number.isSafeInteger(next)) return 'quantity_out_of_range';
    if (prev && !prev.deleted) {
      k.bottles -= prev.bottles;
      k.contributors -= 1;
    }
    if (!deleted) {
      k.bottles += o.bottles;
      k.contributors += 1;
      k.bottleSizeMl = o.bottleSizeMl;
    } else if (k.contributors === 0 && o.bottleSizeMl !== null) {
      // As restore() has it: a key with no live contributor keeps the size of its most recently changed entry.
      k.bottleSizeMl = o.bottleSizeMl;
    }
    k.version += 1;
    k.sourceTsMs = Math.max(k.sourceTsMs, o.sourceTsMs);
    if (this.opts.history !== false) this.history.push({
      region: o.region, sku: o.sku, version: k.version, bottles: k.bottles, delta: k.bottles - before, contributorId: o.contributorId,
      supplierId: o.supplierId, warehouseId: o.warehouseId, op: deleted ? 'DELETE' : 'UPSERT', sourceTsMs: o.sourceTsMs,
    });
    if (prev) {
      // Updated in place (drain hands out copies): an entry lives as long as its key is held, and a new
      // object per change would outlive the young generation and become old garbage at the next change.
      // Equal strings keep the instance already held, for the same reason.
      if (prev.supplierId !== o.supplierId) prev.supplierId = o.supplierId;
      if (prev.warehouseId !== o.warehouseId) prev.warehouseId = o.warehouseId;
      prev.bottleSizeMl = o.bottleSizeMl;
      prev.bottles = deleted ? 0 : o.bottles;
      prev.sourceVersion = o.sourceVersion;
      prev.sourceTsMs = o.sourceTsMs;
      prev.deleted = deleted;
      prev.keyVersion = k.version;
      this.dirtyEntries.add(prev);
    } else {
      const entry: Contribution = {
        region: k.region,
        sku: k.sku,
        contributorId: o.contributorId,
        supplierId: o.supplierId,
        warehouseId: o.warehouseId,
        bottleSizeMl: o.bottleSizeMl,
        bottles: deleted ? 0 : o.bottles,
        sourceVersion: o.sourceVersion,
        sourceTsMs: o.sourceTsMs,
        deleted,
        keyVersion: k.version,
      };
      this.entryCount++;
      k.entries.set(o.contributorId, entry);
      this.dirtyEntries.add(entry);
    }
    this.dirtyKeys.add(k);
    return 'applied';
  }

  /** The bottle size of a key's live contributors, or undefined when it has none. */
  sizeOf(region: string, sku: string): number | undefined {
    const k = this.keys.get(region)?.get(sku);
    return k && k.contributors > 0 && k.bottleSizeMl !== null ? k.bottleSizeMl : undefined;
  }

  /**
   * Why {@link RegionalAggregator.apply} refused `o`, in an on-call engineer's words. Call it right after the
   * refusal: a refusal changes nothing, so the key still holds the state `o` was refused against.
   */
  refusalMessage(o: StockObservation, outcome: 'bottle_size_mismatch' | 'quantity_out_of_range'): string {
    if (outcome === 'bottle_size_mismatch') {
      return `${o.contributorId} is ${o.bottleSizeMl} ml but the live contributors of ${o.region}|${o.sku} are ${this.sizeOf(o.region, o.sku) ?? '?'} ml: never summed (the catalog's size of ${o.sku} changed while it had stock; its rows are counted again when they change or a reconciliation repairs them)`;
    }
    return `${o.contributorId}: ${o.bottles} bottles would take the total of ${o.region}|${o.sku} (now ${this.get(o.region, o.sku)?.bottles ?? 0}) beyond ±${Number.MAX_SAFE_INTEGER}, where it can no longer be exact: refused`;
  }

  /** Current total of a key, or undefined if it was never seen. */
  get(region: string, sku: string): RegionalStock | undefined {
    const k = this.keys.get(region)?.get(sku);
    return k ? this.record(k, k.sourceTsMs) : undefined;
  }

  private record(k: KeyState, nowMs: number): RegionalStock {
    return { region: k.region, sku: k.sku, bottleSizeMl: k.bottleSizeMl, bottles: k.bottles, contributors: k.contributors, version: k.version, sourceTsMs: k.sourceTsMs, updatedTsMs: nowMs };
  }

  /**
   * Returns the totals of keys changed since the last drain (one record per key, latest version), the
   * changed contributions to persist and every effective change in order (the history), and clears them.
   */
  drain(nowMs: number): { totals: RegionalStock[]; contributions: Contribution[]; history: HistoryEntry[] } {
    const totals = [...this.dirtyKeys].map((k) => this.record(k, nowMs));
    // Copies: the entries held are updated in place by later changes, while these are being written.
    const contributions = Array.from(this.dirtyEntries, (e) => ({ ...e }));
    const history = this.history;
    this.dirtyKeys.clear();
    this.dirtyEntries.clear();
    this.history = [];
    return { totals, contributions, history };
  }

  /** All current totals (for snapshots and tests). */
  totals(): RegionalStock[] {
    const out: RegionalStock[] = [];
    for (const region of this.keys.values()) for (const k of region.values()) out.push(this.record(k, k.sourceTsMs));
    return out;
  }
}
