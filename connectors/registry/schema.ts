import { z } from 'zod';
import { validCron } from '../../pipelines/core/cron.js';
import { FeedSpec, PushSpec } from '../feed/config.js';

/** Source systems a supplier's stock can come from. */
export const SOURCE_KINDS = ['postgres', 'mysql', 'mariadb', 'mongodb', 'sqlserver', 'http', 'csv'] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];

/** Units a supplier can report quantities in. `case` uses `caseSize` (6 and 12 have shorthands). */
export const UNITS = ['bottles', 'case6', 'case12', 'case', 'liters', 'milliliters'] as const;
export type Unit = (typeof UNITS)[number];

/**
 * Spellings of each unit, accepted in the registry and in row values alike (case-insensitive), e.g.
 * `bottle`, `btl`, `litre`, `l`, `cs12`.
 */
export const UNIT_ALIASES: Readonly<Record<string, Unit>> = {
  bottle: 'bottles', bottles: 'bottles', btl: 'bottles', btls: 'bottles', bt: 'bottles', ea: 'bottles', each: 'bottles',
  case6: 'case6', cs6: 'case6', case12: 'case12', cs12: 'case12', case: 'case', cases: 'case', cs: 'case',
  l: 'liters', lt: 'liters', liter: 'liters', liters: 'liters', litre: 'liters', litres: 'liters',
  ml: 'milliliters', milliliter: 'milliliters', milliliters: 'milliliters', millilitre: 'milliliters', millilitres: 'milliliters',
};

/** Reads a unit name in any accepted spelling; undefined when it is not one. */
export function unitOf(name: string): Unit | undefined {
  return UNIT_ALIASES[name.trim().toLowerCase()];
}

const UNIT_CHOICES = `${UNITS.join(', ')} (also spelled ${Object.keys(UNIT_ALIASES).filter((a) => !(UNITS as readonly string[]).includes(a)).join(', ')})`;

/** A unit name in any accepted spelling, normalized to its {@link Unit}; the error lists the choices. */
const unitName = z.string().transform((v, ctx): Unit => {
  const u = unitOf(v);
  if (!u) ctx.addIssue({ code: 'custom', message: `unknown unit "${v}"; allowed: ${UNIT_CHOICES}` });
  return u ?? 'bottles';
});

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
const UnitFieldSpec = z
  .object({
    field,
    /** Maps the supplier's unit values (e.g. `CS12`, `L`) to Cellar units. */
    values: z.record(z.string(), unitName).optional(),
  })
  .strict();

/**
 * Unit of quantity: a unit name in any accepted spelling, or `{ field, values? }`, a field holding a unit
 * name with optional value aliases. (Not a union: a union would hide which unit name was wrong.)
 */
export const UnitSpec = z.unknown().transform((v, ctx): Unit | z.output<typeof UnitFieldSpec> => {
  const r = typeof v === 'string' ? unitName.safeParse(v) : UnitFieldSpec.safeParse(v);
  if (r.success) return r.data;
  const notAnObject = typeof v !== 'string' && (v === null || typeof v !== 'object');
  for (const issue of r.error.issues) {
    ctx.addIssue({ code: 'custom', message: notAnObject ? `expected a unit name (${UNIT_CHOICES}) or { field, values }` : issue.message, path: issue.path });
  }
  return z.NEVER;
});

