import { Redis, type RedisOptions } from 'ioredis';
import { takeTlsFiles } from '../../schemas/endpoint.js';

const SETTINGS = { tls_ca: 'CELLAR_REDIS_TLS_CA_FILE', tls_cert: 'CELLAR_REDIS_TLS_CERT_FILE', tls_key: 'CELLAR_REDIS_TLS_KEY_FILE' } as const;

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
  const files = takeTlsFiles(u, u.protocol === 'rediss:', (p) => SETTINGS[p]);
  if (u.protocol !== 'rediss:') return { url: u.toString() };
  const tls: NonNullable<RedisOptions['tls']> = { servername: u.hostname, ...files };
  return { url: u.toString(), tls };
}

/** A Redis client for a URL as Cellar's settings give it (TLS and ACL user included), with `options`. */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  const c = redisConnection(url);
  return new Redis(c.url, { ...options, ...(c.tls ? { tls: c.tls } : {}) });
}

/**
 * Connects to `url` once and PINGs it within `timeoutMs`, for one-shot checks (`cellar status`, `cellar config
 * check`); throws the connection's own error (`connect ECONNREFUSED …`) rather than ioredis' "Connection is
 * closed", or a timeout. No retries, and no client timer outlives the check (ioredis' connect timeout and its
 * wait to close a socket that is already gone would hold a finished command open for seconds).
 */
export async function pingRedis(url: string, timeoutMs: number): Promise<void> {
  const redis = createRedis(url, { lazyConnect: true, connectTimeout: 0, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  let first: unknown;
  redis.on('error', (err) => (first ??= err));
  let timer: NodeJS.Timeout | undefined;
  try {
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer to PING within ${timeoutMs / 1000} s`)), timeoutMs)));
    await Promise.race([redis.connect().then(() => redis.ping()), late]);
  } catch (err) {
    throw first ?? err;
  } finally {
    clearTimeout(timer);
    if (redis.status !== 'end') redis.disconnect();
  }
}
