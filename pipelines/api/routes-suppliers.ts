import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import type { ConnectorStatusSource } from '../../connectors/kafka-connect/status-source.js';
import { connectorNamePrefix } from '../state/connector-health.js';
import { readConnectorStatus, supplierHealth, type ConnectorLookup } from '../state/supplier-health.js';
import { notFound } from './errors.js';
import { ANY_OBJECT, errorResponses } from './schemas.js';

/**
 * Per-supplier health for operators and probes: `GET /v1/suppliers` (every supplier Cellar knows of) and
 * `GET /v1/suppliers/{id}`: the reader's state (`ok`, `snapshotting`, `starting`, `failing` with the
 * error, `stopped`, `unknown`), last change, distance to the supplier's log, dead letters by reason with the
 * newest messages, held rows and the last reconciliation. `supplierIds` lists the registry's suppliers, so
 * one nothing reports on shows as `unknown` rather than not at all. With `connectors` (Kafka Connect
 * configured), each request reads Connect once: suppliers captured by Debezium get their connector's state
 * (connector `<namePrefix><supplier id>`; `namePrefix` defaults to CELLAR_CONNECT_NAME_PREFIX or `cellar
 * connectors`' default), and Connect unreachable becomes the `connector.error` of each (and the list's
 * `kafkaConnect.error`), never a failed request.
 */
export function registerSupplierRoutes(
  app: FastifyInstance,
  deps: { pool: pg.Pool; supplierIds?: string[]; connectors?: ConnectorStatusSource; namePrefix?: string },
): void {
  const namePrefix = deps.connectors ? (deps.namePrefix ?? connectorNamePrefix()) : undefined;
  /** One Connect read for this request, or nothing without Connect. */
  const lookup = (): ConnectorLookup | undefined => (deps.connectors && namePrefix !== undefined ? { reading: readConnectorStatus(deps.connectors), namePrefix } : undefined);
  app.get(
    '/v1/suppliers',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'Health of every supplier: capture or Debezium connector state, freshness, source lag, dead letters, last reconciliation',
        tags: ['operations'],
        response: {
          200: {
            type: 'object',
            properties: {
              suppliers: { type: 'array', items: ANY_OBJECT },
              kafkaConnect: { type: 'object', properties: { error: { type: 'string' } }, description: 'Present when Kafka Connect could not be read: why.' },
            },
            required: ['suppliers'],
          },
        },
      },
    },
    async () => {
      const connectors = lookup();
      const suppliers = await supplierHealth(deps.pool, { supplierIds: deps.supplierIds, connectors });
      const read = await connectors?.reading;
      return { suppliers, ...(read && 'error' in read ? { kafkaConnect: { error: read.error } } : {}) };
    },
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
      const connectors = lookup();
      const [h] = await supplierHealth(deps.pool, { only: req.params.id, connectors });
      // A connector (or Connect unreachable, so whether there is one cannot be told) makes it a supplier.
      if (!h || (h.status === 'unknown' && !h.capture && !h.rawTopics && !h.connector && !h.deadLetters.byReason.length && !h.lastReconciliation && !deps.supplierIds?.includes(req.params.id))) {
        throw notFound(`no supplier ${req.params.id}: nothing has reported on it${connectors ? ` and Kafka Connect has no connector ${connectors.namePrefix}${req.params.id}` : ''}`);
      }
      return h;
    },
  );
}
