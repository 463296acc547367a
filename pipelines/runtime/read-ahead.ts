import { SourceChange } from '../../connectors/source-change.js';
import { stockKeyId, type Contribution, type KeyLoad, type KeySummary, type KeyWant, type RegionalAggregator } from '../aggregate/aggregator.js';
import type { Logger } from '../core/logger.js';
import { contributorIdOf } from '../normalize/normalize.js';
import type { ContributionStore } from '../state/contributions.js';
import type { CachedRouteStore } from '../state/routes.js';
import { EMBEDDED_PARTITION, type Pending } from './embedded-group.js';

/** Reads ahead only while groups read from Postgres (ms since the last read): when everything is in memory it would only cost CPU. */
const ACTIVE_FOR_MS = 5_000;

/**
 * How long a group waits for a read ahead of its own batches (ms). Longer, it reads for itself: a read ahead
 * stuck on a connection that died silently (found only by TCP keepalive) must not hold the commits up.
 */
const WAIT_FOR_READ_MS = 1_000;

/** Batches queued for reading ahead at most; older ones are dropped (their groups read for themselves). */
const MAX_QUEUED = 1_000;

/**
 * Reads from Postgres, while earlier groups are prepared and committed, what the next group will read:
 * the routes of the rows its changes touch, the state of the keys those rows are counted at that the
 * aggregator does not hold, and the rows of contributors at held keys loaded from their summary.
 * With more contributors than memory holds (CELLAR_STATE_CACHE_CONTRIBUTORS) preparing a group is mostly
 * those reads, one after the other; read ahead, they overlap the commit in flight.
 *
 * Nothing read ahead may be older than what a group would read itself:
 * - routes go through {@link CachedRouteStore.prefetch} (kept only where nothing newer was remembered);
 * - contributions are read only for keys the aggregator does not hold at that moment, and used only while
 *   it has evicted nothing since. A key not held has no change in flight (keys are held from the group
 *   that changes them until an eviction, which waits for every commit), so Postgres has its latest state;
 *   a key loaded by a group after the read is held when the rows would be used, so they are not;
 * - a contributor's row at a held key is read only while the key does not hold it, and used on the same
 *   terms: a contributor a key does not hold has had no change since the key was loaded, and one a group
 *   loads or changes meanwhile is held, so the row read ahead is not taken ({@link RegionalAggregator.adoptEntries}).
 * A read ahead that fails is forgotten: the group reads for itself.
 */
export class ReadAhead {
  private readonly queue: Pending[] = [];
  private readonly taken = new WeakSet<Pending>();
  private running: Promise<void> | undefined;
  /** The batches being read now, and the read. */
  private current: { items: Set<Pending>; done: Promise<void> } | undefined;
  /**
   * What was read ahead, by key: its contributions (none: a key never seen) and, for a key read from its
   * summary, the summary; valid while `stamp` is the aggregator's evictions.
   */
  private readonly rows = new Map<string, { rows: Contribution[]; summary?: KeySummary }>();
  /** Rows read ahead of contributors at held keys loaded from their summary, by key and contributor (null: none), valid as `rows`. */
  private readonly entries = new Map<string, Map<string, Contribution | null>>();
  private stamp = -1;
  private lastKeyLoadAt = 0;

  constructor(private readonly deps: {
    routes: CachedRouteStore;
    contributions: ContributionStore;
    aggregator: RegionalAggregator;
    log: Logger;
    /** Keys kept read ahead at most (then dropped), default 100,000. */
    maxKeys?: number;
    /** Told, each time a group loads keys it does not hold, how many it took read ahead and how many it still had to read. */
    onTake?: (used: number, missed: number) => void;
  }) {}

  /** A batch handed to the group commit: reads what its group will need, when groups read from Postgres. */
  offer(p: Pending): void {
    if (p.observations || p.repairIds || !this.active()) return;
    // Bounded while a read hangs: the queue would otherwise keep every batch handed over meanwhile.
    if (this.queue.length >= MAX_QUEUED) this.queue.shift();
    this.queue.push(p);
    this.running ??= this.run().finally(() => (this.running = undefined));
  }

  /**
   * The batches a group is about to prepare: no longer read ahead; waits for a read of them in flight, at
   * most {@link WAIT_FOR_READ_MS} (what it reads later is still used only as the rules above allow).
   */
  async taking(batches: Pending[]): Promise<void> {
    for (const p of batches) this.taken.add(p);
    const c = this.current;
    if (!c || !batches.some((p) => c.items.has(p))) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([c.done, new Promise<void>((r) => (timer = setTimeout(r, WAIT_FOR_READ_MS)))]);
    clearTimeout(timer);
  }

  /**
   * What was read ahead for `keys` (keys the aggregator does not hold), and the keys still to be read.
   * What is handed out is forgotten here (the aggregator holds it from now on). A key read from its summary
   * has the rows of the contributors its read saw; others the group wants are read by the group
   * ({@link RegionalAggregator.missing}).
   */
  take(keys: KeyWant[]): KeyLoad & { rest: KeyWant[] } {
    if (this.stamp !== this.deps.aggregator.evictions) this.forget();
    const rows: Contribution[] = [];
    const partial: KeySummary[] = [];
    const rest: KeyWant[] = [];
    for (const k of keys) {
      const id = stockKeyId(k);
      const got = this.rows.get(id);
      if (got === undefined) rest.push(k);
      else {
        rows.push(...got.rows);
        if (got.summary) partial.push(got.summary);
        this.rows.delete(id);
      }
    }
    this.deps.onTake?.(keys.length - rest.length, rest.length);
    if (rest.length) this.lastKeyLoadAt = Date.now();
    return { rows, partial, rest };
  }

