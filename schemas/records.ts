/** Plain TypeScript shapes of the canonical Avro records in schemas/avro. */

export type ObservationOp = 'UPSERT' | 'DELETE';

/** One supplier source row's latest state (see schemas/avro/stock-observation.avsc). */
export interface StockObservation {
  supplierId: string;
  warehouseId: string;
  region: string;
  sku: string;
  supplierSku: string;
  vintage: number | null;
  bottleSizeMl: number;
  bottles: number;
  op: ObservationOp;
  contributorId: string;
  sourceVersion: string;
  sourceTsMs: number;
  ingestTsMs: number;
  traceId: string;
}

/** Total stock of one SKU in one region (see schemas/avro/regional-stock.avsc). */
export interface RegionalStock {
  region: string;
  sku: string;
  /** Bottle size of the SKU's bottles, ml; null for totals written before sizes were kept. */
  bottleSizeMl: number | null;
  bottles: number;
  contributors: number;
  version: number;
  sourceTsMs: number;
  updatedTsMs: number;
}

/**
 * A regional total crossing a line (see schemas/avro/stock-event.avsc): `sold_out` (from above zero to zero
 * or below), `back_in_stock` (from zero or below to above zero, a SKU's first stock included), `low_stock`
 * (from above the key's threshold to at most it, still above zero). `version` is the total's version after
 * the change, so (region, sku, version, type) names the event wherever and however often it is derived.
 */
export interface StockEventRecord {
  /** Deterministic from (region, sku, version, type): consumers deduplicate by it. */
  id: string;
  type: 'sold_out' | 'back_in_stock' | 'low_stock';
  region: string;
  sku: string;
  version: number;
  /** The total before and after the change, bottles. */
  before: number;
  after: number;
  /** The low-stock threshold that was crossed (low_stock only; null otherwise), bottles. */
  threshold: number | null;
  /** Source time of the change that crossed the line, ms since the epoch. */
  sourceTsMs: number;
}

/** A record a stage could not process (see schemas/avro/dead-letter.avsc). */
export interface DeadLetter {
  stage: string;
  reason: string;
  message: string;
  supplierId: string | null;
  topic: string | null;
  partition: number | null;
  offset: string | null;
  sourcePosition: string | null;
  key: Buffer | null;
  value: Buffer | null;
  tsMs: number;
  /**
   * Source table of a change the embedded runtime dead-lettered (it has no topic); lets `cellar dlq replay`
   * hand it back to the runtime. Not part of the Avro record.
   */
  sourceTable?: string | null;
  /**
   * Where there is no Kafka offset (the embedded runtime): a key unique to this letter in its commit, so a
   * commit retried after an unknown outcome does not write it twice. Not part of the Avro record.
   */
  dedupeKey?: string | null;
  /** The dead letter whose replay was refused again (`cellar dlq replay`). Not part of the Avro record. */
  replayOf?: number | null;
}
