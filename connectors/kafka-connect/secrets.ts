import { scrubSecrets } from '../../pipelines/core/secrets.js';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../../pipelines/core/errors.js';
import type { Supplier } from '../registry/loader.js';
import { resolveSecret } from '../registry/loader.js';
import type { SecretRef } from '../registry/schema.js';

/**
 * Connect config providers the worker must enable for generated configs:
 * `config.providers=env,dir` with `config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider`
 * and `config.providers.dir.class=org.apache.kafka.common.config.provider.DirectoryConfigProvider`.
 */
export const REQUIRED_CONFIG_PROVIDERS = {
  env: 'org.apache.kafka.common.config.provider.EnvVarConfigProvider',
  dir: 'org.apache.kafka.common.config.provider.DirectoryConfigProvider',
} as const;

/** A whole value that is one config-provider reference, e.g. `${env:PG_PASSWORD}` or `${dir:/run/secrets:pg}`. */
const PLACEHOLDER = /^\$\{[A-Za-z0-9_.-]+:[^}]*\}$/;

/** True when `value` is exactly one `${provider:[path:]key}` reference (it holds no secret itself). */
export function isProviderReference(value: string): boolean {
  return PLACEHOLDER.test(value);
}

/**
 * The Connect config-provider reference for a registry secret; the secret itself is never read.
 * `${ENV}` becomes `${env:ENV}` (EnvVarConfigProvider, Kafka 3.5+). `{file: path}` becomes
 * `${dir:<folder>:<file name>}` (DirectoryConfigProvider: the file holds only the secret, as mounted
 * Kubernetes or Docker secrets do). A relative path is taken from the supplier file's folder, as the
 * native readers do; the Connect worker must see the file at the same absolute path.
 */
export function providerReference(ref: SecretRef, supplierFile: string): string {
  if (typeof ref === 'string') return `\${env:${ref.slice(2, -1)}}`;
  const path = isAbsolute(ref.file) ? ref.file : resolve(dirname(supplierFile), ref.file);
  if (/[:{}]/.test(path)) {
    throw new ConfigError(`${supplierFile}: source.connection.password: secret file path ${path} cannot contain ':', '{' or '}' (Connect config provider syntax)`);
  }
  return `\${dir:${dirname(path)}:${basename(path)}}`;
}

/**
 * A scrubber for text that came from elsewhere (a Connect error message, a Java stack trace echoing a
 * connection string): every secret of `suppliers` this process can resolve (environment variables set,
 * files readable) is resolved once, which makes {@link scrubSecrets} mask it by value, URL-encoded too;
 * by shape it also masks a password in any URL or `password=`-like parameter, resolvable here or not.
 */
export function secretScrubber(suppliers: Supplier[], env: NodeJS.ProcessEnv = process.env): (text: string) => string {
  for (const s of suppliers) {
    const ref = s.source.connection?.password;
    if (!ref) continue;
    try {
      resolveSecret(ref, s.file, env); // remembers the value (rememberSecret)
    } catch {
      /* not resolvable in this process */
    }
  }
  return scrubSecrets;
}
