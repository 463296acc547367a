import type { FastifyInstance } from 'fastify';
import { heldSummary, listHeld } from '../state/held.js';
import type { Producer } from 'kafkajs';
import type pg from 'pg';
import { deadLetterCounts, listDeadLetters, replayDeadLetters, replayPlan, type DeadLetterFilter } from '../state/dead-letters.js';
import { listAudit } from './audit.js';
import type { ConnectorStatusSource } from '../../connectors/kafka-connect/status-source.js';
import { badRequest, notConfigured } from './errors.js';
import { listApiKeys } from './keys-store.js';
import { ANY_OBJECT, errorResponses } from './schemas.js';

/** Runs one reconciliation (supplier rows vs. materialized totals) and returns its report. */
export type ReconcileFn = (opts: { supplierId?: string; repair: boolean }) => Promise<Record<string, unknown>>;

/** What the operator endpoints act on; each may be absent in a deployment (the endpoint then says so). */
export interface OpsDeps {
  pool: pg.Pool;
  /** Kafka Connect status; absent without CELLAR_CONNECT_URL (503). */
  connectors?: ConnectorStatusSource;
  /** Reconciliation; absent when this process cannot run one (501). */
  reconcile?: ReconcileFn;
  /** A connected producer for replaying dead letters to their topics (created on first use). */
  producer?: () => Promise<Producer>;
}

const DLQ_FILTER = {
  reason: { type: 'string', pattern: '^[a-z_]{1,64}$', description: 'Reason code, e.g. `unknown_sku`.' },
  supplierId: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
  stage: { type: 'string', enum: ['source', 'normalizer', 'aggregator', 'sink-postgres', 'sink-redis'] },
  pending: { type: 'boolean', description: 'Only letters never replayed.' },
} as const;

/**
 * Operator (connector status, reconciliation, dead letters) and admin (replay, audit, keys) endpoints.
 * Every call is written to `cellar.api_audit` by the server's audit hook, allowed or not.
 */
