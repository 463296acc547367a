/**
 * JSON Schemas of the read API's requests and responses. Fastify validates requests with them (a
 * mismatch is a 400 naming the field), serializes responses with them, and the OpenAPI document is
 * generated from the same objects (see openapi.ts), so the three cannot drift apart.
 */

/** A region name, as in supplier mappings. */
export const REGION = { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$', description: 'Region: 1–64 letters, digits, `.`, `_` or `-`.' } as const;
/** A canonical SKU (any printable text up to 200 characters). */
export const SKU = { type: 'string', minLength: 1, maxLength: 200, pattern: '^[^\\u0000-\\u001f\\u007f]+$', description: 'Canonical SKU (URL-encoded in paths).' } as const;

const nullableInt = { type: ['integer', 'null'] } as const;

/** A SKU's bottle size (every canonical SKU has exactly one). */
const BOTTLE_SIZE = { type: ['integer', 'null'], description: 'Bottle size of the SKU, in ml; null for totals written before sizes were kept.' } as const;

export const FRESHNESS = {
  type: 'object',
  description:
    'How current the value is. `store` answered; `asOfMs` is when that store last wrote it (Redis: the region snapshot, Postgres: the row), `ageMs` = now − asOfMs; `sourceTsMs` (Postgres) is the newest contributing source commit.',
  properties: { store: { type: 'string', enum: ['redis', 'postgres'] }, asOfMs: nullableInt, ageMs: nullableInt, sourceTsMs: nullableInt },
  required: ['store', 'asOfMs', 'ageMs'],
} as const;

export const STOCK_ITEM = {
  type: 'object',
  properties: {
    region: { type: 'string' },
    sku: { type: 'string' },
    bottleSizeMl: BOTTLE_SIZE,
    bottles: { type: 'integer', description: 'Total bottles of `bottleSizeMl` over every contributor.' },
    version: { type: 'integer', description: 'Monotonic per key: the number of effective changes applied to it.' },
    heldContributors: { type: 'integer', description: 'Contributors counted at their last valid state: a newer change of their source row was refused (a dead letter). 0 normally; `GET /v1/held` lists them.' },
    freshness: FRESHNESS,
  },
  required: ['region', 'sku', 'bottleSizeMl', 'bottles', 'version', 'freshness'],
} as const;

export const STOCK_PAGE = {
  type: 'object',
  properties: {
    region: { type: 'string' },
    items: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          sku: { type: 'string' },
          bottleSizeMl: BOTTLE_SIZE,
          bottles: { type: 'integer' },
          version: { type: 'integer' },
          heldContributors: { type: 'integer', description: 'Contributors counted at their last valid state: a newer change of their source row was refused (a dead letter). 0 normally; `GET /v1/held` lists them.' },
          updatedTsMs: nullableInt,
          sourceTsMs: nullableInt,
        },
        required: ['sku', 'bottleSizeMl', 'bottles', 'version'],
      },
    },
    next: { type: ['string', 'null'], description: 'Pass as `after` to get the next page; null on the last page.' },
    freshness: FRESHNESS,
  },
  required: ['region', 'items', 'next', 'freshness'],
} as const;

export const SKU_REGIONS = {
  type: 'object',
  properties: { sku: { type: 'string' }, regions: { type: 'array', items: STOCK_ITEM } },
  required: ['sku', 'regions'],
} as const;

/** The data of a server-sent `stock` event (`GET /v1/events`): one region's changes from one sink write. */
export const STOCK_EVENT = {
  type: 'object',
  properties: {
    region: { type: 'string' },
    updatedTsMs: { type: 'integer', description: 'When the sink wrote the region\'s snapshot.' },
    changes: {
      type: 'array',
      items: {
        type: 'object',
        properties: { sku: { type: 'string' }, bottleSizeMl: BOTTLE_SIZE, bottles: { type: 'integer' }, version: { type: 'integer' } },
        required: ['sku', 'bottleSizeMl', 'bottles', 'version'],
      },
    },
  },
  required: ['region', 'updatedTsMs', 'changes'],
} as const;

export const REGIONS = {
  type: 'object',
  properties: {
    regions: {
      type: 'array',
      items: {
        type: 'object',
        properties: { region: { type: 'string' }, skus: { type: 'integer' }, bottles: { type: 'integer' }, updatedTsMs: nullableInt },
        required: ['region', 'skus', 'bottles'],
      },
    },
  },
  required: ['regions'],
} as const;

/** The body of every error answer. */
export const ERROR = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

/** A free-form JSON object (operator answers whose shape belongs to another component). */
export const ANY_OBJECT = { type: 'object', additionalProperties: true } as const;

/** Error answers every authenticated route can give. */
export function errorResponses(...extra: number[]): Record<number, typeof ERROR & { description: string }> {
  const text: Record<number, string> = {
    400: 'The request is invalid (the message names the field).',
    401: 'No API key, a key that is not valid, or a revoked key.',
    403: 'The key\'s role does not allow this endpoint.',
    404: 'Not found.',
    413: 'The body or its rows exceed the supplier\'s limits.',
    415: 'The Content-Type is not one the endpoint reads.',
    422: 'The Idempotency-Key was used for another request.',
    429: 'The key\'s rate limit is exceeded; retry after `Retry-After` seconds.',
    501: 'Not available in this deployment.',
    503: 'A store or service this endpoint needs is unavailable.',
  };
  const out: Record<number, typeof ERROR & { description: string }> = {};
  for (const s of [400, 401, 403, 429, ...extra]) out[s] = { ...ERROR, description: text[s] ?? 'Error.' };
  return out;
}
