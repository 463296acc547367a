import type { ConnectionOptions } from 'node:tls';
import type { SASLOptions } from 'kafkajs';
import type { RuntimeConfig } from '../core/config.js';
import { CellarError, ConfigError } from '../core/errors.js';
import { readPem } from '../core/pg-tls.js';

/** What every Kafka client Cellar creates (workers, capture, admin, CLI) gets from the settings: TLS and SASL. */
export interface KafkaSecurity {
  ssl?: ConnectionOptions | boolean;
  sasl?: SASLOptions;
}

/** Renew an OAuth token this long before it expires, ms. */
const TOKEN_MARGIN_MS = 60_000;

/**
 * The TLS and SASL options of Cellar's Kafka clients, from CELLAR_KAFKA_TLS* and CELLAR_KAFKA_SASL_*:
 * TLS when asked for or when any TLS file is given (CA bundle, client certificate and key, server name);
 * SASL PLAIN, SCRAM-SHA-256/512 with a user and password, or OAUTHBEARER with tokens from an OAuth 2 token
 * endpoint (client-credentials grant), renewed a minute before they expire. Files are read once, here.
 */
export function kafkaSecurity(cfg: RuntimeConfig): KafkaSecurity {
  const out: KafkaSecurity = {};
  const files = cfg.kafkaTlsCaFile || cfg.kafkaTlsCertFile || cfg.kafkaTlsServername;
  if (cfg.kafkaTls || files) {
    const tls: ConnectionOptions = {};
    if (cfg.kafkaTlsCaFile) tls.ca = readPem(cfg.kafkaTlsCaFile, 'CELLAR_KAFKA_TLS_CA_FILE');
    if (cfg.kafkaTlsCertFile) tls.cert = readPem(cfg.kafkaTlsCertFile, 'CELLAR_KAFKA_TLS_CERT_FILE');
    if (cfg.kafkaTlsKeyFile) tls.key = readPem(cfg.kafkaTlsKeyFile, 'CELLAR_KAFKA_TLS_KEY_FILE');
    if (cfg.kafkaTlsServername) tls.servername = cfg.kafkaTlsServername;
    out.ssl = Object.keys(tls).length ? tls : true;
  }
  const m = cfg.kafkaSaslMechanism;
  if (m === 'plain' || m === 'scram-sha-256' || m === 'scram-sha-512') {
    out.sasl = { mechanism: m, username: cfg.kafkaSaslUsername!, password: cfg.kafkaSaslPassword! } as SASLOptions;
  } else if (m === 'oauthbearer') {
    out.sasl = { mechanism: 'oauthbearer', oauthBearerProvider: oauthTokens(cfg) };
  }
  return out;
}

/** A provider of OAuth bearer tokens (client credentials), cached until a minute before they expire. */
export function oauthTokens(cfg: Pick<RuntimeConfig, 'kafkaSaslOauthTokenUrl' | 'kafkaSaslOauthClientId' | 'kafkaSaslOauthClientSecret' | 'kafkaSaslOauthScope'>): () => Promise<{ value: string }> {
  let cached: { value: string; until: number } | undefined;
  let pending: Promise<{ value: string; until: number }> | undefined;
  const fetchToken = async () => {
    const url = cfg.kafkaSaslOauthTokenUrl;
    if (!url || !cfg.kafkaSaslOauthClientId || !cfg.kafkaSaslOauthClientSecret) throw new ConfigError('CELLAR_KAFKA_SASL_MECHANISM=oauthbearer needs CELLAR_KAFKA_SASL_OAUTH_TOKEN_URL, _CLIENT_ID and _CLIENT_SECRET');
    const body = new URLSearchParams({ grant_type: 'client_credentials', ...(cfg.kafkaSaslOauthScope ? { scope: cfg.kafkaSaslOauthScope } : {}) });
    const basic = Buffer.from(`${encodeURIComponent(cfg.kafkaSaslOauthClientId)}:${encodeURIComponent(cfg.kafkaSaslOauthClientSecret)}`).toString('base64');
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' }, body, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      throw new CellarError('kafka', `OAuth token endpoint ${new URL(url).host} (CELLAR_KAFKA_SASL_OAUTH_TOKEN_URL): ${(err as Error).message}`, { retriable: true, cause: err });
    }
    const answer = (await res.json().catch(() => ({}))) as { access_token?: string; expires_in?: number; error?: string };
    if (!res.ok || !answer.access_token) {
      throw new CellarError('kafka', `OAuth token endpoint ${new URL(url).host} answered ${res.status}${answer.error ? ` (${answer.error})` : ''}: check CELLAR_KAFKA_SASL_OAUTH_CLIENT_ID and _CLIENT_SECRET`, { retriable: res.status >= 500 });
    }
    return { value: answer.access_token, until: Date.now() + (answer.expires_in ?? 3600) * 1000 - TOKEN_MARGIN_MS };
  };
  return async () => {
    if (cached && Date.now() < cached.until) return { value: cached.value };
    pending ??= fetchToken().finally(() => (pending = undefined));
    cached = await pending;
    return { value: cached.value };
  };
}
