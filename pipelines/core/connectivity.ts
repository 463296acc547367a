import { z } from 'zod';

const file = (what: string) => z.string().min(1, `a file path (${what})`).optional();
const flag = z
  .enum(['0', '1', 'true', 'false'], { error: 'expected 1 or 0 (true or false)' })
  .transform((v) => v === '1' || v === 'true')
  .optional();

/**
 * How Cellar reaches its services in production: TLS (a CA bundle, a client certificate and key) and
 * authentication for Kafka, the Schema Registry, Kafka Connect, Postgres and Redis, and TLS for the read
 * API. Every setting is an environment variable (documented below, `cellar --help-env`); every one may
 * also be given as a file (`<VARIABLE>_FILE`, as container platforms mount secrets). Secrets are never
 * printed: `cellar config check` shows them masked.
 */
export const ConnectivitySpec = {
  kafkaTls: flag.describe('CELLAR_KAFKA_TLS: connect to the brokers over TLS (implied by any CELLAR_KAFKA_TLS_* file). Default off.'),
  kafkaTlsCaFile: file('PEM CA bundle').describe('CELLAR_KAFKA_TLS_CA_FILE: PEM bundle of the CAs that sign the brokers\' certificates. Default: the system\'s CAs.'),
  kafkaTlsCertFile: file('PEM certificate').describe('CELLAR_KAFKA_TLS_CERT_FILE: client certificate (PEM) for brokers that require one (mTLS, e.g. Aiven).'),
  kafkaTlsKeyFile: file('PEM key').describe('CELLAR_KAFKA_TLS_KEY_FILE: the client certificate\'s private key (PEM).'),
  kafkaTlsServername: z.string().min(1).optional().describe('CELLAR_KAFKA_TLS_SERVERNAME: the name the brokers\' certificates are checked against (SNI), when it differs from the bootstrap host.'),
  kafkaSaslMechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512', 'oauthbearer']).optional().describe(
    'CELLAR_KAFKA_SASL_MECHANISM: `plain` (Confluent Cloud API keys), `scram-sha-256`/`scram-sha-512` (MSK, Aiven, Redpanda), or `oauthbearer` (a token from CELLAR_KAFKA_SASL_OAUTH_TOKEN_URL). Default none.',
  ),
  kafkaSaslUsername: z.string().min(1).optional().describe('CELLAR_KAFKA_SASL_USERNAME: SASL user (PLAIN, SCRAM): an API key, a SCRAM user.'),
  kafkaSaslPassword: z.string().min(1).optional().describe('CELLAR_KAFKA_SASL_PASSWORD: SASL password (secret; like every setting it may be read from a file named by the variable with `_FILE` appended).'),
  kafkaSaslOauthTokenUrl: z.string().url().optional().describe('CELLAR_KAFKA_SASL_OAUTH_TOKEN_URL: OAuth 2 token endpoint; Cellar asks it for tokens with the client-credentials grant and renews them before they expire.'),
  kafkaSaslOauthClientId: z.string().min(1).optional().describe('CELLAR_KAFKA_SASL_OAUTH_CLIENT_ID: OAuth client id.'),
  kafkaSaslOauthClientSecret: z.string().min(1).optional().describe('CELLAR_KAFKA_SASL_OAUTH_CLIENT_SECRET: OAuth client secret (secret).'),
  kafkaSaslOauthScope: z.string().min(1).optional().describe('CELLAR_KAFKA_SASL_OAUTH_SCOPE: OAuth scope to ask for, if the provider needs one.'),
  schemaRegistryUsername: z.string().min(1).optional().describe('CELLAR_SCHEMA_REGISTRY_USERNAME: Schema Registry basic-auth user (Confluent Cloud: the API key). Or user:password in the URL.'),
  schemaRegistryPassword: z.string().min(1).optional().describe('CELLAR_SCHEMA_REGISTRY_PASSWORD: Schema Registry basic-auth password (secret).'),
  schemaRegistryCaFile: file('PEM CA bundle').describe('CELLAR_SCHEMA_REGISTRY_CA_FILE: PEM CA bundle for an https:// Schema Registry signed by a private CA.'),
  schemaRegistryCertFile: file('PEM certificate').describe('CELLAR_SCHEMA_REGISTRY_CERT_FILE: client certificate (PEM) for a Schema Registry that requires one.'),
  schemaRegistryKeyFile: file('PEM key').describe('CELLAR_SCHEMA_REGISTRY_KEY_FILE: the client certificate\'s private key (PEM).'),
  connectUsername: z.string().min(1).optional().describe('CELLAR_CONNECT_USERNAME: Kafka Connect REST basic-auth user. Or user:password in the URL.'),
  connectPassword: z.string().min(1).optional().describe('CELLAR_CONNECT_PASSWORD: Kafka Connect REST basic-auth password (secret).'),
  connectCaFile: file('PEM CA bundle').describe('CELLAR_CONNECT_CA_FILE: PEM CA bundle for an https:// Kafka Connect signed by a private CA.'),
  connectCertFile: file('PEM certificate').describe('CELLAR_CONNECT_CERT_FILE: client certificate (PEM) for Kafka Connect.'),
  connectKeyFile: file('PEM key').describe('CELLAR_CONNECT_KEY_FILE: the client certificate\'s private key (PEM).'),
  pgSslMode: z.enum(['disable', 'prefer', 'require', 'verify-ca', 'verify-full']).optional().describe(
    'CELLAR_PG_SSLMODE: TLS to Cellar\'s Postgres, as libpq reads it: `require` (encrypted, certificate not checked), `verify-ca` (signed by CELLAR_PG_SSL_CA_FILE), `verify-full` (and issued to the host). Default: the URL\'s `sslmode`, else none.',
  ),
  pgSslCaFile: file('PEM CA bundle').describe('CELLAR_PG_SSL_CA_FILE: PEM CA bundle the server\'s certificate must chain to (libpq\'s sslrootcert).'),
  pgSslCertFile: file('PEM certificate').describe('CELLAR_PG_SSL_CERT_FILE: client certificate (PEM) for certificate authentication (libpq\'s sslcert).'),
  pgSslKeyFile: file('PEM key').describe('CELLAR_PG_SSL_KEY_FILE: the client certificate\'s private key (PEM; libpq\'s sslkey).'),
  redisUsername: z.string().min(1).optional().describe('CELLAR_REDIS_USERNAME: Redis ACL user. Or user:password in the URL.'),
  redisPassword: z.string().min(1).optional().describe('CELLAR_REDIS_PASSWORD: Redis password (secret).'),
  redisTlsCaFile: file('PEM CA bundle').describe('CELLAR_REDIS_TLS_CA_FILE: PEM CA bundle for a rediss:// server signed by a private CA.'),
  redisTlsCertFile: file('PEM certificate').describe('CELLAR_REDIS_TLS_CERT_FILE: client certificate (PEM) for a Redis with `tls-auth-clients yes`.'),
  redisTlsKeyFile: file('PEM key').describe('CELLAR_REDIS_TLS_KEY_FILE: the client certificate\'s private key (PEM).'),
  apiTlsCertFile: file('PEM certificate').describe('CELLAR_API_TLS_CERT_FILE: serve the read API over HTTPS with this certificate (PEM, the chain after it); read again on SIGHUP.'),
  apiTlsKeyFile: file('PEM key').describe('CELLAR_API_TLS_KEY_FILE: the API certificate\'s private key (PEM); read again on SIGHUP.'),
  apiTrustProxy: z.string().min(1).optional().describe(
    'CELLAR_API_TRUST_PROXY: the read API runs behind these proxies (comma-separated addresses or CIDRs, e.g. `10.0.0.0/8`): the client address of audit entries and rate limits is taken from their X-Forwarded-For. Default: none (the peer address).',
  ),
};

