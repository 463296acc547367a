import { Redis, type RedisOptions } from 'ioredis';
import { readPem } from './pg-tls.js';

const TLS_PARAMS = { tls_ca: 'CELLAR_REDIS_TLS_CA_FILE', tls_cert: 'CELLAR_REDIS_TLS_CERT_FILE', tls_key: 'CELLAR_REDIS_TLS_KEY_FILE' } as const;

/**
 * The connection options of a Redis URL: `rediss://` is TLS (checked against the system's CAs, or the CA
 * bundle in `tls_ca`), `tls_cert`/`tls_key` a client certificate (`tls-auth-clients yes`), `user:password@`
 * an ACL user (`loadRuntimeConfig` puts CELLAR_REDIS_USERNAME/PASSWORD and the TLS files there).
 * Returns the URL without Cellar's parameters, for ioredis.
 */
export function redisConnection(url: string): { url: string; tls?: RedisOptions['tls'] } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url };
  }
  const files = Object.fromEntries(Object.keys(TLS_PARAMS).map((p) => [p, u.searchParams.get(p) ?? undefined])) as Record<keyof typeof TLS_PARAMS, string | undefined>;
  for (const p of Object.keys(TLS_PARAMS)) u.searchParams.delete(p);
  if (u.protocol !== 'rediss:') return { url: u.toString() };
  const tls: NonNullable<RedisOptions['tls']> = { servername: u.hostname };
  if (files.tls_ca) tls.ca = readPem(files.tls_ca, TLS_PARAMS.tls_ca);
  if (files.tls_cert) tls.cert = readPem(files.tls_cert, TLS_PARAMS.tls_cert);
  if (files.tls_key) tls.key = readPem(files.tls_key, TLS_PARAMS.tls_key);
  return { url: u.toString(), tls };
}

/** A Redis client for a URL as Cellar's settings give it (TLS and ACL user included), with `options`. */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  const c = redisConnection(url);
  return new Redis(c.url, { ...options, ...(c.tls ? { tls: c.tls } : {}) });
}
