import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:https';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Kafka, logLevel, type ISocketFactory } from 'kafkajs';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { startLocalPostgres, type LocalPostgres } from '../../infra/local/postgres.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { startTlsTerminator, type TlsTerminator } from '../../infra/local/stunnel.js';
import { mariadbAvailable, startLocalMariaDb, type LocalMariaDb } from '../../infra/local/mariadb.js';
import mysql from 'mysql2/promise';
import { mysqlConnection } from '../../connectors/mysql-cdc/config.js';
import { openMysqlRows } from '../../connectors/mysql-cdc/rows.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { startLocalSchemaRegistry } from '../../infra/local/schema-registry.js';
import { startLocalKafkaConnect } from '../../infra/local/kafka-connect.js';
import { createCodecs } from '../../schemas/registry.js';
import { createKafkaConnectClient } from '../../connectors/kafka-connect/client.js';
import { freePort, stopChild, tempDir } from '../../infra/local/process.js';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { createRedis } from '../../pipelines/core/redis.js';
import { kafkaSecurity } from '../../pipelines/kafka/security.js';
import { classifyFailure } from '../../pipelines/cli/config-check.js';
import { createApiKey } from '../../pipelines/api/keys-store.js';
import { migrate } from '../../pipelines/state/migrate.js';
import { runCellar } from '../support/cli.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';
import { makeTestPki, type TestPki } from '../support/tls.js';

/**
 * Cellar's connections over TLS to real servers: a private Postgres with `ssl=on` and a test CA
 * (verify-full, client certificates, a wrong CA refused), Redis with `--tls-port`, client certificates
 * and an ACL user, the Kafka client through stunnel in front of the test broker (mutual TLS), the read
 * API over HTTPS (reloaded on SIGHUP, behind a trusted proxy), and `cellar config check` naming each
 * failure; no secret in any output or log.
 */
const withMariaDb = await mariadbAvailable();