  /**
   * The rows read ahead of contributors at held keys loaded from their summary ({@link RegionalAggregator.missing});
   * `rest`: those still to be read. A contributor read ahead without a row is in neither.
   */
  takeEntries(wants: KeyWant[]): { rows: Contribution[]; rest: KeyWant[] } {
    if (this.stamp !== this.deps.aggregator.evictions) this.forget();
    const rows: Contribution[] = [];
    const rest: KeyWant[] = [];
    for (const w of wants) {
      const id = stockKeyId(w);
      const known = this.entries.get(id);
      const left: string[] = [];
      for (const c of w.contributors) {
        const row = known?.get(c);
        if (row === undefined) left.push(c);
        else if (row) rows.push(row);
        known?.delete(c);
      }
      if (known?.size === 0) this.entries.delete(id);
      if (left.length) rest.push({ ...w, contributors: left });
    }
    if (rest.length) this.lastKeyLoadAt = Date.now();
    return { rows, rest };
  }

  /** Waits for the read in flight (tests, stop). */
  async idle(): Promise<void> {
    await this.running;
  }

  private active(): boolean {
    return Date.now() - Math.max(this.deps.routes.lastMissAt, this.lastKeyLoadAt) < ACTIVE_FOR_MS;
  }

  private forget(): void {
    this.rows.clear();
    this.entries.clear();
    this.stamp = this.deps.aggregator.evictions;
  }

  private async run(): Promise<void> {
    while (this.queue.length) {
      const items = new Set(this.queue.splice(0).filter((p) => !this.taken.has(p)));
      if (!items.size) continue;
      const done = this.read([...items]).catch((err: unknown) => this.deps.log.debug({ err }, 'reading ahead failed; the group reads for itself'));
      this.current = { items, done };
      await done;
      this.current = undefined;
    }
  }

  private async read(batches: Pending[]): Promise<void> {
    const ids = new Set<string>();
    for (const p of batches) {
      const keyColumns = new Map<string, string[] | undefined>();
      for (const m of p.batch.changes) {
        if (!(m instanceof SourceChange) || m.spec.op === 't') continue;
        const table = m.table;
        if (!keyColumns.has(table)) keyColumns.set(table, p.supplier.source.tables.find((t) => t.name === table)?.key);
        try {
          // The rows as read and the key as event() has it, without building the row images the group builds.
          ids.add(contributorIdOf(p.supplier.id, { table, after: m.spec.after ?? null, before: m.spec.before ?? null, key: m.key() }, keyColumns.get(table)));
        } catch {
          // A change without its key: the group refuses it, nothing to read for it.
        }
      }
    }
    if (!ids.size) return;
    const routes = await this.deps.routes.prefetch(ids);
    const { aggregator } = this.deps;
    if (this.stamp !== aggregator.evictions) this.forget();
    const live = [...routes.values()].filter((r) => !r.deleted);
    const keys = aggregator.absent(live).filter((k) => !this.rows.has(stockKeyId(k)));
    const wants = aggregator.missing(live)
      .map((w) => ({ ...w, contributors: w.contributors.filter((c) => !this.entries.get(stockKeyId(w))?.has(c)) }))
      .filter((w) => w.contributors.length);
    if (!keys.length && !wants.length) return;
    // Absent now, with no eviction until the rows are used (checked then): Postgres has their latest state.
    const stamp = aggregator.evictions;
    this.lastKeyLoadAt = Date.now();
    const [{ rows, partial }, entries] = await Promise.all([
      this.deps.contributions.loadKeys(EMBEDDED_PARTITION, keys),
      this.deps.contributions.loadEntries(EMBEDDED_PARTITION, wants),
    ]);
    if (stamp !== aggregator.evictions) return;
    if (this.rows.size + this.entries.size + keys.length + wants.length > (this.deps.maxKeys ?? 100_000)) this.forget();
    const byKey = new Map<string, { rows: Contribution[]; summary?: KeySummary }>(keys.map((k) => [stockKeyId(k), { rows: [] }]));
    for (const c of rows) byKey.get(stockKeyId(c))?.rows.push(c);
    for (const p of partial) byKey.get(stockKeyId(p))!.summary = p;
    // A key a group loaded meanwhile is held: the group's state is the newer one.
    for (const k of keys) if (!aggregator.holds(k.region, k.sku)) this.rows.set(stockKeyId(k), byKey.get(stockKeyId(k))!);
    // A contributor: null when it has no row. One a group loaded or changed meanwhile is held, and is not replaced (adoptEntries).
    const found = new Map(entries.map((c) => [`${stockKeyId(c)}\u0000${c.contributorId}`, c]));
    for (const w of wants) {
      const id = stockKeyId(w);
      let known = this.entries.get(id);
      if (!known) this.entries.set(id, (known = new Map()));
      for (const c of w.contributors) known.set(c, found.get(`${id}\u0000${c}`) ?? null);
    }
  }
}
