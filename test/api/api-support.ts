import { Writable } from 'node:stream';
import { pino } from 'pino';
import type pg from 'pg';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import type { Logger } from '../../pipelines/core/logger.js';
import { createApiServer, type ApiServer, type ApiServerOptions } from '../../pipelines/api/server.js';
import { createApiKey, type Role } from '../../pipelines/api/keys-store.js';
import type { RegionalStock } from '../../schemas/records.js';
import { sseEntries } from '../support/sse-client.js';

/** A logger whose JSON lines are kept in memory, so tests can check what was (not) logged. */
export function memoryLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** A started API on a free port with its base URL and captured log. */
export interface TestApi {
  url: string;
  server: ApiServer;
  lines: string[];
  close(): Promise<void>;
}

export async function startTestApi(o: Omit<ApiServerOptions, 'log' | 'metrics'> & { metrics?: CellarMetrics }): Promise<TestApi> {
  const { log, lines } = memoryLogger();
  const server = await createApiServer({ ...o, log, metrics: o.metrics ?? new CellarMetrics(false) });
  const url = await server.listen(0, '127.0.0.1');
  return { url, server, lines, close: () => server.close() };
}

/** Creates one key per role (unlimited rate) and returns them by role. */
export async function keysByRole(pool: pg.Pool, prefix: string): Promise<Record<Role, string>> {
  const out = {} as Record<Role, string>;
  for (const role of ['reader', 'operator', 'admin'] as const) out[role] = (await createApiKey(pool, { name: `${prefix}-${role}`, role, rateLimitPerS: 0 })).key;
  return out;
}

/** A RegionalStock record with defaults (750 ml bottles). */
export function stock(region: string, sku: string, bottles: number, version: number, sourceTsMs = Date.now() - 50, bottleSizeMl: number | null = 750): RegionalStock {
  return { region, sku, bottleSizeMl, bottles, contributors: 1, version, sourceTsMs, updatedTsMs: Date.now() };
}

/** GET/POST with a key; returns status, headers and parsed JSON body. */
export async function call(
  url: string,
  key: string | undefined,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const headers: Record<string, string> = { ...init.headers };
  if (key !== undefined) headers.authorization = `Bearer ${key}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, headers: res.headers, body };
}

/** One server-sent event as parsed by {@link openEvents}. */
export interface SseEvent {
  id?: string;
  event: string;
  data: any;
}

/**
 * Opens `GET /v1/events` (with an optional Last-Event-ID) and collects parsed events until closed.
 * `lastId` follows the stream's ids as a browser's EventSource would (also from comment-only entries).
 */
export async function openEvents(url: string, key: string, lastEventId?: string): Promise<{ events: SseEvent[]; lastId: () => string | undefined; status: number; close(): void }> {
  const ac = new AbortController();
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (lastEventId) headers['last-event-id'] = lastEventId;
  const res = await fetch(url, { headers, signal: ac.signal });
  const events: SseEvent[] = [];
  let lastId = lastEventId;
  if (res.ok && res.body) {
    void (async () => {
      try {
        for await (const e of sseEntries(res.body as unknown as AsyncIterable<Uint8Array>)) {
          if (e.id !== undefined) lastId = e.id;
          if (e.data.length) events.push({ id: e.id, event: e.event, data: JSON.parse(e.data.join('\n')) });
        }
      } catch {
        /* aborted */
      }
    })();
  }
  return { events, lastId: () => lastId, status: res.status, close: () => ac.abort() };
}
