import type { RegionalStock } from '../schemas/records.js';

/** What a sink did with a batch. */
export interface SinkResult {
  /** Records that changed the store (newer than what it held). */
  applied: number;
  /** Records at or below the stored version (replays, duplicates): left alone. */
  skipped: number;
  /**
   * The store lost its data since this sink last wrote (e.g. Redis restarted empty): nothing was written,
   * and the caller must replay its input from the beginning (the compacted topic holds every key's latest).
   */
  reset?: boolean;
}

/** A key as a sink stores it. */
export interface StoredStock {
  bottles: number;
  version: number;
  /** The SKU's bottle size, ml; null when the stored record had none. */
  bottleSizeMl: number | null;
}

/**
 * A store of regional totals. Every sink is idempotent by version: writing a batch twice, or an older
 * batch after a newer one, never moves a key backwards. All sinks pass test/sinks/conformance.ts.
 */
export interface StockSink {
  /** Opens connections and prepares what the sink needs (scripts, statements). */
  connect(): Promise<void>;
  /** Writes a batch in one round trip; throws CellarError (retriable when the store is unreachable). */
  writeBatch(records: RegionalStock[]): Promise<SinkResult>;
  /** Reads a key back as the sink stores it (for checks and the read path); undefined if absent. */
  read(region: string, sku: string): Promise<StoredStock | undefined>;
  /** Closes connections. Safe to call twice. */
  close(): Promise<void>;
  /** False while the store is known to be unreachable (for readiness); true when unknown. */
  isHealthy?(): boolean;
  /**
   * Checks, without writing, whether the store lost its data since this sink last wrote or checked (e.g.
   * Redis restarted empty while no change flowed): true once per loss, and the caller then replays its input
   * from the beginning, as for a `reset` batch. Throws (retriable) when the store does not answer.
   */
  lostData?(): Promise<boolean>;
}

/** Keeps the highest version per key, so a batch never holds two writes of one key. */
export function latestPerKey(records: RegionalStock[]): RegionalStock[] {
  const byKey = new Map<string, RegionalStock>();
  for (const r of records) {
    const k = `${r.region}|${r.sku}`;
    const prev = byKey.get(k);
    if (!prev || r.version > prev.version) byKey.set(k, r);
  }
  return [...byKey.values()];
}
