import { CellarError, ConfigError } from '../core/errors.js';

/** An error the API answers with its own status and code: `{ "error": { "code", "message" } }`. */
export class ApiError extends CellarError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

export const notFound = (message: string) => new ApiError(404, 'not_found', message);
export const badRequest = (message: string) => new ApiError(400, 'invalid_request', message);
export const notConfigured = (status: 501 | 503, message: string) => new ApiError(status, status === 501 ? 'not_implemented' : 'not_configured', message);

/** The status and body for any error a handler throws; unexpected errors say nothing about internals. */
export function errorAnswer(err: unknown): { status: number; body: { error: { code: string; message: string } }; unexpected: boolean } {
  const e = err as { validation?: unknown; message?: string; statusCode?: number; code?: string };
  if (err instanceof ApiError) return { status: err.status, body: { error: { code: err.code, message: err.message } }, unexpected: false };
  if (err instanceof ConfigError) return { status: 400, body: { error: { code: 'invalid_request', message: err.message } }, unexpected: false };
  if (e?.validation) return { status: 400, body: { error: { code: 'invalid_request', message: e.message ?? 'invalid request' } }, unexpected: false };
  if (err instanceof CellarError && err.retriable) {
    return { status: 503, body: { error: { code: err.code, message: 'a store this endpoint needs is unavailable; retry shortly' } }, unexpected: false };
  }
  // Fastify's own client errors (bad JSON body, unsupported media type, body too large).
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, body: { error: { code: 'invalid_request', message: e.message ?? 'invalid request' } }, unexpected: false };
  }
  return { status: 500, body: { error: { code: 'internal_error', message: 'the request failed unexpectedly; the server log has the details' } }, unexpected: true };
}
