import type { StockEvent, StockEventHub } from './sse.js';

/** A cached key's value. */
export interface HotValue {
  bottles: number;
  version: number;
  bottleSizeMl: number | null;
}

interface Entry extends HotValue {
  /** The region snapshot's write time as read or as carried by the event. */
  asOfMs: number;
  /** When the entry was read from Redis (ms, monotonic enough for a TTL). */
  at: number;
  generation: number;
}

/**
 * The newest (region, SKU) totals seen, in process memory, so hot keys are answered without a Redis round
 * trip. Kept current by the change stream: every event updates its keys (version-guarded, so a read that
 * raced with a change can never put an older value back), and a hole in the stream (the hub's
 * connection dropped) invalidates everything cached before it. Entries also expire `ttlMs` after they were
 * read, which bounds what the stream cannot tell: a rebuild from Postgres rewrites Redis without events.
 * Bounded to `maxEntries` (oldest dropped first).
 */
export class HotKeyCache {
  private readonly entries = new Map<string, Entry>();
  /** Newest snapshot write time per region seen in the stream: a cached key is current as of it. */
  private readonly regionAsOf = new Map<string, number>();

  constructor(
    private readonly hub: StockEventHub,
    private readonly ttlMs = 2_000,
    private readonly maxEntries = 200_000,
  ) {
    hub.subscribe((e) => this.apply(e));
  }

  private static key(region: string, sku: string): string {
    return `${region}\u0000${sku}`;
  }

  private apply(e: StockEvent): void {
    if ((this.regionAsOf.get(e.region) ?? 0) < e.updatedTsMs) this.regionAsOf.set(e.region, e.updatedTsMs);
    for (const c of e.changes) this.put(e.region, c.sku, c, e.updatedTsMs, performance.now());
  }

  /** Keeps a value read from Redis (ignored when an equal or newer version is cached). */
  put(region: string, sku: string, value: HotValue, asOfMs: number, at = performance.now()): void {
    const { bottles, version, bottleSizeMl } = value;
    const k = HotKeyCache.key(region, sku);
    const cur = this.entries.get(k);
    const generation = this.hub.generation;
    if (cur && cur.generation === generation && cur.version > version) return; // a newer change is known
    if (cur && cur.generation === generation && cur.version === version) {
      cur.at = Math.max(cur.at, at); // read again: current for another TTL
      cur.asOfMs = Math.max(cur.asOfMs, asOfMs);
      return;
    }
    if (!cur && this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(k, { bottles, version, bottleSizeMl, asOfMs, at, generation });
  }

  /** A current value, or undefined when it must be read from Redis. */
  get(region: string, sku: string): (HotValue & { asOfMs: number }) | undefined {
    if (!this.hub.live) return undefined;
    const e = this.entries.get(HotKeyCache.key(region, sku));
    if (!e || e.generation !== this.hub.generation || performance.now() - e.at > this.ttlMs) return undefined;
    return { bottles: e.bottles, version: e.version, bottleSizeMl: e.bottleSizeMl, asOfMs: Math.max(e.asOfMs, this.regionAsOf.get(region) ?? 0) };
  }
}
