import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import { parsePushBody, PUSH_TYPES, type PushedRow } from '../../connectors/feed/push-body.js';
import { feedKey, keyOfUnreadableLine, MissingKeyError } from '../../connectors/feed/snapshot-diff.js';
import { acceptPushed } from '../state/feed-inbox.js';
import { PushMappingCheck } from './feed-mapping-check.js';
import { deadLetter } from '../dlq/letter.js';
import { ApiError, notFound } from './errors.js';
import type { ReasonCode } from '../normalize/reasons.js';
import { ANY_OBJECT, errorResponses } from './schemas.js';

/** The largest body the feed route reads at all (a supplier's own `maxBodyBytes` is checked below it). */
const ROUTE_BODY_LIMIT = 1 << 30;
/** The supplier files are read again at most this often, ms. */
const REGISTRY_TTL_MS = 5_000;

/**
 * A row that will not count, with why and where, so the supplier can fix its side: refused by the API
 * (`stage: source`: not queued, dead-lettered here) or by the supplier's mapping (`stage: normalizer`:
 * queued, and dead-lettered by the runtime's normalizer, where it can be replayed once the mapping is fixed).
 */
interface RowOutcome {
  line: number;
  reason: ReasonCode;
  message: string;
  stage: 'source' | 'normalizer';
  /** The row as sent (cut at 500 characters), for its dead letter; not in the answer. */
  text?: string;
}

/**
 * `POST /v1/suppliers/{id}/feed?mode=changes|snapshot`: a supplier pushes rows (JSON array, NDJSON or CSV;
 * its own columns, optional `_op` and `_version`). The supplier's own key (role `supplier`) or an admin key;
 * any other key is refused (403). A body beyond the supplier's `maxBodyBytes`, or more rows than
 * `maxRows`, is refused (413). Rows that cannot be read, lack a key value or repeat a key are refused each
 * with its line (in the answer, and as dead letters of stage `source`); the others are queued for the
 * runtime in one transaction with the answer, which an `Idempotency-Key` replays for a retried request
 * (queued once; the same key with another body is 422). Queued rows the supplier's mapping refuses are
 * named in the answer too (`stage: normalizer`), and `accepted` counts only the rows that will count.
 */
