import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { contributorsOf, historyOf } from '../state/history.js';
import { query } from '../core/pg.js';
import { ApiError, notFound } from './errors.js';
import { ANY_OBJECT, errorResponses, REGION, SKU } from './schemas.js';

/** A time parameter: epoch milliseconds or an ISO 8601 date-time; `name` for the 400. */
export function parseTime(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined || v === '') return fallback;
  const ms = /^-?\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(ms)) throw new ApiError(400, 'invalid_request', `${name}=${v}: expected epoch milliseconds or an ISO 8601 time such as 2026-11-29T10:00:00Z`);
  return ms;
}

const TIME = { type: 'string', description: 'Epoch milliseconds or ISO 8601 (`2026-11-29T10:00:00Z`).' } as const;

/**
 * `GET /v1/stock/{region}/{sku}/history` (every effective change of a total, from `cellar.stock_history`)
 * and `GET /v1/stock/{region}/{sku}/contributors` (what makes up the total now), role reader.
 */
export function registerHistoryRoutes(app: FastifyInstance, pool: pg.Pool): void {
  const params = { type: 'object', properties: { region: REGION, sku: SKU }, required: ['region', 'sku'] } as const;
  app.get<{ Params: { region: string; sku: string }; Querystring: { from?: string; to?: string; after?: number; limit: number } }>(
    '/v1/stock/:region/:sku/history',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'Every change of one total over a time range (by source time)',
        description: 'Each effective change: the key\'s version after it, the total after it, the delta, the contributor (supplier, warehouse) that moved it and its source time. Kept CELLAR_HISTORY_RETENTION_DAYS days. Page with `after` = the last version seen.',
        tags: ['stock'],
        params,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            from: { ...TIME, description: 'From this source time (inclusive). Default: the start of what is kept.' },
            to: { ...TIME, description: 'Up to this source time (exclusive). Default: now.' },
            after: { type: 'integer', minimum: 0, description: 'Only versions after this one (paging).' },
            limit: { type: 'integer', minimum: 1, maximum: 5000, default: 1000, description: 'At most this many changes, 1–5000. Default 1000.' },
          },
        },
        response: { 200: ANY_OBJECT, ...errorResponses(400, 503) },
      },
    },
    async (req) => {
      const { region, sku } = req.params;
      const fromMs = parseTime(req.query.from, 'from', 0);
      const toMs = parseTime(req.query.to, 'to', Date.now() + 1);
      const changes = await historyOf(pool, region, sku, { fromMs, toMs, limit: req.query.limit, ...(req.query.after !== undefined ? { afterVersion: req.query.after } : {}) });
      return { region, sku, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), changes, next: changes.length === req.query.limit ? changes.at(-1)!.version : null };
    },
  );

  app.get<{ Params: { region: string; sku: string } }>(
    '/v1/stock/:region/:sku/contributors',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'What makes up one total: its live contributors by supplier and warehouse',
        tags: ['stock'],
        params,
        response: { 200: ANY_OBJECT, ...errorResponses(404, 503) },
      },
    },
    async (req) => {
      const { region, sku } = req.params;
      const contributors = await contributorsOf(pool, region, sku);
      if (!contributors.length) {
        const known = await query(pool, 'reading a total', 'SELECT 1 FROM cellar.regional_stock WHERE region = $1 AND sku = $2', [region, sku]);
        if (!known.rowCount) throw notFound(`no stock for SKU ${JSON.stringify(sku)} in region ${region}`);
      }
      const bySupplier = new Map<string, { supplierId: string; bottles: number; warehouses: Map<string, number> }>();
      for (const c of contributors) {
        const s = bySupplier.get(c.supplierId) ?? { supplierId: c.supplierId, bottles: 0, warehouses: new Map<string, number>() };
        s.bottles += c.bottles;
        s.warehouses.set(c.warehouseId, (s.warehouses.get(c.warehouseId) ?? 0) + c.bottles);
        bySupplier.set(c.supplierId, s);
      }
      return {
        region, sku, bottles: contributors.reduce((n, c) => n + c.bottles, 0),
        suppliers: [...bySupplier.values()].map((s) => ({ supplierId: s.supplierId, bottles: s.bottles, warehouses: [...s.warehouses].map(([warehouseId, bottles]) => ({ warehouseId, bottles })) })),
        contributors,
      };
    },
  );
}
