import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Supplier } from '../../connectors/registry/loader.js';
import { CANONICAL_SKU, UNITS, unitOf, type Unit } from '../../connectors/registry/schema.js';
import { SizeCatalog } from '../catalog/catalog.js';
import { parseSkuMapCsv, SkuTable, SkuTemplate, type SkuMapEntry, type SkuResolver } from './sku-table.js';
import { ConfigError } from '../core/errors.js';
import { decimalToString, parseDecimal, scaleToInteger, scaleToSafeInteger, type Decimal } from './decimal.js';
import { Rejection } from './reasons.js';
import type { Row } from './debezium.js';

/** Where one source row's stock belongs, and how much of it there is, in canonical terms. */
export interface Placement {
  supplierSku: string;
  sku: string;
  warehouseId: string;
  region: string;
  bottles: number;
  vintage: number | null;
  bottleSizeMl: number;
}

/** A supplier mapping ready to apply: pure, no I/O per row. */
export interface CompiledMapping {
  supplier: Supplier;
  /**
   * Places a row image, or throws {@link Rejection} with the reason; the canonical SKU's bottle size is
   * checked against (or, for an unlisted SKU, pinned in) the catalog.
   */
  place(row: Row): Placement;
  /** Places a row image without the catalog check: where an earlier image of a row was counted. */
  locate(row: Row): Placement;
  /** The bottle sizes this mapping checks against. */
  catalog: SizeCatalog;
  /** Region of a warehouse, or undefined. */
  regionOf(warehouseId: string): string | undefined;
}