export function registerFeedRoutes(app: FastifyInstance, deps: { pool: pg.Pool; suppliersDir?: string }): void {
  let registry: { at: number; suppliers: Supplier[] } | undefined;
  const mappingCheck = new PushMappingCheck(deps.pool);
  const supplierOf = (id: string): Supplier | undefined => {
    if (!deps.suppliersDir) return undefined;
    if (!registry || Date.now() - registry.at > REGISTRY_TTL_MS) registry = { at: Date.now(), suppliers: loadRegistry(deps.suppliersDir) };
    return registry.suppliers.find((s) => s.id === id);
  };
  void app.register(async (sub) => {
    // Bodies are read as bytes here: their size is checked against the supplier's limit, and hashed.
    sub.removeAllContentTypeParsers();
    sub.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: ROUTE_BODY_LIMIT }, (_req, body, done) => done(null, body));
    sub.post<{ Params: { id: string }; Querystring: { mode?: 'changes' | 'snapshot' } }>(
      '/v1/suppliers/:id/feed',
      {
        bodyLimit: ROUTE_BODY_LIMIT,
        config: { role: 'supplier' },
        // Who may push is decided before the request is validated: another supplier's key learns nothing more.
        preValidation: async (req) => {
          const id = (req.params as { id: string }).id;
          const key = req.apiKey!;
          if (!(key.role === 'admin' || (key.role === 'supplier' && key.supplierId === id))) {
            throw new ApiError(403, 'forbidden', key.role === 'supplier' ? `key ${key.id} pushes for supplier ${key.supplierId}, not ${id}` : `key ${key.id} has role ${key.role}; this endpoint needs supplier ${id}'s own key (role supplier) or an admin key`);
          }
        },
        schema: {
          summary: 'Push a supplier\'s rows: changes (upserts and deletes) or a full snapshot (rows absent are deleted)',
          tags: ['feeds'],
          params: { type: 'object', properties: { id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' } }, required: ['id'] },
          querystring: { type: 'object', properties: { mode: { type: 'string', enum: ['changes', 'snapshot'], default: 'changes' } } },
          response: { 202: ANY_OBJECT, ...errorResponses(400, 403, 404, 413, 415, 422) },
        },
      },
      async (req, reply) => {
        const id = req.params.id;
        const supplier = supplierOf(id);
        if (!supplier || supplier.source.kind !== 'http' || !supplier.source.push) throw notFound(`no supplier ${id} that pushes its rows (source.kind http with source.push)`);
        const push = supplier.source.push;
        const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        if (body.length > push.maxBodyBytes) throw new ApiError(413, 'too_large', `the body has ${body.length} bytes; ${id} accepts at most ${push.maxBodyBytes} per request (source.push.maxBodyBytes)`);
        const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        const format = (Object.keys(PUSH_TYPES) as Array<keyof typeof PUSH_TYPES>).find((f) => PUSH_TYPES[f] === type);
        if (!format) throw new ApiError(415, 'unsupported_media_type', `Content-Type ${type || '(none)'}: send ${Object.values(PUSH_TYPES).join(', ')}`);
        let parsedBody: unknown = body;
        if (format === 'json') {
          try {
            parsedBody = JSON.parse(body.toString('utf8'));
          } catch (err) {
            throw new ApiError(400, 'invalid_request', `the body is not JSON: ${(err as Error).message}`);
          }
        }
        const mode = req.query.mode ?? 'changes';
        const parsed = parsePushBody(parsedBody, format);
        if (parsed.rows.length > push.maxRows) throw new ApiError(413, 'too_many_rows', `the request has ${parsed.rows.length} rows; ${id} accepts at most ${push.maxRows} per request (source.push.maxRows)`);
        const tableKey = supplier.source.tables[0]!.key ?? [];
        const outcomes: RowOutcome[] = parsed.errors.map((e) => ({ line: e.line, reason: 'malformed_line', message: e.message, stage: 'source', text: e.text }));
        const textOf = (r: { row: Record<string, string | null> }) => JSON.stringify(r.row).slice(0, 500);
        const firstLine = new Map<string, number>();
        // Versions are all or none: rows without one would be ordered by arrival against rows ordered by the supplier.
        const versioned = parsed.rows.some((r) => r.version !== undefined);
        /** Keys that refused lines of a snapshot still name (key → line): those rows are kept, not deleted as missing. */
        const named = new Map<string, number>();
        const accepted = parsed.rows.filter((r) => {
          if (versioned && r.version === undefined) {
            outcomes.push({ line: r.line, reason: 'malformed_line', message: '_version missing while other rows of the request have one', stage: 'source', text: textOf(r) });
            const k = keyOfUnreadableLine({ line: r.line, text: '', values: r.row }, [], tableKey, ',');
            if (k !== undefined && !named.has(k)) named.set(k, r.line);
            return false;
          }
          if (mode === 'snapshot' && r.op === 'delete') {
            outcomes.push({ line: r.line, reason: 'malformed_line', message: '_op delete in a snapshot: rows a snapshot lacks are deleted', stage: 'source', text: textOf(r) });
            return false;
          }
          let k: string;
          try {
            k = feedKey(r, tableKey);
          } catch (err) {
            if (!(err instanceof MissingKeyError)) throw err;
            outcomes.push({ line: r.line, reason: 'missing_key', message: `key column "${err.column}" is empty or missing`, stage: 'source', text: textOf(r) });
            return false;
          }
          const seen = firstLine.get(k);
          if (seen !== undefined) {
            outcomes.push({ line: r.line, reason: 'duplicate_key', message: `key ${k} already on line ${seen}; the first one counts`, stage: 'source', text: textOf(r) });
            return false;
          }
          firstLine.set(k, r.line);
          return true;
        });
        const keeps: PushedRow[] = [];
        if (mode === 'snapshot') {
          for (const e of parsed.errors) {
            const k = keyOfUnreadableLine(e, parsed.header, tableKey, parsed.delimiter);
            if (k !== undefined && !named.has(k)) named.set(k, e.line);
          }
          for (const [k, line] of named) {
            if (firstLine.has(k)) continue; // the snapshot has the row on a line that could be read
            const values = JSON.parse(k) as string[];
            keeps.push({ line, row: Object.fromEntries(tableKey.map((c, i) => [c, values[i] ?? null])), op: 'keep' });
          }
        }
        const unplaced = await mappingCheck.refusals(supplier, accepted, registry?.suppliers ?? [supplier]);
        outcomes.push(...unplaced.map((u) => ({ ...u, stage: 'normalizer' as const })));
        outcomes.sort((a, b) => a.line - b.line);
        const idempotencyKey = typeof req.headers['idempotency-key'] === 'string' && req.headers['idempotency-key'] ? req.headers['idempotency-key'].slice(0, 255) : undefined;
        const bodySha256 = createHash('sha256').update(`${mode}\n`).update(body).digest('hex');
        const res = await acceptPushed(deps.pool, {
          supplierId: id, mode, rows: keeps.length ? [...accepted, ...keeps] : accepted, bodySha256, ...(idempotencyKey ? { idempotencyKey } : {}),
          answer: (inboxId) => ({ status: 202, answer: { supplier: id, mode, request: inboxId, rows: parsed.rows.length + parsed.errors.length, accepted: accepted.length - unplaced.length, queued: accepted.length, rejected: outcomes.map(({ text: _t, ...o }) => o) } }),
          letters: (inboxId) => outcomes.filter((o) => o.stage === 'source').map((o) => deadLetter('source', o.reason, `request ${inboxId ?? '(none queued)'} line ${o.line}: ${o.message}`, { supplierId: id, sourcePosition: `request ${inboxId ?? '-'}:${o.line}`, value: o.text ?? null })),
        });
        if (res.replayed && res.bodySha256 !== bodySha256) {
          throw new ApiError(422, 'idempotency_mismatch', `Idempotency-Key ${idempotencyKey} was used for another request in the last 24 hours; use a new key for a new request`);
        }
        if (res.replayed) void reply.header('idempotent-replayed', 'true');
        return reply.code(res.status).send(res.answer);
      },
    );
  });
}