describe('connectivity: TLS and authentication to every service', () => {
  const logDir = artifactDir('connectivity');
  let pki: TestPki;
  let pgTls: LocalPostgres;
  let redisTls: LocalRedis;
  const REDIS_PASSWORD = `r3dis-${rid('pw')}`;
  const secretFile = (name: string, value: string) => {
    const f = join(pki.dir, name);
    writeFileSync(f, `${value}\n`);
    return f;
  };

  beforeAll(async () => {
    pki = makeTestPki('certuser');
    [pgTls, redisTls] = await Promise.all([
      startLocalPostgres({ walLevel: 'replica', tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.ca, certUsers: ['certuser'] } }),
      startLocalRedis({ tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.ca, users: { cellar: REDIS_PASSWORD } } }),
    ]);
    const admin = new pg.Client({ connectionString: pgTls.url, ssl: { rejectUnauthorized: false } });
    await admin.connect();
    await admin.query('CREATE ROLE certuser LOGIN');
    await admin.end();
  }, 120_000);

  afterAll(async () => {
    await pgTls?.destroy();
    await redisTls?.destroy();
  });

  const pgEnv = (extra: Record<string, string> = {}) => ({ CELLAR_PG_URL: pgTls.url, CELLAR_PG_SSLMODE: 'verify-full', CELLAR_PG_SSL_CA_FILE: pki.ca, ...extra });

  describe('Postgres', () => {
    it('verify-full with the test CA: an encrypted session; a client certificate authenticates its user', async () => {
      const pool = createPgPool(loadRuntimeConfig(pgEnv()).pgUrl, { max: 1 });
      const { rows } = await pool.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      expect(rows[0].ssl).toBe(true);
      await pool.end();
      const url = pgTls.url.replace('postgres@', 'certuser@');
      const withCert = createPgPool(loadRuntimeConfig(pgEnv({ CELLAR_PG_URL: url, CELLAR_PG_SSL_CERT_FILE: pki.clientCert, CELLAR_PG_SSL_KEY_FILE: pki.clientKey })).pgUrl, { max: 1 });
      expect((await withCert.query('SELECT current_user AS u')).rows[0].u).toBe('certuser');
      await withCert.end();
      const without = createPgPool(loadRuntimeConfig(pgEnv({ CELLAR_PG_URL: url })).pgUrl, { max: 1 });
      const err = await without.query('SELECT 1').catch((e: unknown) => e);
      await without.end();
      expect(classifyFailure(err).kind, String(err)).toBe('authentication');
    });

    it('refuses a server its CA did not sign, and a plain connection is refused by the server', async () => {
      const wrong = createPgPool(loadRuntimeConfig(pgEnv({ CELLAR_PG_SSL_CA_FILE: pki.otherCa })).pgUrl, { max: 1 });
      const err = await wrong.query('SELECT 1').catch((e: unknown) => e);
      await wrong.end();
      expect(classifyFailure(err)).toMatchObject({ kind: 'tls-verification' });
      const plain = createPgPool(loadRuntimeConfig(pgEnv({ CELLAR_PG_SSLMODE: 'disable' })).pgUrl, { max: 1 });
      const refused = await plain.query('SELECT 1').catch((e: unknown) => e);
      await plain.end();
      expect(String(refused)).toMatch(/no encryption/);
    });

    it('libpq\'s meaning of sslmode in a supplier\'s URL: require encrypts without checking, verify-full checks', async () => {
      const url = (q: string) => `${pgTls.url}?${q}`;
      const require = createPgPool(url('sslmode=require'), { max: 1 });
      expect((await require.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl).toBe(true);
      await require.end();
      const full = createPgPool(url(`sslmode=verify-full&sslrootcert=${encodeURIComponent(pki.otherCa)}`), { max: 1 });
      expect(classifyFailure(await full.query('SELECT 1').catch((e: unknown) => e)).kind).toBe('tls-verification');
      await full.end();
    });
  });

  describe('Redis', () => {
    const redisEnv = (extra: Record<string, string> = {}) => ({
      CELLAR_REDIS_URL: redisTls.url, CELLAR_REDIS_USERNAME: 'cellar', CELLAR_REDIS_PASSWORD_FILE: secretFile('redis-password', REDIS_PASSWORD),
      CELLAR_REDIS_TLS_CA_FILE: pki.ca, CELLAR_REDIS_TLS_CERT_FILE: pki.clientCert, CELLAR_REDIS_TLS_KEY_FILE: pki.clientKey, ...extra,
    });
    const attempt = async (env: Record<string, string>) => {
      const r = createRedis(loadRuntimeConfig(env).redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      let last: unknown;
      r.on('error', (e) => (last = e));
      try {
        await r.connect();
        await r.set('cellar-tls-check', 'ok');
        return await r.get('cellar-tls-check');
      } catch (err) {
        return last ?? err;
      } finally {
        r.disconnect();
      }
    };

    it('rediss:// with the CA, a client certificate and an ACL user whose password is read from a file', async () => {
      expect(await attempt(redisEnv())).toBe('ok');
    });

    it('names a wrong password, a missing client certificate and an untrusted server', async () => {
      expect(classifyFailure(await attempt(redisEnv({ CELLAR_REDIS_PASSWORD_FILE: secretFile('wrong', 'not-the-password') }))).kind).toBe('authentication');
      const noCert = await attempt(redisEnv({ CELLAR_REDIS_TLS_CERT_FILE: '', CELLAR_REDIS_TLS_KEY_FILE: '' }));
      expect(noCert).not.toBe('ok');
      expect(classifyFailure(await attempt(redisEnv({ CELLAR_REDIS_TLS_CA_FILE: pki.otherCa }))).kind).toBe('tls-verification');
    });
  });

  describe.runIf(withMariaDb)('MariaDB supplier', () => {
    let maria: LocalMariaDb;
    const MARIA_PASSWORD = `m4ria-${rid('pw')}`;
    beforeAll(async () => {
      maria = await startLocalMariaDb({ tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.ca } });
      const root = await mysql.createConnection({ host: '127.0.0.1', port: maria.port, user: 'root' });
      await root.query(`CREATE USER 'cellar'@'%' IDENTIFIED BY '${MARIA_PASSWORD}' REQUIRE X509`);
      await root.query("GRANT ALL ON *.* TO 'cellar'@'%'");
      await root.query('CREATE DATABASE shop');
      await root.query('CREATE TABLE shop.levels (sku varchar(40) PRIMARY KEY, bottles int)');
      await root.query("INSERT INTO shop.levels VALUES ('rioja-0001-2019', 12), ('rioja-0002-2019', 6)");
      await root.end();
    }, 90_000);
    afterAll(async () => {
      await maria?.destroy();
    });
    const url = (q: string) => `mysql://cellar:${encodeURIComponent(MARIA_PASSWORD)}@127.0.0.1:${maria.port}/?${q}`;
    const tls = (ca: string) => `ssl-mode=VERIFY_IDENTITY&ssl-ca=${encodeURIComponent(ca)}&ssl-cert=${encodeURIComponent(pki.clientCert)}&ssl-key=${encodeURIComponent(pki.clientKey)}`;

    it('verifies the server and presents a client certificate; the reconciliation reader reads its rows over TLS', async () => {
      const c = await mysql.createConnection(mysqlConnection(url(tls(pki.ca))));
      const [rows] = await c.query<mysql.RowDataPacket[]>("SHOW SESSION STATUS LIKE 'Ssl_version'");
      await c.end();
      expect(String(rows[0]!.Value)).toMatch(/^TLS/);
      const snap = await openMysqlRows(url(tls(pki.ca)), rid('mt'), ['shop.levels'], createLogger('test', 'silent'));
      const seen: unknown[] = [];
      await snap.scan((chunk) => void seen.push(...chunk.map((r) => r.row.sku)), 100);
      await snap.close();
      expect(seen.sort()).toEqual(['rioja-0001-2019', 'rioja-0002-2019']);
    });

    it('config check connects to each supplier database as its reader would, TLS options and password included', async () => {
      const yaml = (id: string, ca: string) => `id: ${id}
name: ${id}
source:
  kind: mariadb
  topicPrefix: ${id}
  connection: { host: 127.0.0.1, port: ${maria.port}, user: cellar, password: "\${MARIA_PW}", options: { ssl-mode: VERIFY_IDENTITY, ssl-ca: "${ca}", ssl-cert: "${pki.clientCert}", ssl-key: "${pki.clientKey}" } }
  tables: [{ name: shop.levels, key: [sku] }]
mapping: { sku: sku, warehouse: store, quantity: bottles, regions: { s1: eu } }
`;
      const dir = supplierDir({ trusted: yaml('trusted', pki.ca), untrusted: yaml('untrusted', pki.otherCa) });
      const res = await runCellar(['config', 'check', '--only', 'suppliers', '--no-settings'], cellarEnv({ CELLAR_SUPPLIERS_DIR: dir, MARIA_PW: MARIA_PASSWORD }), logDir);
      expect(res.code, res.out).toBe(3);
      expect(res.out).toMatch(/ok\s+supplier trusted\s+mariadb:\/\/127\.0\.0\.1/);
      expect(res.out).toMatch(/FAIL\s+supplier untrusted.*tls-verification[\s\S]*untrusted\.yaml: source\.connection\.options/);
      expect(res.out).not.toContain(MARIA_PASSWORD);
    });

    it('refuses a server its CA did not sign; the server refuses a user without a certificate', async () => {
      const wrong = await mysql.createConnection(mysqlConnection(url(tls(pki.otherCa)))).catch((e: unknown) => e);
      expect(classifyFailure(wrong).kind, String(wrong)).toBe('tls-verification');
      const noCert = await mysql.createConnection(mysqlConnection(url(`ssl-mode=VERIFY_IDENTITY&ssl-ca=${encodeURIComponent(pki.ca)}`))).catch((e: unknown) => e);
      expect(classifyFailure(noCert).kind, String(noCert)).toBe('authentication');
    });
  });

  it('Schema Registry and Kafka Connect over HTTPS with basic auth: answered with the settings, refused without them', async () => {
    const auth = { username: 'cellar', password: `rest-${rid('pw')}` };
    const tls = { certFile: pki.serverCert, keyFile: pki.serverKey };
    const [sr, kc] = await Promise.all([startLocalSchemaRegistry(0, { tls, basicAuth: auth }), startLocalKafkaConnect(0, { tls, basicAuth: auth })]);
    try {
      const env = (extra: Record<string, string> = {}) => loadRuntimeConfig({
        CELLAR_SCHEMA_REGISTRY_URL: sr.url, CELLAR_SCHEMA_REGISTRY_USERNAME: auth.username, CELLAR_SCHEMA_REGISTRY_PASSWORD: auth.password, CELLAR_SCHEMA_REGISTRY_CA_FILE: pki.ca,
        CELLAR_CONNECT_URL: kc.url, CELLAR_CONNECT_USERNAME: auth.username, CELLAR_CONNECT_PASSWORD: auth.password, CELLAR_CONNECT_CA_FILE: pki.ca, ...extra,
      });
      const subject = `${rid('tls')}-value`;
      expect(await createCodecs(env().schemaRegistryUrl).observation.register(subject)).toBeGreaterThan(0);
      const connect = (cfg: ReturnType<typeof env>) => createKafkaConnectClient({ connectUrl: cfg.connectUrl!, timeoutMs: 5_000, retries: 0, retryMinDelayMs: 10, retryMaxDelayMs: 10 });
      expect(await connect(env()).listConnectors()).toEqual({});
      const noAuth = await createCodecs(env({ CELLAR_SCHEMA_REGISTRY_PASSWORD: 'wrong-password' }).schemaRegistryUrl).observation.register(subject).catch((e: unknown) => e);
      expect(String(noAuth)).toMatch(/401|Unauthorized/);
      expect(classifyFailure(await connect(env({ CELLAR_CONNECT_CA_FILE: pki.otherCa })).listConnectors().catch((e: unknown) => e)).kind).toBe('tls-verification');
      const check = await runCellar(['config', 'check', '--only', 'schema-registry,connect', '--no-settings'], cellarEnv({
        CELLAR_SCHEMA_REGISTRY_URL: sr.url, CELLAR_SCHEMA_REGISTRY_USERNAME: auth.username, CELLAR_SCHEMA_REGISTRY_PASSWORD: auth.password, CELLAR_SCHEMA_REGISTRY_CA_FILE: pki.ca,
        CELLAR_CONNECT_URL: kc.url, CELLAR_CONNECT_USERNAME: auth.username, CELLAR_CONNECT_PASSWORD: 'not-it', CELLAR_CONNECT_CA_FILE: pki.ca,
      }), logDir);
      expect(check.code, check.out).toBe(3);
      expect(check.out).toMatch(/ok\s+Schema Registry/);
      expect(check.out).toMatch(/FAIL\s+Kafka Connect.*authentication[\s\S]*CELLAR_CONNECT_USERNAME, CELLAR_CONNECT_PASSWORD/);
      expect(check.out).not.toContain(auth.password);
    } finally {
      await sr.close();
      await kc.close();
    }
  });

  describe('Kafka', () => {
    let front: TlsTerminator;
    beforeAll(async () => {
      front = await startTlsTerminator(services().kafkaBrokers, { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.ca });
    });
    afterAll(async () => {
      await front?.stop();
    });
    /**
     * The test broker advertises its own (plain) ports: each connection goes to the TLS port stunnel holds in
     * front of the advertised one, made as kafkajs makes it, with the TLS options Cellar gave the client.
     */
    const viaFront: ISocketFactory = ({ host, port, ssl, onConnect }) =>
      tlsConnect({ host: '127.0.0.1', port: front.fronts.get(`${host}:${port}`) ?? port, ...(typeof ssl === 'object' ? ssl : {}) }, onConnect);
    const client = (env: Record<string, string>) => {
      const cfg = loadRuntimeConfig({ CELLAR_KAFKA_BROKERS: [...front.fronts.keys()].join(','), ...env });
      return new Kafka({ clientId: rid('tls'), brokers: cfg.kafkaBrokers, ...kafkaSecurity(cfg), socketFactory: viaFront, logLevel: logLevel.NOTHING, retry: { retries: 1 }, connectionTimeout: 3_000 });
    };

    it('produces and consumes over mutual TLS through stunnel with the CA, certificate and key files', async () => {
      const topic = rid('tls-topic');
      const kafka = client({ CELLAR_KAFKA_TLS_CA_FILE: pki.ca, CELLAR_KAFKA_TLS_CERT_FILE: pki.clientCert, CELLAR_KAFKA_TLS_KEY_FILE: pki.clientKey });
      const producer = kafka.producer({ allowAutoTopicCreation: true });
      await producer.connect();
      await producer.send({ topic, messages: [{ key: 'k', value: 'over tls' }] });
      await producer.disconnect();
      const consumer = kafka.consumer({ groupId: rid('tls-group') });
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      const got = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no message over TLS within 30 s')), 30_000);
        void consumer.run({ eachMessage: async ({ message }) => (clearTimeout(t), resolve(String(message.value))) });
      });
      await consumer.disconnect();
      expect(got).toBe('over tls');
    }, 60_000);

    it('is refused without the client certificate, and refuses a broker its CA did not sign', async () => {
      const noCert = client({ CELLAR_KAFKA_TLS_CA_FILE: pki.ca }).admin();
      await expect(noCert.connect()).rejects.toThrow();
      const wrongCa = client({ CELLAR_KAFKA_TLS_CA_FILE: pki.otherCa, CELLAR_KAFKA_TLS_CERT_FILE: pki.clientCert, CELLAR_KAFKA_TLS_KEY_FILE: pki.clientKey }).admin();
      const err = await wrongCa.connect().catch((e: unknown) => e);
      expect(classifyFailure(err).kind, String(err)).toBe('tls-verification');
    }, 60_000);
  });

  describe('read API over HTTPS', () => {
    let api: ChildProcess | undefined;
    let port = 0;
    let key = '';
    let apiLog = '';
    const certDir = tempDir('api-cert');
    const get = (path: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; cert: PeerCertificate }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, ca: readFileSync(pki.ca), headers: { authorization: `Bearer ${key}`, ...headers }, agent: false }, (res) => {
          res.resume();
          resolve({ status: res.statusCode!, cert: (res.socket as import('node:tls').TLSSocket).getPeerCertificate() });
        });
        req.on('error', reject);
        req.end();
      });

    beforeAll(async () => {
      const db = pgTls.url.replace(/\/postgres$/, '/cellar_api');
      const admin = new pg.Client({ connectionString: pgTls.url, ssl: { rejectUnauthorized: false } });
      await admin.connect();
      await admin.query('CREATE DATABASE cellar_api');
      await admin.end();
      const env = pgEnv({ CELLAR_PG_URL: db });
      const pool = createPgPool(loadRuntimeConfig(env).pgUrl, { max: 1 });
      await migrate(pool);
      key = (await createApiKey(pool, { name: 'ops', role: 'operator', rateLimitPerS: 0 })).key;
      await pool.end();
      copyFileSync(pki.serverCert, join(certDir, 'api.pem'));
      copyFileSync(pki.serverKey, join(certDir, 'api.key'));
      port = await freePort();
      api = spawnCellar(['run', 'api'], cellarEnv({
        ...env, CELLAR_API_PORT: String(port), CELLAR_API_TLS_CERT_FILE: join(certDir, 'api.pem'), CELLAR_API_TLS_KEY_FILE: join(certDir, 'api.key'), CELLAR_API_TRUST_PROXY: '127.0.0.1',
        CELLAR_REDIS_URL: redisTls.url, CELLAR_REDIS_USERNAME: 'cellar', CELLAR_REDIS_PASSWORD: REDIS_PASSWORD, CELLAR_REDIS_TLS_CA_FILE: pki.ca, CELLAR_REDIS_TLS_CERT_FILE: pki.clientCert, CELLAR_REDIS_TLS_KEY_FILE: pki.clientKey,
        CELLAR_LOG_LEVEL: 'info',
      }), (apiLog = join(logDir, 'api.log')));
      expect(await eventually(async () => (await get('/healthz').catch(() => ({ status: 0 }))).status === 200, 30_000), `the API never answered over HTTPS; ${apiLog}`).toBe(true);
    }, 60_000);
    afterAll(async () => {
      if (api) await stopChild(api, 'SIGTERM', 10_000);
    });

    it('serves HTTPS, takes a renewed certificate on SIGHUP, and audits the client a trusted proxy names', async () => {
      const first = await get('/v1/ops/dead-letters', { 'x-forwarded-for': '203.0.113.9' });
      expect(first.status).toBe(200);
      // A renewed certificate (another key, same names) is served to new connections after SIGHUP.
      const renewed = makeTestPki();
      copyFileSync(renewed.serverCert, join(certDir, 'api.pem'));
      copyFileSync(renewed.serverKey, join(certDir, 'api.key'));
      copyFileSync(renewed.ca, pki.ca + '.renewed');
      api!.kill('SIGHUP');
      const served = await eventually(async () => {
        const res = await new Promise<PeerCertificate | undefined>((resolve) => {
          const s = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(renewed.ca) }, () => (resolve(s.getPeerCertificate()), s.end()));
          s.on('error', () => resolve(undefined));
        });
        return res !== undefined && res.fingerprint256 !== first.cert.fingerprint256;
      }, 10_000);
      expect(served, `the renewed certificate was not served after SIGHUP; ${apiLog}`).toBe(true);
      const pool = createPgPool(loadRuntimeConfig(pgEnv({ CELLAR_PG_URL: pgTls.url.replace(/\/postgres$/, '/cellar_api') })).pgUrl, { max: 1 });
      const { rows } = await pool.query("SELECT client_addr FROM cellar.api_audit WHERE action = 'dead-letters.list' ORDER BY id");
      await pool.end();
      expect(rows.map((r) => r.client_addr)).toEqual(['203.0.113.9']);
      expect(readFileSync(apiLog, 'utf8')).toContain('API TLS certificate reloaded');
      // Requests without a valid key are slowed per client address: the forwarded one, not the proxy's.
      const guess = (from: string) => new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/v1/ops/dead-letters', ca: readFileSync(renewed.ca), headers: { authorization: 'Bearer ck_000000000000_guess', 'x-forwarded-for': from }, agent: false }, (res) => (res.resume(), resolve(res.statusCode!)));
        req.on('error', reject);
        req.end();
      });
      const statuses = [];
      for (let i = 0; i < 25; i++) statuses.push(await guess('198.51.100.1'));
      expect(statuses).toContain(429);
      expect(statuses[0]).toBe(401);
      expect(await guess('198.51.100.2')).toBe(401);
      expect(readFileSync(apiLog, 'utf8')).not.toContain(REDIS_PASSWORD);
    });
  });

  it('cellar config check names each failure and the variable to fix, and prints no secret', async () => {
    const secrets = { pg: `pg-${rid('s')}`, sasl: `sasl-${rid('s')}`, sr: `sr-${rid('s')}`, connect: `kc-${rid('s')}`, redis: REDIS_PASSWORD };
    const dead = await freePort();
    const env = cellarEnv({
      CELLAR_PG_URL: pgTls.url.replace('postgres@', `postgres:${secrets.pg}@`), CELLAR_PG_SSLMODE: 'verify-full', CELLAR_PG_SSL_CA_FILE: pki.otherCa,
      CELLAR_REDIS_URL: redisTls.url, CELLAR_REDIS_USERNAME: 'cellar', CELLAR_REDIS_PASSWORD_FILE: secretFile('redis-pass-2', secrets.redis), CELLAR_REDIS_TLS_CA_FILE: pki.ca, CELLAR_REDIS_TLS_CERT_FILE: pki.clientCert, CELLAR_REDIS_TLS_KEY_FILE: pki.clientKey,
      CELLAR_KAFKA_BROKERS: 'broker.cellar-test.invalid:9093', CELLAR_KAFKA_SASL_MECHANISM: 'scram-sha-512', CELLAR_KAFKA_SASL_USERNAME: 'cellar', CELLAR_KAFKA_SASL_PASSWORD: secrets.sasl,
      CELLAR_SCHEMA_REGISTRY_URL: `http://127.0.0.1:${dead}`, CELLAR_SCHEMA_REGISTRY_USERNAME: 'sr', CELLAR_SCHEMA_REGISTRY_PASSWORD: secrets.sr,
      CELLAR_CONNECT_URL: `http://cellar:${secrets.connect}@127.0.0.1:${dead}`,
    });
    const res = await runCellar(['config', 'check'], env, logDir);
    expect(res.code, res.out).toBe(3);
    expect(res.out).toMatch(/FAIL\s+Postgres \(Cellar's\).*tls-verification[\s\S]*CELLAR_PG_SSL_CA_FILE/);
    expect(res.out).toMatch(/ok\s+Redis\s+rediss:\/\/127\.0\.0\.1/);
    expect(res.out).toMatch(/FAIL\s+Kafka\s+broker\.cellar-test\.invalid:9093: dns:[\s\S]*CELLAR_KAFKA_BROKERS/);
    expect(res.out).toMatch(/FAIL\s+Schema Registry.*tcp:[\s\S]*CELLAR_SCHEMA_REGISTRY_URL/);
    expect(res.out).toMatch(/FAIL\s+Kafka Connect.*tcp:/);
    expect(res.out).toContain('CELLAR_KAFKA_SASL_PASSWORD=***');
    for (const [name, value] of Object.entries(secrets)) expect(res.out, `the ${name} secret was printed`).not.toContain(value);
    // A file setting that cannot be read is named, not followed.
    const missing = await runCellar(['config', 'check', '--only', 'postgres'], { ...env, CELLAR_PG_URL: pgTls.url, CELLAR_KAFKA_SASL_PASSWORD: '', CELLAR_KAFKA_SASL_PASSWORD_FILE: join(pki.dir, 'nope') }, logDir);
    expect(missing.code, missing.out).toBe(2);
    expect(missing.out).toContain(`CELLAR_KAFKA_SASL_PASSWORD_FILE: cannot read ${join(pki.dir, 'nope')} (ENOENT)`);
  }, 60_000);
});
