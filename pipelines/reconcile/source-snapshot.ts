import type pg from 'pg';
import { hasRowReader, NATIVE_SOURCES, type NativeKind } from '../../connectors/native-source.js';
import type { Supplier } from '../../connectors/registry/loader.js';
import type { SupplierSnapshot } from '../../connectors/supplier-rows.js';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { openFeedSnapshot } from './feed-snapshot.js';

export type { SourceMessage, SourceRow, SupplierSnapshot } from '../../connectors/supplier-rows.js';

/**
 * Opens read-only access to a supplier's rows: its database through the source table, or for a feed
 * (files, pushed requests) the rows it last sent as Cellar keeps them (`pool`, Cellar's database).
 */
export async function openSupplierSnapshot(supplier: Supplier, log: Logger, pool?: pg.Pool): Promise<SupplierSnapshot> {
  if (!hasRowReader(supplier)) {
    throw new ConfigError(`${supplier.file}: source.kind ${supplier.source.kind}: reconciliation reads Postgres, MySQL and MariaDB suppliers and Cellar's feeds; ${supplier.id} is captured by Debezium without a row reader here`);
  }
  if (supplier.source.kind === 'csv' || supplier.source.kind === 'http') {
    if (!pool) throw new ConfigError(`${supplier.id}: a feed's rows are read from Cellar's database; no connection given`);
    return openFeedSnapshot(pool, supplier);
  }
  return NATIVE_SOURCES[supplier.source.kind as NativeKind].rows(supplier, log);
}
