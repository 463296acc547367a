import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { stockAsOf } from '../state/history.js';
import { parseTime } from './routes-history.js';
import type { StockReader } from './stock-reader.js';
import { errorResponses, REGION, REGIONS, SKU, SKU_REGIONS, STOCK_ITEM, STOCK_PAGE } from './schemas.js';
import { notFound } from './errors.js';

/** `GET /v1/stock/{region}/{sku}`, `GET /v1/stock/{region}`, `GET /v1/skus/{sku}`, `GET /v1/regions` (role reader). */
export function registerStockRoutes(app: FastifyInstance, reader: StockReader, pool?: pg.Pool): void {
  app.get<{ Params: { region: string; sku: string } }>(
    '/v1/stock/:region/:sku',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'Stock of one SKU in one region',
        description: 'Served from the Redis snapshot; from Postgres when Redis is unavailable or does not hold the key. `ETag` is the key\'s version.',
        tags: ['stock'],
        params: { type: 'object', properties: { region: REGION, sku: SKU }, required: ['region', 'sku'] },
        response: { 200: STOCK_ITEM, ...errorResponses(404, 503) },
      },
    },
    async (req, reply) => {
      const item = await reader.get(req.params.region, req.params.sku);
      if (!item) throw notFound(`no stock for SKU ${JSON.stringify(req.params.sku)} in region ${req.params.region}`);
      void reply.header('etag', `"${item.version}"`).header('cache-control', 'no-cache');
      return item;
    },
  );

  app.get<{ Params: { region: string }; Querystring: { prefix?: string; after?: string; limit: number; asOf?: string } }>(
    '/v1/stock/:region',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'A page of a region\'s stock, in SKU order',
        description:
          'Keyset paging: pass the previous page\'s `next` as `after`. Served from Postgres (its primary key keeps SKUs ordered); from Redis when Postgres is unavailable (regions up to 50,000 SKUs).',
        tags: ['stock'],
        params: { type: 'object', properties: { region: REGION }, required: ['region'] },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            prefix: { ...SKU, description: 'Only SKUs starting with this.' },
            after: { ...SKU, description: 'Start after this SKU (the previous page\'s `next`).' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100, description: 'Page size, 1–1000. Default 100.' },
            asOf: { type: 'string', description: 'The totals as they stood at this source time (epoch ms or ISO 8601), from the stock history: per SKU, the last change stamped at or before it.' },
          },
        },
        response: { 200: STOCK_PAGE, ...errorResponses(400, 503) },
      },
    },
    async (req) => {
      if (req.query.asOf === undefined || !pool) return reader.page(req.params.region, { prefix: req.query.prefix, after: req.query.after, limit: req.query.limit });
      const asOfMs = parseTime(req.query.asOf, 'asOf', Date.now());
      const items = await stockAsOf(pool, req.params.region, asOfMs, { ...(req.query.prefix ? { prefix: req.query.prefix } : {}), ...(req.query.after ? { after: req.query.after } : {}), limit: req.query.limit });
      return {
        region: req.params.region, items, next: items.length === req.query.limit ? items.at(-1)!.sku : null,
        freshness: { store: 'postgres', asOfMs, ageMs: Date.now() - asOfMs, sourceTsMs: items.reduce((m, i) => Math.max(m, i.sourceTsMs), 0) || null },
      };
    },
  );

  app.get<{ Params: { sku: string } }>(
    '/v1/skus/:sku',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'Stock of one SKU in every region that has it',
        description: 'Served from the Redis snapshots (one atomic read over all regions); from Postgres when Redis is unavailable or has none.',
        tags: ['stock'],
        params: { type: 'object', properties: { sku: SKU }, required: ['sku'] },
        response: { 200: SKU_REGIONS, ...errorResponses(404, 503) },
      },
    },
    async (req) => {
      const regions = await reader.sku(req.params.sku);
      if (regions.length === 0) throw notFound(`no stock for SKU ${JSON.stringify(req.params.sku)} in any region`);
      return { sku: req.params.sku, regions };
    },
  );

  app.get(
    '/v1/regions',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'Regions with their SKU count and total bottles',
        tags: ['stock'],
        response: { 200: REGIONS, ...errorResponses(503) },
      },
    },
    async () => ({ regions: await reader.regions() }),
  );
}
