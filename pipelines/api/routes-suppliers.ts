import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { supplierHealth } from '../state/supplier-health.js';
import { notFound } from './errors.js';
import { ANY_OBJECT, errorResponses } from './schemas.js';

/**
 * Per-supplier health for operators and probes: `GET /v1/suppliers` (every supplier Cellar knows of) and
 * `GET /v1/suppliers/{id}`: the reader's state (`ok`, `snapshotting`, `starting`, `failing` with the
 * error, `stopped`, `unknown`), last change, distance to the supplier's log, dead letters by reason with the
 * newest messages, held rows and the last reconciliation. `supplierIds` lists the registry's suppliers, so
 * one nothing reports on shows as `unknown` rather than not at all.
 */
export function registerSupplierRoutes(app: FastifyInstance, deps: { pool: pg.Pool; supplierIds?: string[] }): void {
  app.get(
    '/v1/suppliers',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'Health of every supplier: capture state, freshness, source lag, dead letters, last reconciliation',
        tags: ['operations'],
        response: { 200: { type: 'object', properties: { suppliers: { type: 'array', items: ANY_OBJECT } }, required: ['suppliers'] } },
      },
    },
    async () => ({ suppliers: await supplierHealth(deps.pool, deps.supplierIds ? { supplierIds: deps.supplierIds } : {}) }),
  );
  app.get<{ Params: { id: string } }>(
    '/v1/suppliers/:id',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'Health of one supplier',
        tags: ['operations'],
        params: { type: 'object', properties: { id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' } }, required: ['id'] },
        response: { 200: ANY_OBJECT, ...errorResponses(404) },
      },
    },
    async (req) => {
      const [h] = await supplierHealth(deps.pool, { only: req.params.id });
      if (!h || (h.status === 'unknown' && !h.capture && !h.deadLetters.byReason.length && !h.lastReconciliation && !deps.supplierIds?.includes(req.params.id))) {
        throw notFound(`no supplier ${req.params.id}: nothing has reported on it`);
      }
      return h;
    },
  );
}
