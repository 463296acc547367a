/**
 * Reason codes of dead letters. Stable: dashboards, alerts and `cellar dlq list --reason` use them.
 * Each is documented in the README ("Dead letters").
 */
export const REASONS = {
  malformed_json: 'the message is not valid JSON',
  not_debezium_envelope: 'the message is not a Debezium change event (no op/source/after/before)',
  avro_decode: 'the Avro payload could not be decoded with its registered schema',
  missing_key: 'the change has no primary key (message key empty and no key columns configured), or a feed row has an empty key column',
  malformed_line: 'a line of a feed file that cannot be read as a row (a stray quote, another number of fields than the header)',
  duplicate_key: 'a feed row whose key an earlier row of the same file or request already had (the first one counts)',
  unsupported_op: 'the Debezium op is not one Cellar handles',
  unknown_table: 'the change comes from a table the supplier does not capture',
  unknown_supplier: 'no supplier in the registry owns this topic',
  missing_field: 'a mapped field (sku, warehouse, quantity…) is absent or null',
  wrong_type: 'a mapped field has a type that cannot be read as expected',
  unknown_sku: 'the supplier SKU has no canonical SKU in the mapping',
  invalid_sku: 'the canonical SKU is empty, longer than 128 characters, or has white space, control characters or "|"',
  unknown_warehouse: 'the warehouse is not in the mapping\'s region map',
  unknown_unit: 'the unit value is not one the mapping knows',
  bottle_size_mismatch: 'the row\'s bottle size differs from its canonical SKU\'s (catalog, or the size first seen): never summed',
  non_integral_quantity: 'the quantity does not convert to a whole number of bottles',
  negative_quantity: 'negative stock from a supplier that does not allow backorders',
  quantity_out_of_range: 'a quantity beyond ±10^12 bottles, or a total it would push beyond ±(2^53 − 1): refused, never rounded',
  bad_decimal: 'a DECIMAL value could not be decoded',
  bad_version: 'the change carries no usable source position',
  empty_record: 'a record with no value where one is required (an observation or a total without a payload)',
  unexpected_error: 'processing the record failed unexpectedly (a defect; the message names it)',
} as const;

export type ReasonCode = keyof typeof REASONS;

/** A record the normalizer refuses, with its reason. Not a crash: the record becomes a dead letter. */
export class Rejection extends Error {
  constructor(readonly reason: ReasonCode, message: string) {
    super(message);
    this.name = 'Rejection';
  }
}
