import { z } from 'zod';
import { Cron } from 'croner';

/** True when croner accepts the expression. */
function validCron(expr: string): boolean {
  try {
    new Cron(expr, { paused: true }).stop();
    return true;
  } catch {
    return false;
  }
}

/** Source systems a supplier's stock can come from. */
export const SOURCE_KINDS = ['postgres', 'mysql', 'mariadb', 'mongodb', 'sqlserver', 'http', 'csv'] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];

/** Units a supplier can report quantities in. `case` uses `caseSize` (6 and 12 have shorthands). */
export const UNITS = ['bottles', 'case6', 'case12', 'case', 'liters', 'milliliters'] as const;
export type Unit = (typeof UNITS)[number];

const id = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter or digit');

/**
 * A secret: `${ENV_NAME}` (read from the environment at run time) or `{ file: path }` (read from a file,
 * e.g. a mounted Kubernetes secret). Plain values are refused so that no secret sits in the registry.
 */
export const SecretSpec = z.union([
  z.string().regex(/^\$\{[A-Z_][A-Z0-9_]*\}$/, 'a secret must be ${ENV_VAR} or { file: path }, never an inline value'),
  z.object({ file: z.string().min(1) }).strict(),
]);
export type SecretRef = z.infer<typeof SecretSpec>;

/** Connection to the supplier's database (database sources). Passwords only as SecretSpec. */
export const ConnectionSpec = z
  .object({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).optional(),
    database: z.string().min(1).optional(),
    user: z.string().min(1).optional(),
    password: SecretSpec.optional(),
    /** Extra driver/connector options, e.g. `sslmode`. Values must not be secrets. */
    options: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  })
  .strict();

/**
 * One captured table, named as Debezium names it in topics: `schema.table` (Postgres), `database.table`
 * (MySQL/MariaDB), `database.collection` (MongoDB), `database.schema.table` (SQL Server).
 */
export const TableSpec = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+){1,2}$/, 'qualified name like schema.table (database.schema.table for SQL Server)'),
    /** Primary key columns; default: the fields of the Debezium message key. */
    key: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict();

/** A field of the change's row: a column name, or a dotted path into nested documents (`stock.qty`). */
const field = z.string().min(1).regex(/^[^\s]+$/, 'a field name or dotted path, without spaces');

/** Unit of quantity: a fixed unit, or a field holding a unit name with optional value aliases. */
export const UnitSpec = z.union([
  z.enum(UNITS),
  z
    .object({
      field,
      /** Maps the supplier's unit values (e.g. `CS12`, `L`) to Cellar units. */
      values: z.record(z.string(), z.enum(UNITS)).optional(),
    })
    .strict(),
]);

/** How supplier SKUs map to canonical SKUs. Default `identity`. */
export const SkuMapSpec = z.union([
  z.literal('identity'),
  z.object({ inline: z.record(z.string(), z.string().min(1)) }).strict(),
  z.object({ csv: z.string().min(1) }).strict(),
  z.object({ table: z.literal('cellar.sku_map') }).strict(),
]);

export const MappingSpec = z
  .object({
    /** Field holding the supplier's SKU. */
    sku: field,
    /** Field holding the warehouse id. */
    warehouse: field,
    /** Field holding the quantity (in `unit`). */
    quantity: field,
    /** Unit of `quantity`; default `bottles`. */
    unit: UnitSpec.default('bottles'),
    /** Bottles per case for unit `case`. */
    caseSize: z.number().int().min(1).max(1000).optional(),
    /** Field holding the vintage year (optional). */
    vintage: field.optional(),
    /** Field holding the bottle size in ml; default: every row is 750 ml. */
    bottleSizeMl: field.optional(),
    /** Bottle size in ml when no field gives it. Default 750. */
    defaultBottleSizeMl: z.number().int().min(1).max(30000).default(750),
    /** Supplier SKU → canonical SKU. Default identity (the supplier already uses canonical SKUs). */
    skus: SkuMapSpec.default('identity'),
    /** Warehouse id → region. Every warehouse that holds stock must be listed. */
    regions: z.record(z.string(), z.string().regex(/^[A-Za-z0-9_.-]+$/, 'region: letters, digits, . _ -')).refine((r) => Object.keys(r).length > 0, 'at least one warehouse → region entry'),
    /** Accept negative quantities (backorders). Default false: negative stock is rejected. */
    allowBackorders: z.boolean().default(false),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.unit === 'case' && m.caseSize === undefined) {
      ctx.addIssue({ code: 'custom', path: ['caseSize'], message: 'required when unit is "case"' });
    }
  });

export const SupplierSpec = z
  .object({
    id,
    name: z.string().min(1),
    source: z
      .object({
        kind: z.enum(SOURCE_KINDS),
        connection: ConnectionSpec.optional(),
        /** Debezium `topic.prefix`; raw topics are `<topicPrefix>.<table>`. Default: the supplier id. */
        topicPrefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).optional(),
        tables: z.array(TableSpec).min(1, 'at least one captured table'),
      })
      .strict(),
    mapping: MappingSpec,
    /** Scheduled reconciliation of this supplier (`cellar run scheduler`). */
    reconcile: z
      .object({
        /** Cron expression (5 fields, or 6 with seconds first), UTC, e.g. `0 * * * *` (hourly). */
        schedule: z.string().min(9).refine(validCron, 'a cron expression like "*/15 * * * *" (minute hour day month weekday; an optional seconds field first)').optional(),
        /** Correct drift through the pipeline when found. Default false: report only. */
        repair: z.boolean().default(false),
        /** Wait before re-checking a difference, ms; longer than the pipeline's lag. Default 3000. */
        settleMs: z.number().int().min(0).max(600_000).optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    const db = ['postgres', 'mysql', 'mariadb', 'mongodb', 'sqlserver'].includes(s.source.kind);
    if (db && !s.source.connection) {
      ctx.addIssue({ code: 'custom', path: ['source', 'connection'], message: `required for source kind ${s.source.kind}` });
    }
  });

export type SupplierConfig = z.output<typeof SupplierSpec>;
export type MappingConfig = SupplierConfig['mapping'];
