import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';
import { kafkaSecurity } from '../../pipelines/kafka/security.js';
import { pgConfig } from '../../pipelines/core/pg-tls.js';
import { classifyFailure, effectiveSettings, variablesFor } from '../../pipelines/cli/config-check.js';
import { scrubSecrets } from '../../pipelines/core/secrets.js';

const dir = mkdtempSync(join(tmpdir(), 'cellar-conn-'));
const file = (name: string, text: string) => {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
};

describe('Kafka security settings as the client gets them', () => {
  it('maps SASL PLAIN and SCRAM, and TLS with or without files', () => {
    const plain = kafkaSecurity(loadRuntimeConfig({ CELLAR_KAFKA_TLS: '1', CELLAR_KAFKA_SASL_MECHANISM: 'plain', CELLAR_KAFKA_SASL_USERNAME: 'APIKEY', CELLAR_KAFKA_SASL_PASSWORD: 'api-secret-1' }));
    expect(plain).toEqual({ ssl: true, sasl: { mechanism: 'plain', username: 'APIKEY', password: 'api-secret-1' } });
    const ca = file('ca.pem', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const scram = kafkaSecurity(loadRuntimeConfig({ CELLAR_KAFKA_TLS_CA_FILE: ca, CELLAR_KAFKA_TLS_SERVERNAME: 'b-1.msk.example', CELLAR_KAFKA_SASL_MECHANISM: 'scram-sha-512', CELLAR_KAFKA_SASL_USERNAME: 'cellar', CELLAR_KAFKA_SASL_PASSWORD_FILE: file('pw', 'scram-pass\n') }));
    expect(scram).toMatchObject({ ssl: { ca: expect.stringContaining('BEGIN CERTIFICATE'), servername: 'b-1.msk.example' }, sasl: { mechanism: 'scram-sha-512', username: 'cellar', password: 'scram-pass' } });
    const oauth = kafkaSecurity(loadRuntimeConfig({ CELLAR_KAFKA_TLS: 'true', CELLAR_KAFKA_SASL_MECHANISM: 'oauthbearer', CELLAR_KAFKA_SASL_OAUTH_TOKEN_URL: 'https://idp.example/token', CELLAR_KAFKA_SASL_OAUTH_CLIENT_ID: 'cellar', CELLAR_KAFKA_SASL_OAUTH_CLIENT_SECRET: 'client-secret-1' }));
    expect(oauth.sasl).toMatchObject({ mechanism: 'oauthbearer', oauthBearerProvider: expect.any(Function) });
    expect(kafkaSecurity(loadRuntimeConfig({}))).toEqual({});
  });

  it('names every missing piece at once', () => {
    expect(() => loadRuntimeConfig({ CELLAR_KAFKA_SASL_MECHANISM: 'scram-sha-256', CELLAR_KAFKA_TLS_CERT_FILE: '/x.pem', CELLAR_KAFKA_SASL_MECHANISM_X: '' }))
      .toThrow(/CELLAR_KAFKA_SASL_USERNAME: required[\s\S]*CELLAR_KAFKA_SASL_PASSWORD: required[\s\S]*CELLAR_KAFKA_TLS_KEY_FILE: give both/);
    try {
      loadRuntimeConfig({ CELLAR_KAFKA_SASL_MECHANISM: 'oauthbearer' });
    } catch (err) {
      expect((err as { problems?: string[] }).problems?.join('\n')).toMatch(/OAUTH_TOKEN_URL[\s\S]*OAUTH_CLIENT_ID[\s\S]*OAUTH_CLIENT_SECRET/);
    }
  });
});

describe('secrets from files and masked', () => {
  it('reads NAME_FILE (one trailing newline dropped), refuses both forms, names an unreadable file without its content', () => {
    expect(loadRuntimeConfig({ CELLAR_PG_URL_FILE: file('pg', 'postgres://u:file-pass-1@db:5432/cellar\n') }).pgUrl).toBe('postgres://u:file-pass-1@db:5432/cellar');
    expect(() => loadRuntimeConfig({ CELLAR_REDIS_PASSWORD: 'a-pass', CELLAR_REDIS_PASSWORD_FILE: file('r', 'b-pass') })).toThrow(/CELLAR_REDIS_PASSWORD: set both/);
    expect(() => loadRuntimeConfig({ CELLAR_REDIS_PASSWORD_FILE: join(dir, 'absent') })).toThrow(/CELLAR_REDIS_PASSWORD_FILE: cannot read .*absent \(ENOENT\)/);
  });

  it('shows the effective settings with every secret masked, and scrubs them from any text printed later', () => {
    const cfg = loadRuntimeConfig({
      CELLAR_PG_URL: 'postgres://cellar:pg-pass-77@db:5432/cellar', CELLAR_REDIS_PASSWORD: 'redis-pass-77', CELLAR_KAFKA_SASL_MECHANISM: 'plain',
      CELLAR_KAFKA_SASL_USERNAME: 'k', CELLAR_KAFKA_SASL_PASSWORD: 'sasl-pass-77', CELLAR_SCHEMA_REGISTRY_USERNAME: 'sr', CELLAR_SCHEMA_REGISTRY_PASSWORD: 'sr-pass-77',
    });
    const text = effectiveSettings(cfg).join('\n');
    for (const s of ['pg-pass-77', 'redis-pass-77', 'sasl-pass-77', 'sr-pass-77']) expect(text).not.toContain(s);
    expect(text).toContain('CELLAR_KAFKA_SASL_PASSWORD=***');
    expect(text).toMatch(/CELLAR_REDIS_URL=redis:\/\/:\*\*\*@127\.0\.0\.1:6379\/0/);
    expect(text).toMatch(/CELLAR_SCHEMA_REGISTRY_URL=http:\/\/sr:\*\*\*@127\.0\.0\.1:8081/);
    expect(scrubSecrets('driver said: sasl-pass-77 rejected')).toBe('driver said: *** rejected');
  });
});

describe('Postgres TLS parameters, as libpq reads them', () => {
  it('require does not check, verify-ca checks the chain only, verify-full the name too; prefer and disable are plain', () => {
    const ca = file('pg-ca.pem', 'CA');
    expect(pgConfig('postgres://h/db?sslmode=require')).toMatchObject({ connectionString: 'postgres://h/db', ssl: { rejectUnauthorized: false } });
    const vca = pgConfig(`postgres://h/db?sslmode=verify-ca&sslrootcert=${ca}`).ssl as Record<string, unknown>;
    expect(vca).toMatchObject({ rejectUnauthorized: true, ca: 'CA' });
    expect(vca.checkServerIdentity).toBeTypeOf('function');
    const full = pgConfig(`postgres://h/db?sslmode=verify-full&sslrootcert=${ca}`).ssl as Record<string, unknown>;
    expect(full).toMatchObject({ rejectUnauthorized: true, ca: 'CA' });
    expect(full.checkServerIdentity).toBeUndefined();
    expect(pgConfig('postgres://h/db?sslmode=prefer').ssl).toBe(false);
    expect(() => pgConfig('postgres://h/db?sslmode=verify-full&sslrootcert=/nope.pem')).toThrow(/sslrootcert: cannot read \/nope\.pem \(ENOENT\)/);
  });
});

describe('what config check says', () => {
  it('sorts failures into what an operator fixes, and names the variables for each', () => {
    const vars = { where: ['CELLAR_PG_URL'], tls: ['CELLAR_PG_SSL_CA_FILE'], auth: ['CELLAR_PG_SSL_CERT_FILE'] };
    const cases: Array<[unknown, string]> = [
      [Object.assign(new Error('getaddrinfo ENOTFOUND db'), { code: 'ENOTFOUND' }), 'dns'],
      [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'tcp'],
      [Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' }), 'tls-verification'],
      [new Error('password authentication failed for user "cellar"'), 'authentication'],
      [new Error('WRONGPASS invalid username-password pair or user is disabled.'), 'authentication'],
      [new Error('SASL SCRAM SHA512 authentication failed: bad credentials'), 'authentication'],
      [{ message: 'Connection error', originalError: Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }) }, 'tls-verification'],
    ];
    for (const [err, kind] of cases) expect(classifyFailure(err).kind, String((err as Error).message)).toBe(kind);
    expect(variablesFor('tcp', vars)).toEqual(['CELLAR_PG_URL']);
    expect(variablesFor('tls-verification', vars)).toEqual(['CELLAR_PG_SSL_CA_FILE', 'CELLAR_PG_URL']);
  });
});
