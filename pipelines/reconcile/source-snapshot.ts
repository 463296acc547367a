import { hasRowReader, NATIVE_SOURCES, type NativeKind } from '../../connectors/native-source.js';
import type { Supplier } from '../../connectors/registry/loader.js';
import type { SupplierSnapshot } from '../../connectors/supplier-rows.js';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export type { SourceMessage, SourceRow, SupplierSnapshot } from '../../connectors/supplier-rows.js';

/** Opens read-only access to a supplier's rows through the source table; kinds without a native reader cannot be read here. */
export async function openSupplierSnapshot(supplier: Supplier, log: Logger): Promise<SupplierSnapshot> {
  if (!hasRowReader(supplier)) {
    throw new ConfigError(`${supplier.file}: source.kind ${supplier.source.kind}: reconciliation reads Postgres, MySQL and MariaDB suppliers; ${supplier.id} cannot be read directly (a file feed applies each file whole, diffed against the last)`);
  }
  return NATIVE_SOURCES[supplier.source.kind as NativeKind].rows(supplier, log);
}
