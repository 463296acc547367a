import { Agent as HttpsAgent } from 'node:https';
import { readPem } from '../pipelines/core/pg-tls.js';

/** Cellar's parameters on a service's URL (HTTP services, Redis): TLS files, as the settings put them there. */
const TLS_PARAMS = { tls_ca: 'ca', tls_cert: 'cert', tls_key: 'key' } as const;

/**
 * Takes Cellar's TLS parameters off `u` (`tls_ca`, `tls_cert`, `tls_key`: PEM files) and, when the
 * connection uses TLS (`read`), reads the files they name; `setting(param)` names the setting in the error
 * of a file that cannot be read.
 */
export function takeTlsFiles(u: URL, read: boolean, setting: (param: keyof typeof TLS_PARAMS) => string): { ca?: string; cert?: string; key?: string } {
  const out: { ca?: string; cert?: string; key?: string } = {};
  for (const [param, field] of Object.entries(TLS_PARAMS) as Array<[keyof typeof TLS_PARAMS, 'ca' | 'cert' | 'key']>) {
    const path = u.searchParams.get(param);
    u.searchParams.delete(param);
    if (path && read) out[field] = readPem(path, setting(param));
  }
  return out;
}

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
  const files = takeTlsFiles(u, u.protocol === 'https:', (p) => `${setting} (${p})`);
  const agent = files.ca || files.cert ? new HttpsAgent({ keepAlive: true, ...files }) : undefined;
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