/** A whole number in [min, max]; every error names the bad value and the range. */
function wholeNumber(what: string, min: number, max: number) {
  const error = (iss: { input?: unknown }) => `expected ${what} (a whole number, ${min}–${max}), got ${JSON.stringify(iss.input)}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}
/** A bottle size in ml (e.g. 375, 750, 1500). */
const bottleSize = wholeNumber('a bottle size in ml', 1, 30000);
/** A vintage year. */
const vintageYear = wholeNumber('a vintage year', 1000, 9999);
/**
 * What a canonical SKU may be: 1–128 printable characters without white space or `|` (keys on topics and
 * in logs are `region|sku`).
 */
export const CANONICAL_SKU = /^[^\s|\p{C}]{1,128}$/u;
/** A canonical SKU. */
const canonicalSku = z.string().regex(CANONICAL_SKU, 'a canonical SKU is 1–128 characters without spaces, control characters or "|"');

/**
 * One SKU map entry: the supplier SKU, optionally narrowed to one vintage and/or one bottle size, and the
 * canonical SKU it maps to. The most specific entry that matches a row wins: (sku, vintage, size), then
 * (sku, size), then (sku, vintage), then (sku).
 */
export const SkuMapEntrySpec = z
  .object({
    supplierSku: z.string().min(1),
    vintage: vintageYear.optional(),
    bottleSizeMl: bottleSize.optional(),
    sku: canonicalSku,
  })
  .strict();
export type SkuMapEntry = z.output<typeof SkuMapEntrySpec>;

/** Placeholders a SKU template may use. */
export const SKU_TEMPLATE_FIELDS = ['sku', 'vintage', 'bottleSizeMl'] as const;

/**
 * How supplier SKUs map to canonical SKUs. Default `identity`. `inline` is either a plain
 * `{ supplier SKU: canonical SKU }` map or a list of {@link SkuMapEntrySpec} entries keyed by vintage
 * and/or bottle size too; `csv` has columns `supplier_sku,canonical_sku` and optionally `vintage` and
 * `bottle_size_ml` (named in a header row); `template` builds the canonical SKU from the row's mapped
 * fields, e.g. `{sku}-{vintage}-{bottleSizeMl}`.
 */
const SKU_MAP_FORMS = {
  inline: z.object({ inline: z.unknown().transform((v, ctx) => forward(Array.isArray(v) ? z.array(SkuMapEntrySpec).min(1) : z.record(z.string(), canonicalSku), v, ctx)) }).strict(),
  csv: z.object({ csv: z.string().min(1) }).strict(),
  table: z.object({ table: z.literal('cellar.sku_map') }).strict(),
  template: z
    .object({
      template: z
        .string()
        .min(1)
        .superRefine((t, ctx) => {
          const used = [...t.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]!);
          for (const u of used) {
            if (!(SKU_TEMPLATE_FIELDS as readonly string[]).includes(u)) {
              ctx.addIssue({ code: 'custom', message: `unknown placeholder "{${u}}" in SKU template "${t}"; allowed: ${SKU_TEMPLATE_FIELDS.map((f) => `{${f}}`).join(', ')}` });
            }
          }
          if (!used.includes('sku')) ctx.addIssue({ code: 'custom', message: `SKU template "${t}" must use {sku}` });
          if (/[\s|]/.test(t.replace(/\{[^}]*\}/g, ''))) ctx.addIssue({ code: 'custom', message: `SKU template "${t}" has a space or "|" (a canonical SKU has neither)` });
        }),
    })
    .strict(),
};

/** Parses `v` with `schema`, reporting its issues (with their paths) on `ctx`. */
function forward<T extends z.ZodType>(schema: T, v: unknown, ctx: z.RefinementCtx): z.output<T> {
  const r = schema.safeParse(v);
  if (r.success) return r.data;
  for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
  return z.NEVER;
}

type SkuMapConfig =
  | 'identity'
  | { inline: Record<string, string> | SkuMapEntry[] }
  | z.output<typeof SKU_MAP_FORMS.csv>
  | z.output<typeof SKU_MAP_FORMS.table>
  | z.output<typeof SKU_MAP_FORMS.template>;

/**
 * How supplier SKUs map to canonical SKUs. Default `identity`. `inline` is either a plain
 * `{ supplier SKU: canonical SKU }` map or a list of {@link SkuMapEntrySpec} entries keyed by vintage
 * and/or bottle size too; `csv` has columns `supplier_sku,canonical_sku` and optionally `vintage` and
 * `bottle_size_ml` (named in a header row); `template` builds the canonical SKU from the row's mapped
 * fields, e.g. `{sku}-{vintage}-{bottleSizeMl}`. (Not a union: a union would hide which entry was wrong.)
 */
export const SkuMapSpec = z.unknown().transform((v, ctx): SkuMapConfig => {
  if (v === 'identity') return 'identity';
  const form = v && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v).find((k): k is keyof typeof SKU_MAP_FORMS => k in SKU_MAP_FORMS) : undefined;
  if (!form) {
    ctx.addIssue({ code: 'custom', message: 'expected identity, { inline: … }, { csv: file }, { table: cellar.sku_map } or { template: "…" }' });
    return z.NEVER;
  }
  return forward(SKU_MAP_FORMS[form], v, ctx) as SkuMapConfig;
});

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
    /** Field holding the vintage year (optional); dotted paths reach nested fields. */
    vintage: field.optional(),
    /** Vintage when no field gives it (or the row's is null). Default: none (non-vintage). */
    defaultVintage: vintageYear.optional(),
    /** Field holding the bottle size in ml; default: every row is `defaultBottleSizeMl`. */
    bottleSizeMl: field.optional(),
    /** Bottle size in ml when no field gives it (or the row's is null). Default 750. */
    defaultBottleSizeMl: bottleSize.default(750),
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
    if (typeof m.skus === 'object' && 'template' in m.skus && m.skus.template.includes('{vintage}') && !m.vintage && m.defaultVintage === undefined) {
      ctx.addIssue({ code: 'custom', path: ['skus', 'template'], message: 'uses {vintage}, but the mapping has neither vintage (a field) nor defaultVintage' });
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
        /** `csv` suppliers: where their files come from and how to read them (see connectors/feed/config.ts). */
        feed: FeedSpec.optional(),
        /** `http` suppliers that push their rows to the API (see connectors/feed/config.ts). */
        push: PushSpec.optional(),
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
    if (s.source.feed && s.source.kind !== 'csv') ctx.addIssue({ code: 'custom', path: ['source', 'feed'], message: `only for source kind csv (this supplier is ${s.source.kind})` });
    if (s.source.push && s.source.kind !== 'http') ctx.addIssue({ code: 'custom', path: ['source', 'push'], message: `only for source kind http (this supplier is ${s.source.kind})` });
    if ((s.source.kind === 'csv' && s.source.feed) || (s.source.kind === 'http' && s.source.push)) {
      const what = s.source.kind === 'csv' ? 'a file feed' : 'a pushed feed';
      if (s.source.tables.length !== 1) ctx.addIssue({ code: 'custom', path: ['source', 'tables'], message: `${what} is one table: list exactly one` });
      else if (!s.source.tables[0]!.key) ctx.addIssue({ code: 'custom', path: ['source', 'tables', 0, 'key'], message: `required for ${what}: the columns that identify a row across files and requests` });
    }
  });

export type SupplierConfig = z.output<typeof SupplierSpec>;
export type MappingConfig = SupplierConfig['mapping'];
