import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { logLevelOr } from './process-env.js';
import { scrubSecrets } from './secrets.js';

export type { Logger };

/** Field names whose values are never written to logs. */
const REDACT = [
  'password',
  '*.password',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
  'connectionString',
  '*.connectionString',
  'url',
  '*.url',
];

/**
 * Creates the JSON logger for a component. Level from `CELLAR_LOG_LEVEL` (default `info`).
 * Fields named like secrets (password, token, url…) are redacted; callers log hosts, not URLs; any other
 * text (messages, error messages and stacks, field values) has secrets scrubbed by shape and value
 * (secrets.ts). `destination`: somewhere other than stdout (tests).
 */
export function createLogger(component: string, level = logLevelOr('info'), destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    // Text from elsewhere (driver errors, Connect traces) may echo a secret: scrubbed by shape and value.
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((a) => (typeof a === 'string' ? scrubSecrets(a) : a)) as Parameters<typeof method>);
      },
    },
    formatters: { log: (o) => scrubFields(o, 3) as Record<string, unknown> },
    base: { component, pid: process.pid },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}

/** Strings of a log line's fields (to `depth` levels: `err.message`, `err.stack`, `kafkajs.error`) scrubbed. */
function scrubFields(v: unknown, depth: number): unknown {
  if (typeof v === 'string') return scrubSecrets(v);
  if (depth === 0 || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => scrubFields(x, depth - 1));
  if (v instanceof Error) {
    // A copy of the same class, so pino's error serializer still names its type.
    const copy = Object.assign(Object.create(Object.getPrototypeOf(v) as object) as Error, scrubFields({ ...v }, depth - 1));
    copy.message = scrubSecrets(v.message);
    if (v.stack) copy.stack = scrubSecrets(v.stack);
    return copy;
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = scrubFields(x, depth - 1);
  return out;
}

/** Replaces the credentials in a connection URL, for messages that must name the endpoint. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}
