import type { FastifyInstance, RouteOptions } from 'fastify';
import { STOCK_EVENT } from './schemas.js';

/** What the OpenAPI document needs of a registered route. */
interface RouteInfo {
  method: string;
  url: string;
  schema: Record<string, unknown>;
  role?: string;
}

type JsonSchema = Record<string, unknown>;

/**
 * Collects every route registered after this call (Fastify's onRoute hook) so {@link openApiDocument}
 * describes exactly what is served, from the same schemas that validate and serialize.
 */
export function collectRoutes(app: FastifyInstance): RouteInfo[] {
  const routes: RouteInfo[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const methods = (Array.isArray(r.method) ? r.method : [r.method]).filter((m) => m !== 'HEAD');
    const schema = (r.schema ?? {}) as Record<string, unknown>;
    if (schema.hide) return;
    for (const method of methods) routes.push({ method: method.toLowerCase(), url: r.url, schema, role: (r.config as { role?: string } | undefined)?.role });
  });
  return routes;
}

/** Turns an object schema of params/querystring/headers into OpenAPI parameters. */
function parameters(schema: unknown, where: 'path' | 'query' | 'header'): JsonSchema[] {
  const s = schema as { properties?: Record<string, JsonSchema>; required?: string[] } | undefined;
  if (!s?.properties) return [];
  return Object.entries(s.properties).map(([name, p]) => {
    const { description, ...rest } = p;
    return { name, in: where, required: where === 'path' || (s.required ?? []).includes(name), ...(description ? { description } : {}), schema: rest };
  });
}

/** OpenAPI 3.1 (JSON Schema 2020-12 compatible, so the route schemas are used as they are). */
export function openApiDocument(routes: RouteInfo[], info: { title: string; version: string; description: string }): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z_]\w*)/g, '{$1}');
    const s = r.schema;
    const responses: Record<string, JsonSchema> = {};
    for (const [status, body] of Object.entries((s.response ?? {}) as Record<string, JsonSchema>)) {
      const { description, ...schema } = body;
      const isStream = r.url === '/v1/events' && status === '200';
      responses[status] = {
        description: (description as string | undefined) ?? (status.startsWith('2') ? 'OK' : 'Error'),
        content: isStream
          ? { 'text/event-stream': { schema: { type: 'string', description: 'The data of each `stock` event is a `StockEvent` (#/components/schemas/StockEvent).' } } }
          : { 'application/json': { schema } },
      };
    }
    const op: JsonSchema = {
      operationId: `${r.method}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      ...(s.summary ? { summary: s.summary } : {}),
      ...(s.description ? { description: s.description } : {}),
      ...(s.tags ? { tags: s.tags } : {}),
      parameters: [...parameters(s.params, 'path'), ...parameters(s.querystring, 'query'), ...parameters(s.headers, 'header')],
      responses,
    };
    if (s.body) op.requestBody = { required: false, content: { 'application/json': { schema: s.body } } };
    if (r.role) {
      op.security = [{ bearerKey: [] }, { headerKey: [] }];
      op['x-cellar-role'] = r.role;
      op.description = `${(op.description as string | undefined) ?? ''}${op.description ? '\n\n' : ''}Requires a key with role \`${r.role}\` or higher.`;
    }
    (paths[path] ??= {})[r.method] = op;
  }
  return {
    openapi: '3.1.0',
    info,
    paths,
    components: {
      schemas: { StockEvent: STOCK_EVENT },
      securitySchemes: {
        bearerKey: { type: 'http', scheme: 'bearer', description: 'An API key `ck_<id>_<secret>` from `cellar keys create`.' },
        headerKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
      },
    },
  };
}
