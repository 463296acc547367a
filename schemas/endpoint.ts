import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';

/** Cellar's parameters on an HTTP service's URL: TLS files (the settings put them there). */
const TLS_PARAMS = ['tls_ca', 'tls_cert', 'tls_key'] as const;

/** An HTTP(S) service as Cellar's settings name it (Schema Registry, Kafka Connect): where, who, and how to trust it. */
export interface HttpEndpoint {
  /** The base URL without credentials or Cellar's parameters (safe to print). */
  url: string;
  /** Basic auth, from `user:password@` in the URL (or the service's USERNAME/PASSWORD settings). */
  auth?: { username: string; password: string };
  /** For https: the CA bundle and client certificate files (`tls_ca`, `tls_cert`, `tls_key`), read once. */
  agent?: HttpsAgent;
}

/**
 * Reads an HTTP service's URL: credentials become basic auth, `tls_ca`/`tls_cert`/`tls_key` (PEM files) an
 * https agent that trusts that CA and presents that certificate. A file that cannot be read is an error
 * naming `setting` and the path.
 */
export function httpEndpoint(raw: string, setting: string): HttpEndpoint {
  const u = new URL(raw);
  const auth = u.username ? { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) } : undefined;
  u.username = '';
  u.password = '';
  const files = Object.fromEntries(TLS_PARAMS.map((p) => [p, u.searchParams.get(p) ?? undefined]));
  for (const p of TLS_PARAMS) u.searchParams.delete(p);
  const read = (p: string, path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`${setting} (${p}): cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  const agent = u.protocol === 'https:' && (files.tls_ca || files.tls_cert)
    ? new HttpsAgent({ keepAlive: true, ...(files.tls_ca ? { ca: read('tls_ca', files.tls_ca) } : {}), ...(files.tls_cert ? { cert: read('tls_cert', files.tls_cert) } : {}), ...(files.tls_key ? { key: read('tls_key', files.tls_key) } : {}) })
    : undefined;
  return { url: u.toString().replace(/\/$/, ''), ...(auth ? { auth } : {}), ...(agent ? { agent } : {}) };
}

/** `url` with basic-auth credentials and TLS files as Cellar's URL parameters (what {@link httpEndpoint} reads). */
export function withHttpSettings(url: string, s: { username?: string; password?: string; caFile?: string; certFile?: string; keyFile?: string }): string {
  if (!s.username && !s.password && !s.caFile && !s.certFile) return url;
  const u = new URL(url);
  if (s.username) u.username = encodeURIComponent(s.username);
  if (s.password) u.password = encodeURIComponent(s.password);
  if (s.caFile) u.searchParams.set('tls_ca', s.caFile);
  if (s.certFile) u.searchParams.set('tls_cert', s.certFile);
  if (s.keyFile) u.searchParams.set('tls_key', s.keyFile);
  return u.toString();
}
