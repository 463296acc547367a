import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { ConfigError } from './errors.js';

/** libpq's TLS modes, as `sslmode` names them. */
export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full' | 'no-verify';

const TLS_PARAMS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'ssl'];

/** Reads a PEM file a setting names; a missing or unreadable file is a ConfigError naming the setting and path. */
export function readPem(path: string, setting: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${setting}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/**
 * A pg client config from a connection URL, its TLS parameters read as libpq reads them (node-postgres reads
 * `sslmode=require` as verify-full, and `prefer` as off; Cellar keeps libpq's meaning so a URL means what
 * it says to psql): `disable`/`allow`/`prefer` no TLS; `require` TLS without checking the certificate (with
 * `sslrootcert`, as libpq, it is checked like verify-ca); `verify-ca` the chain to `sslrootcert` (or the
 * system's CAs); `verify-full` the chain and the host name. `sslcert`/`sslkey`: a client certificate.
 */
export function pgConfig<T extends object = Record<never, never>>(url: string, extra: T = {} as T): T & pg.ClientConfig {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { connectionString: url, ...extra };
  }
  if (!TLS_PARAMS.some((p) => u.searchParams.has(p))) return { connectionString: url, ...extra };
  const get = (p: string) => u.searchParams.get(p) ?? undefined;
  const mode = (get('sslmode') ?? (get('ssl') === 'true' || get('ssl') === '1' ? 'require' : 'disable')) as SslMode;
  const ca = get('sslrootcert');
  const cert = get('sslcert');
  const key = get('sslkey');
  for (const p of TLS_PARAMS) u.searchParams.delete(p);
  const base = { connectionString: u.toString(), ...extra };
  if (mode === 'disable' || mode === 'allow' || mode === 'prefer') return { ...base, ssl: false };
  if (!['require', 'verify-ca', 'verify-full', 'no-verify'].includes(mode)) throw new ConfigError(`sslmode=${mode}: expected disable, prefer, require, verify-ca or verify-full`);
  const verify = mode === 'verify-ca' || mode === 'verify-full' || (mode === 'require' && ca !== undefined);
  const ssl: Record<string, unknown> = { rejectUnauthorized: verify };
  if (ca) ssl.ca = readPem(ca, 'sslrootcert');
  if (cert) ssl.cert = readPem(cert, 'sslcert');
  if (key) ssl.key = readPem(key, 'sslkey');
  // verify-ca checks the chain only: any host name the certificate names is accepted.
  if (verify && mode !== 'verify-full') ssl.checkServerIdentity = () => undefined;
  return { ...base, ssl };
}
