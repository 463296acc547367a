import { SourceChange } from '../../connectors/source-change.js';
import type { Contribution, RegionalAggregator, StockKey } from '../aggregate/aggregator.js';
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

const keyId = (k: StockKey) => `${k.region}\u0000${k.sku}`;

/**
 * Reads from Postgres, while earlier groups are prepared and committed, what the next group will read:
 * the routes of the rows its changes touch and the contributions of the keys those rows are counted at.
 * With more contributors than memory holds (CELLAR_STATE_CACHE_CONTRIBUTORS) preparing a group is mostly
 * those reads, one after the other; read ahead, they overlap the commit in flight.
 *
 * Nothing read ahead may be older than what a group would read itself:
 * - routes go through {@link CachedRouteStore.prefetch} (kept only where nothing newer was remembered);
 * - contributions are read only for keys the aggregator does not hold at that moment, and used only while
 *   it has evicted nothing since. A key not held has no change in flight (keys are held from the group
 *   that changes them until an eviction, which waits for every commit), so Postgres has its latest state;
 *   a key loaded by a group after the read is held when the rows would be used, so they are not.
 * A read ahead that fails is forgotten: the group reads for itself.
 */
export class ReadAhead {
  private readonly queue: Pending[] = [];
  private readonly taken = new WeakSet<Pending>();
  private running: Promise<void> | undefined;
  /** The batches being read now, and the read. */
  private current: { items: Set<Pending>; done: Promise<void> } | undefined;
  /** Contributions read ahead, by key (an empty list: a key with none), valid while `stamp` is the aggregator's evictions. */
  private readonly rows = new Map<string, Contribution[]>();
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
   * The contributions read ahead for `keys` (keys the aggregator does not hold), and the keys still to be
   * read. Rows handed out are forgotten here (the aggregator holds them from now on).
   */
  take(keys: StockKey[]): { rows: Contribution[]; rest: StockKey[] } {
    if (this.stamp !== this.deps.aggregator.evictions) this.forget();
    const rows: Contribution[] = [];
    const rest: StockKey[] = [];
    for (const k of keys) {
      const id = keyId(k);
      const list = this.rows.get(id);
      if (list === undefined) rest.push(k);
      else {
        rows.push(...list);
        this.rows.delete(id);
      }
    }
    this.deps.onTake?.(keys.length - rest.length, rest.length);
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
    const keys = aggregator.absent([...routes.values()].filter((r) => !r.deleted)).filter((k) => !this.rows.has(keyId(k)));
    if (!keys.length) return;
    // Absent now, with no eviction until the rows are used (checked then): Postgres has their latest state.
    const stamp = aggregator.evictions;
    this.lastKeyLoadAt = Date.now();
    const rows = await this.deps.contributions.loadKeys(EMBEDDED_PARTITION, keys);
    if (stamp !== aggregator.evictions) return;
    if (this.rows.size + keys.length > (this.deps.maxKeys ?? 100_000)) this.rows.clear();
    const byKey = new Map<string, Contribution[]>(keys.map((k) => [keyId(k), []]));
    for (const c of rows) byKey.get(keyId(c))?.push(c);
    // A key a group loaded meanwhile is held: the group's state is the newer one.
    for (const k of keys) if (!aggregator.holds(k.region, k.sku)) this.rows.set(keyId(k), byKey.get(keyId(k))!);
  }
}
