import { setFlagsFromString } from 'node:v8';
import { z } from 'zod';
import { parseSpec } from './spec.js';

/** Log levels Cellar accepts, quietest last. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/**
 * Settings of every Cellar process that are not about a service: logging, who acts, diagnostics. Read
 * from the environment like {@link RuntimeConfigSpec}; each field's description names its variable.
 */
export const ProcessEnvSpec = z.object({
  logLevel: z.enum(LOG_LEVELS, { error: `expected one of ${LOG_LEVELS.join(', ')}` }).optional().describe(
    'CELLAR_LOG_LEVEL: log level of every process (trace, debug, info, warn, error, fatal, silent). Default `info` for workers, `warn` for commands that print a report.',
  ),
  actor: z.string().min(1).max(200).optional().describe(
    'CELLAR_ACTOR: who acts, recorded with dead-letter replays and resolutions, reloads and repairs. Default the user name.',
  ),
  keepLogs: z.enum(['0', '1']).default('0').describe(
    'CELLAR_KEEP_LOGS: 1 keeps the private services\' data and logs of `cellar demo` and the tests in their temp folders. Default 0.',
  ),
  connectorPollMs: z.coerce.number().int().min(100).default(30_000).describe(
    'CELLAR_CONNECTOR_POLL_MS: how often `cellar run scheduler` reads Kafka Connect connector states, ms. Default 30000.',
  ),
  demoMariadb: z.enum(['0', '1']).default('1').describe(
    'CELLAR_DEMO_MARIADB: 0 leaves the MariaDB supplier out of `cellar demo` (it is included when MariaDB is installed). Default 1.',
  ),
  heapHeadroomPercent: z.coerce.number().int().min(0).max(1000).default(50).describe(
    'CELLAR_HEAP_HEADROOM_PERCENT: how far the JavaScript heap of a runtime (embedded, or a Kafka-runtime worker) may grow past its live data before a full garbage collection, %. Resident memory is then about the state it holds (bounded by CELLAR_STATE_CACHE_CONTRIBUTORS) times 1 + this; lower trades CPU for memory. 0 leaves it to V8 (up to 4 times the live data while changes flow fast). Default 50.',
  ),
});

export type ProcessEnv = z.output<typeof ProcessEnvSpec>;

/** The environment variable behind each process setting. */
export const PROCESS_ENV: Record<keyof ProcessEnv, string> = {
  logLevel: 'CELLAR_LOG_LEVEL',
  actor: 'CELLAR_ACTOR',
  keepLogs: 'CELLAR_KEEP_LOGS',
  connectorPollMs: 'CELLAR_CONNECTOR_POLL_MS',
  demoMariadb: 'CELLAR_DEMO_MARIADB',
  heapHeadroomPercent: 'CELLAR_HEAP_HEADROOM_PERCENT',
};

/** Reads the process settings; throws one ConfigError naming every bad variable (e.g. CELLAR_LOG_LEVEL=loud). */
export function loadProcessEnv(env: NodeJS.ProcessEnv = process.env): ProcessEnv {
  const raw: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(PROCESS_ENV)) {
    const v = env[name];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  return parseSpec(ProcessEnvSpec, raw, 'environment', (path) => (path.length ? (PROCESS_ENV[path[0] as keyof ProcessEnv] ?? String(path[0])) : '(root)'));
}

/** The log level from CELLAR_LOG_LEVEL, or `fallback` when unset or not a level (the CLI refuses a bad one at start). */
export function logLevelOr(fallback: (typeof LOG_LEVELS)[number]): string {
  const v = process.env.CELLAR_LOG_LEVEL;
  return v && (LOG_LEVELS as readonly string[]).includes(v) ? v : fallback;
}

/**
 * Applies CELLAR_HEAP_HEADROOM_PERCENT to this process's V8 heap (its growing factor, read at every full
 * collection, so it takes effect while running). Called by each runtime as it starts.
 */
export function applyHeapHeadroom(env: NodeJS.ProcessEnv = process.env): void {
  const { heapHeadroomPercent } = loadProcessEnv(env);
  if (heapHeadroomPercent > 0) setFlagsFromString(`--heap-growing-percent=${heapHeadroomPercent}`);
}
