import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Supplier } from '../../connectors/registry/loader.js';
import type { Unit } from '../../connectors/registry/schema.js';
import { ConfigError } from '../core/errors.js';
import { decimalToString, parseDecimal, scaleToInteger, type Decimal } from './decimal.js';
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
  /** Places a row image, or throws {@link Rejection} with the reason. */
  place(row: Row): Placement;
  /** Region of a warehouse, or undefined. */
  regionOf(warehouseId: string): string | undefined;
}

/** Reads `a.b.c` from nested objects. */
export function getPath(row: Row, path: string): unknown {
  if (path in row) return row[path];
  let cur: unknown = row;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function required(row: Row, path: string, what: string): unknown {
  const v = getPath(row, path);
  if (v === undefined || v === null || v === '') throw new Rejection('missing_field', `${what} field "${path}" is missing or null`);
  return v;
}

function asText(v: unknown, path: string): string {
  if (typeof v === 'string') return v.trim();
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

const UNIT_ALIASES: Record<string, Unit> = {
  bottle: 'bottles', bottles: 'bottles', btl: 'bottles', bt: 'bottles', ea: 'bottles', each: 'bottles',
  case6: 'case6', cs6: 'case6', case12: 'case12', cs12: 'case12', case: 'case', cs: 'case',
  l: 'liters', lt: 'liters', liter: 'liters', liters: 'liters', litre: 'liters', litres: 'liters',
  ml: 'milliliters', milliliter: 'milliliters', milliliters: 'milliliters', millilitre: 'milliliters',
};

/**
 * Converts a quantity to whole bottles of `bottleSizeMl`. Never rounds: a conversion that does not give
 * a whole number is rejected (`non_integral_quantity`).
 */
export function toBottles(q: Decimal, unit: Unit, bottleSizeMl: number, caseSize?: number): number {
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
  if (bottles > BigInt(Number.MAX_SAFE_INTEGER) || bottles < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Rejection('wrong_type', `quantity ${decimalToString(q)} is out of range`);
  }
  return Number(bottles);
}

function loadCsvSkuMap(file: string, supplierFile: string): Map<string, string> {
  const path = isAbsolute(file) ? file : resolve(dirname(supplierFile), file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${supplierFile}: mapping.skus.csv: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const map = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    const t = line.trim();
    if (!t || t.startsWith('#') || (i === 0 && /^supplier_?sku\s*,/i.test(t))) return;
    const [from, to] = t.split(',').map((x) => x.trim());
    if (!from || !to) throw new ConfigError(`${path}:${i + 1}: expected "supplier_sku,canonical_sku"`);
    map.set(from, to);
  });
  return map;
}

/**
 * Compiles a supplier's mapping. `tableSkus` supplies the `cellar.sku_map` rows for suppliers that use it
 * (loaded by the runtime, which owns the database connection).
 */
export function compileMapping(supplier: Supplier, tableSkus?: Map<string, string>): CompiledMapping {
  const m = supplier.mapping;
  const skuMap: Map<string, string> | null =
    m.skus === 'identity' ? null
    : 'inline' in m.skus ? new Map(Object.entries(m.skus.inline))
    : 'csv' in m.skus ? loadCsvSkuMap(m.skus.csv, supplier.file)
    : (tableSkus ?? new Map());
  const regions = new Map(Object.entries(m.regions));
  const unitOf = (row: Row): Unit => {
    if (typeof m.unit === 'string') return m.unit;
    const raw = asText(required(row, m.unit.field, 'unit'), m.unit.field);
    const unit = m.unit.values?.[raw] ?? UNIT_ALIASES[raw.toLowerCase()];
    if (!unit) throw new Rejection('unknown_unit', `unit "${raw}" in field "${m.unit.field}" is not known; add it to mapping.unit.values`);
    return unit;
  };
  return {
    supplier,
    regionOf: (w) => regions.get(w),
    place(row: Row): Placement {
      const supplierSku = asText(required(row, m.sku, 'sku'), m.sku);
      const warehouseId = asText(required(row, m.warehouse, 'warehouse'), m.warehouse);
      const quantity = asDecimal(required(row, m.quantity, 'quantity'), m.quantity);
      const sku = skuMap ? skuMap.get(supplierSku) : supplierSku;
      if (!sku) throw new Rejection('unknown_sku', `supplier SKU "${supplierSku}" has no canonical SKU in ${supplier.id}'s mapping`);
      const region = regions.get(warehouseId);
      if (!region) throw new Rejection('unknown_warehouse', `warehouse "${warehouseId}" is not in ${supplier.id}'s region map`);
      const bottleSizeMl = m.bottleSizeMl && getPath(row, m.bottleSizeMl) != null ? asInt(getPath(row, m.bottleSizeMl), m.bottleSizeMl) : m.defaultBottleSizeMl;
      if (bottleSizeMl <= 0) throw new Rejection('wrong_type', `bottle size ${bottleSizeMl} ml is not positive`);
      const bottles = toBottles(quantity, unitOf(row), bottleSizeMl, m.caseSize);
      if (bottles < 0 && !m.allowBackorders) {
        throw new Rejection('negative_quantity', `quantity ${decimalToString(quantity)} is negative and ${supplier.id} does not allow backorders`);
      }
      const vraw = m.vintage ? getPath(row, m.vintage) : null;
      const vintage = vraw === null || vraw === undefined || vraw === '' ? null : asInt(vraw, m.vintage!);
      return { supplierSku, sku, warehouseId, region, bottles, vintage, bottleSizeMl };
    },
  };
}