export function registerOpsRoutes(app: FastifyInstance, deps: OpsDeps): void {
  app.get(
    '/v1/ops/connectors',
    {
      config: { role: 'operator', audit: 'connectors.status' },
      schema: {
        summary: 'Status of every Kafka Connect connector and task',
        tags: ['operations'],
        response: { 200: { type: 'object', properties: { connectors: { type: 'array', items: ANY_OBJECT } }, required: ['connectors'] }, ...errorResponses(503) },
      },
    },
    async () => {
      if (!deps.connectors) throw notConfigured(503, 'Kafka Connect not configured: set CELLAR_CONNECT_URL');
      return { connectors: await deps.connectors.status() };
    },
  );

  app.post<{ Body: { supplierId?: string; repair?: boolean } }>(
    '/v1/ops/reconcile',
    {
      config: { role: 'operator', audit: 'reconcile.run' },
      schema: {
        summary: 'Run a reconciliation now (supplier rows vs. materialized totals) and return its report',
        tags: ['operations'],
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: { supplierId: DLQ_FILTER.supplierId, repair: { type: 'boolean', default: true, description: 'Repair drifted keys. Default true.' } },
        },
        response: { 200: ANY_OBJECT, ...errorResponses(501, 503) },
      },
    },
    async (req) => {
      if (!deps.reconcile) throw notConfigured(501, 'reconciliation is not available in this process');
      const body = req.body ?? {};
      req.auditTarget = body.supplierId ?? 'all suppliers';
      return deps.reconcile({ supplierId: body.supplierId, repair: body.repair ?? true });
    },
  );

  app.get<{ Querystring: Omit<DeadLetterFilter, 'ids'> & { limit: number } }>(
    '/v1/ops/dead-letters',
    {
      config: { role: 'operator', audit: 'dead-letters.list' },
      schema: {
        summary: 'Dead letters by stage and reason, and the newest letters',
        tags: ['operations'],
        querystring: { type: 'object', additionalProperties: false, properties: { ...DLQ_FILTER, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 50 } } },
        response: {
          200: { type: 'object', properties: { counts: { type: 'array', items: ANY_OBJECT }, letters: { type: 'array', items: ANY_OBJECT } }, required: ['counts', 'letters'] },
          ...errorResponses(503),
        },
      },
    },
    async (req) => {
      const [counts, letters] = await Promise.all([deadLetterCounts(deps.pool), listDeadLetters(deps.pool, req.query)]);
      return {
        counts,
        letters: letters.map((l) => ({ ...l, key: l.key?.toString('base64') ?? null, value: l.value?.toString('base64') ?? null })),
      };
    },
  );

  app.post<{ Body: DeadLetterFilter & { dryRun?: boolean } }>(
    '/v1/ops/dead-letters/replay',
    {
      config: { role: 'admin', audit: 'dead-letters.replay' },
      schema: {
        summary: 'Produce dead letters again to their original topics (after fixing a mapping)',
        description: 'At least one filter is required. A replayed change already applied, or older than what is, changes nothing.',
        tags: ['operations'],
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ids: { type: 'array', items: { type: 'integer', minimum: 1 }, maxItems: 10_000 },
            ...DLQ_FILTER,
            limit: { type: 'integer', minimum: 1, maximum: 100_000 },
            dryRun: { type: 'boolean', description: 'Only say which letters would be replayed.' },
          },
        },
        response: {
          200: { type: 'object', properties: { replayed: { type: 'array', items: { type: 'integer' } }, queued: { type: 'array', items: { type: 'integer' }, description: 'Embedded runtime letters handed back to it through cellar.repair_requests.' }, skipped: { type: 'array', items: { type: 'integer' } }, dryRun: { type: 'boolean' } }, required: ['replayed', 'skipped'] },
          ...errorResponses(503),
        },
      },
    },
    async (req) => {
      const { dryRun, ...filter } = req.body;
      if (!filter.ids?.length && !filter.reason && !filter.supplierId && !filter.stage && !filter.pending) {
        throw badRequest('name the letters to replay: ids, reason, supplierId, stage or pending');
      }
      req.auditTarget = filter.ids?.length ? `ids ${filter.ids.slice(0, 20).join(',')}${filter.ids.length > 20 ? ',…' : ''}` : (filter.reason ?? filter.supplierId ?? filter.stage ?? 'pending');
      if (dryRun) {
        const letters = await listDeadLetters(deps.pool, { ...filter, limit: filter.limit ?? 100_000 });
        const plan = replayPlan(letters);
        const ids = (ls: typeof letters) => ls.map((l) => l.id);
        return { replayed: ids(plan.kafka), queued: ids(plan.embedded), skipped: ids(plan.none), dryRun: true };
      }
      const producer = deps.producer;
      const result = await replayDeadLetters(deps.pool, async () => {
        if (!producer) throw notConfigured(503, 'Kafka is not configured in this process');
        return producer();
      }, filter, `api:${req.apiKey?.name ?? 'key'}`);
      req.auditDetail = `replayed ${result.replayed.length}, queued ${result.queued.length}, skipped ${result.skipped.length}`;
      const ids = (ls: Array<{ id: number }>) => ls.map((l) => l.id);
      return { replayed: ids(result.replayed), queued: ids(result.queued), skipped: ids(result.skipped), dryRun: false };
    },
  );

  app.get<{ Querystring: { action?: string; keyId?: string; before?: number; limit: number } }>(
    '/v1/ops/audit',
    {
      config: { role: 'admin', audit: 'audit.read' },
      schema: {
        summary: 'The audit trail of operator and admin actions, newest first',
        tags: ['operations'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            action: { type: 'string', maxLength: 64 },
            keyId: { type: 'string', pattern: '^[0-9a-f]{12}$' },
            before: { type: 'integer', minimum: 1, description: 'Only rows with a smaller id (paging).' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
          },
        },
        response: { 200: { type: 'object', properties: { entries: { type: 'array', items: ANY_OBJECT } }, required: ['entries'] }, ...errorResponses(503) },
      },
    },
    async (req) => ({ entries: await listAudit(deps.pool, { action: req.query.action, keyId: req.query.keyId, beforeId: req.query.before, limit: req.query.limit }) }),
  );

  app.get<{ Querystring: { supplierId?: string; limit: number } }>(
    '/v1/ops/held',
    {
      config: { role: 'operator', audit: 'held.list' },
      schema: {
        summary: 'Contributors held at their last valid state (a newer change of their row was dead-lettered), per supplier and reason, and the rows themselves',
        description: 'Each still counts what its row last validly said. A valid change of the row, its delete, or `cellar dlq replay` after the mapping is fixed releases it.',
        tags: ['operations'],
        querystring: { type: 'object', additionalProperties: false, properties: { supplierId: DLQ_FILTER.supplierId, limit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 } } },
        response: { 200: { type: 'object', properties: { summary: { type: 'array', items: ANY_OBJECT }, items: { type: 'array', items: ANY_OBJECT } }, required: ['summary', 'items'] }, ...errorResponses(503) },
      },
    },
    async (req) => {
      const summary = (await heldSummary(deps.pool)).filter((h) => !req.query.supplierId || h.supplierId === req.query.supplierId);
      return { summary, items: await listHeld(deps.pool, { ...(req.query.supplierId ? { supplierId: req.query.supplierId } : {}), limit: req.query.limit }) };
    },
  );

  app.get(
    '/v1/ops/keys',
    {
      config: { role: 'admin', audit: 'keys.list' },
      schema: {
        summary: 'Live API keys (ids, names, roles, limits; never secrets)',
        tags: ['operations'],
        response: { 200: { type: 'object', properties: { keys: { type: 'array', items: ANY_OBJECT } }, required: ['keys'] }, ...errorResponses(503) },
      },
    },
    async () => ({ keys: await listApiKeys(deps.pool) }),
  );
}