/** Reads `a.b.c` from nested objects. */
export function getPath(row: Row, path: string): unknown {
  const v = row[path];
  if (v !== undefined || path in row) return v;
  let cur: unknown = row;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function required(row: Row, path: string, what: string): unknown {
  const v = getPath(row, path);
  if (v === undefined && !path.includes('.')) {
    // Not in the row at all: the source table no longer has that column (renamed or dropped).
    const cols = Object.keys(row);
    throw new Rejection('missing_field', `${what} field "${path}" is missing: the row has no such column (it has ${cols.slice(0, 12).join(', ')}${cols.length > 12 ? ', …' : ''}). Renamed or dropped at the source? Fix mapping.${what} in the supplier file, restart, then \`cellar dlq replay --reason missing_field\``);
  }
  if (v === undefined || v === null || v === '') throw new Rejection('missing_field', `${what} field "${path}" is missing or null`);
  return v;
}

function asText(v: unknown, path: string): string {
  if (typeof v === 'string') {
    // Printable ASCII at both ends: nothing to trim (every white space character is outside 33–126).
    const a = v.charCodeAt(0);
    const b = v.charCodeAt(v.length - 1);
    return a > 32 && a < 127 && b > 32 && b < 127 ? v : v.trim();
  }
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  throw new Rejection('wrong_type', `field "${path}" should be text, got ${typeof v}`);
}

function asDecimal(v: unknown, path: string): Decimal {
  if (typeof v === 'number' || typeof v === 'string') return parseDecimal(v, `field "${path}"`);
  if (v && typeof v === 'object' && 'unscaled' in v && 'scale' in v) return v as Decimal;
  throw new Rejection('wrong_type', `field "${path}" should be a number, got ${typeof v}`);
}

function asInt(v: unknown, path: string): number {
  const d = asDecimal(v, path);
  const n = scaleToInteger(d, 1n, 1n);
  if (n === null) throw new Rejection('wrong_type', `field "${path}" should be a whole number, got ${decimalToString(d)}`);
  return Number(n);
}

/**
 * The most bottles (either sign) one source row may hold: far beyond any real stock, and small enough
 * that a total over thousands of such rows stays an exact integer in a JavaScript number, an Avro long
 * and Postgres' bigint (the aggregator refuses a change that would push a total past ±(2^53 − 1)).
 */
export const MAX_ROW_BOTTLES = 1_000_000_000_000n;
const MAX_ROW_BOTTLES_NUMBER = Number(MAX_ROW_BOTTLES);

/**
 * Converts a quantity to whole bottles of `bottleSizeMl`. Never rounds: a conversion that does not give
 * a whole number is rejected (`non_integral_quantity`).
 */
export function toBottles(q: Decimal, unit: Unit, bottleSizeMl: number, caseSize?: number): number {
  // Plain numbers first (no BigInt per row); the BigInt path below decides whatever they cannot.
  const fastNum = unit === 'bottles' ? 1 : unit === 'case6' ? 6 : unit === 'case12' ? 12 : unit === 'case' ? (caseSize ?? 0) : unit === 'liters' ? 1000 : 1;
  const fastDen = unit === 'bottles' || unit === 'case6' || unit === 'case12' || unit === 'case' ? 1 : bottleSizeMl;
  if (fastNum !== 0 && Number.isSafeInteger(fastNum) && Number.isSafeInteger(fastDen)) {
    const bottles = scaleToSafeInteger(q, fastNum, fastDen);
    if (bottles !== undefined && bottles !== null && bottles <= MAX_ROW_BOTTLES_NUMBER && bottles >= -MAX_ROW_BOTTLES_NUMBER) return bottles;
  }
  const [num, den]: [bigint, bigint] =
    unit === 'bottles' ? [1n, 1n]
    : unit === 'case6' ? [6n, 1n]
    : unit === 'case12' ? [12n, 1n]
    : unit === 'case' ? [BigInt(caseSize ?? 0), 1n]
    : unit === 'liters' ? [1000n, BigInt(bottleSizeMl)]
    : [1n, BigInt(bottleSizeMl)];
  if (num === 0n) throw new Rejection('unknown_unit', 'unit "case" needs caseSize in the mapping');
  const bottles = scaleToInteger(q, num, den);
  if (bottles === null) {
    throw new Rejection(
      'non_integral_quantity',
      `${decimalToString(q)} ${unit === 'case' ? `cases of ${caseSize}` : unit} is not a whole number of ${bottleSizeMl} ml bottles`,
    );
  }
  if (bottles > MAX_ROW_BOTTLES || bottles < -MAX_ROW_BOTTLES) {
    throw new Rejection('quantity_out_of_range', `quantity ${decimalToString(q)} is ${bottles} bottles, beyond the ±${MAX_ROW_BOTTLES} bottles one row may hold`);
  }
  return Number(bottles);
}

function loadCsvSkuMap(file: string, supplierFile: string): SkuMapEntry[] {
  const path = isAbsolute(file) ? file : resolve(dirname(supplierFile), file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${supplierFile}: mapping.skus.csv: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseSkuMapCsv(text, path);
}

/** What a compiled mapping reads besides the supplier file. */
export interface MappingInputs {
  /**
   * The SKU map of a supplier whose mapping says `skus: { table: cellar.sku_map }` (the runtime owns the
   * database connection and may replace its entries while running). Default: empty.
   */
  skuTable?: SkuTable;
  /**
   * Every canonical SKU's one bottle size. A row whose size disagrees is rejected
   * (`bottle_size_mismatch`); the first size of an unlisted SKU is pinned. Default: a catalog of this
   * mapping alone (still never two sizes under one SKU).
   */
  catalog?: SizeCatalog;
}

/** The SKU resolver a mapping's `skus` setting describes. */
function skuResolver(supplier: Supplier, skuTable?: SkuTable): SkuResolver | null {
  const skus = supplier.mapping.skus;
  if (skus === 'identity') return null;
  if ('inline' in skus) {
    const inline = skus.inline;
    return new SkuTable(Array.isArray(inline) ? inline : Object.entries(inline).map(([supplierSku, sku]) => ({ supplierSku, sku })));
  }
  if ('csv' in skus) return new SkuTable(loadCsvSkuMap(skus.csv, supplier.file));
  if ('template' in skus) return new SkuTemplate(skus.template);
  return skuTable ?? new SkuTable();
}

/**
 * Compiles a supplier's mapping. Pure per row: the SKU map and catalog are read from memory.
 */
export function compileMapping(supplier: Supplier, inputs: MappingInputs = {}): CompiledMapping {
  const m = supplier.mapping;
  const skuMap = skuResolver(supplier, inputs.skuTable);
  const catalog = inputs.catalog ?? new SizeCatalog();
  const regions = new Map(Object.entries(m.regions));
  /** Canonical SKUs already checked against {@link CANONICAL_SKU} (a set lookup is cheaper than the pattern). */
  const validSkus = new Set<string>();
  const unitOfRow = (row: Row): Unit => {
    if (typeof m.unit === 'string') return m.unit;
    const raw = asText(required(row, m.unit.field, 'unit'), m.unit.field);
    const unit = m.unit.values?.[raw] ?? unitOf(raw);
    if (!unit) throw new Rejection('unknown_unit', `unit "${raw}" in field "${m.unit.field}" is not known; allowed: ${UNITS.join(', ')} and their spellings, or add it to mapping.unit.values`);
    return unit;
  };
  const sizeOfRow = (row: Row): number => {
    const v = m.bottleSizeMl ? getPath(row, m.bottleSizeMl) : undefined;
    if (v === undefined || v === null || v === '') return m.defaultBottleSizeMl;
    const ml = asInt(v, m.bottleSizeMl!);
    if (ml <= 0 || ml > 30000) throw new Rejection('wrong_type', `bottle size ${ml} ml in field "${m.bottleSizeMl}" is not between 1 and 30000`);
    return ml;
  };
  const vintageOfRow = (row: Row): number | null => {
    const v = m.vintage ? getPath(row, m.vintage) : null;
    return v === null || v === undefined || v === '' ? (m.defaultVintage ?? null) : asInt(v, m.vintage!);
  };
  const place = (row: Row, check: boolean): Placement => {
    const supplierSku = asText(required(row, m.sku, 'sku'), m.sku);
    const warehouseId = asText(required(row, m.warehouse, 'warehouse'), m.warehouse);
    const quantity = asDecimal(required(row, m.quantity, 'quantity'), m.quantity);
    const bottleSizeMl = sizeOfRow(row);
    const vintage = vintageOfRow(row);
    const sku = skuMap ? skuMap.resolve(supplierSku, vintage, bottleSizeMl) : supplierSku;
    if (!sku) {
      throw new Rejection('unknown_sku', `supplier SKU "${supplierSku}" (vintage ${vintage ?? 'none'}, ${bottleSizeMl} ml) has no canonical SKU in ${supplier.id}'s mapping (keyed by ${skuMap!.keyedBy})`);
    }
    if (!validSkus.has(sku)) {
      if (!CANONICAL_SKU.test(sku)) {
        const shown = JSON.stringify(sku.length > 60 ? `${sku.slice(0, 60)}…` : sku);
        throw new Rejection('invalid_sku', `canonical SKU ${shown} (${sku.length} characters, from supplier SKU field "${m.sku}") is not 1–128 characters without white space, control characters or "|"`);
      }
      if (validSkus.size >= 65_536) validSkus.clear(); // a bounded memo, not a list of SKUs
      validSkus.add(sku);
    }
    const region = regions.get(warehouseId);
    if (!region) throw new Rejection('unknown_warehouse', `warehouse "${warehouseId}" is not in ${supplier.id}'s region map`);
    const bottles = toBottles(quantity, unitOfRow(row), bottleSizeMl, m.caseSize);
    if (bottles < 0 && !m.allowBackorders) {
      throw new Rejection('negative_quantity', `quantity ${decimalToString(quantity)} is negative and ${supplier.id} does not allow backorders`);
    }
    if (check) {
      const want = catalog.claim(sku, bottleSizeMl, supplier.id);
      if (want !== bottleSizeMl) {
        throw new Rejection(
          'bottle_size_mismatch',
          `${bottleSizeMl} ml of "${supplierSku}" → "${sku}", a ${want} ml SKU (${catalog.describe(sku)}); map the ${bottleSizeMl} ml bottles to their own canonical SKU, or correct the catalog`,
        );
      }
    }
    return { supplierSku, sku, warehouseId, region, bottles, vintage, bottleSizeMl };
  };
  return {
    supplier,
    catalog,
    regionOf: (w) => regions.get(w),
    place: (row) => place(row, true),
    locate: (row) => place(row, false),
  };
}