/** The environment variable of each connectivity setting. */
export const CONNECTIVITY_ENV = {
  kafkaTls: 'CELLAR_KAFKA_TLS',
  kafkaTlsCaFile: 'CELLAR_KAFKA_TLS_CA_FILE',
  kafkaTlsCertFile: 'CELLAR_KAFKA_TLS_CERT_FILE',
  kafkaTlsKeyFile: 'CELLAR_KAFKA_TLS_KEY_FILE',
  kafkaTlsServername: 'CELLAR_KAFKA_TLS_SERVERNAME',
  kafkaSaslMechanism: 'CELLAR_KAFKA_SASL_MECHANISM',
  kafkaSaslUsername: 'CELLAR_KAFKA_SASL_USERNAME',
  kafkaSaslPassword: 'CELLAR_KAFKA_SASL_PASSWORD',
  kafkaSaslOauthTokenUrl: 'CELLAR_KAFKA_SASL_OAUTH_TOKEN_URL',
  kafkaSaslOauthClientId: 'CELLAR_KAFKA_SASL_OAUTH_CLIENT_ID',
  kafkaSaslOauthClientSecret: 'CELLAR_KAFKA_SASL_OAUTH_CLIENT_SECRET',
  kafkaSaslOauthScope: 'CELLAR_KAFKA_SASL_OAUTH_SCOPE',
  schemaRegistryUsername: 'CELLAR_SCHEMA_REGISTRY_USERNAME',
  schemaRegistryPassword: 'CELLAR_SCHEMA_REGISTRY_PASSWORD',
  schemaRegistryCaFile: 'CELLAR_SCHEMA_REGISTRY_CA_FILE',
  schemaRegistryCertFile: 'CELLAR_SCHEMA_REGISTRY_CERT_FILE',
  schemaRegistryKeyFile: 'CELLAR_SCHEMA_REGISTRY_KEY_FILE',
  connectUsername: 'CELLAR_CONNECT_USERNAME',
  connectPassword: 'CELLAR_CONNECT_PASSWORD',
  connectCaFile: 'CELLAR_CONNECT_CA_FILE',
  connectCertFile: 'CELLAR_CONNECT_CERT_FILE',
  connectKeyFile: 'CELLAR_CONNECT_KEY_FILE',
  pgSslMode: 'CELLAR_PG_SSLMODE',
  pgSslCaFile: 'CELLAR_PG_SSL_CA_FILE',
  pgSslCertFile: 'CELLAR_PG_SSL_CERT_FILE',
  pgSslKeyFile: 'CELLAR_PG_SSL_KEY_FILE',
  redisUsername: 'CELLAR_REDIS_USERNAME',
  redisPassword: 'CELLAR_REDIS_PASSWORD',
  redisTlsCaFile: 'CELLAR_REDIS_TLS_CA_FILE',
  redisTlsCertFile: 'CELLAR_REDIS_TLS_CERT_FILE',
  redisTlsKeyFile: 'CELLAR_REDIS_TLS_KEY_FILE',
  apiTlsCertFile: 'CELLAR_API_TLS_CERT_FILE',
  apiTlsKeyFile: 'CELLAR_API_TLS_KEY_FILE',
  apiTrustProxy: 'CELLAR_API_TRUST_PROXY',
} as const satisfies Record<keyof typeof ConnectivitySpec, string>;

/** Settings whose values are secrets: never printed, masked in `cellar config check` and in any text Cellar prints. */
export const SECRET_SETTINGS = new Set<string>(['kafkaSaslPassword', 'kafkaSaslOauthClientSecret', 'schemaRegistryPassword', 'connectPassword', 'redisPassword']);
