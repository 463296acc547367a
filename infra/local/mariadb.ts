import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { freePort, hasCommand, spawnManaged, stopChild, tempDir, waitUntil } from './process.js';

const run = promisify(execFile);

/**
 * A private MariaDB server with a ROW binlog (a CDC source), in a temp folder on a free port.
 * Root has an empty password and connects over 127.0.0.1 or the socket.
 */
export interface LocalMariaDb {
  /** `mysql://root@127.0.0.1:PORT/` */
  url: string;
  port: number;
  socket: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

/** True when the MariaDB server binaries are installed. */
export async function mariadbAvailable(): Promise<boolean> {
  return (await hasCommand('mariadbd')) && (await hasCommand('mariadb-install-db'));
}

/** TLS for a private server: its certificate and key, and the CA of client certificates (PEM files). */
export interface LocalMariaDbTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export async function startLocalMariaDb(options: { tls?: LocalMariaDbTls } = {}): Promise<LocalMariaDb> {
  if (!(await mariadbAvailable())) throw new Error('mariadbd / mariadb-install-db not found: install Debian\'s mariadb-server');
  const port = await freePort();
  const root = tempDir('mariadb');
  const datadir = join(root, 'data');
  const socket = join(root, 'mariadb.sock');
  // The bootstrap's temporary tables live in the shared /tmp: two installs at the same moment can trip
  // over each other, so a failed install is tried again in a clean folder.
  for (let attempt = 1; ; attempt++) {
    try {
      await run('mariadb-install-db', ['--no-defaults', `--datadir=${datadir}`, '--user=root', '--auth-root-authentication-method=normal', '--skip-test-db']);
      break;
    } catch (err) {
      if (attempt >= 3) throw err;
      rmSync(datadir, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawnManaged(
      'mariadbd',
      [
        '--no-defaults',
        `--datadir=${datadir}`,
        `--socket=${socket}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        `--log-bin=${join(datadir, 'bin')}`,
        '--binlog-format=ROW',
        '--binlog-row-metadata=FULL',
        '--server-id=1',
        '--user=root',
        `--pid-file=${join(root, 'mariadb.pid')}`,
        `--log-error=${join(root, 'error.log')}`,
        '--innodb-flush-log-at-trx-commit=2',
        ...(options.tls ? [`--ssl-cert=${options.tls.certFile}`, `--ssl-key=${options.tls.keyFile}`, `--ssl-ca=${options.tls.caFile}`] : []),
        '--sync-binlog=0',
      ],
      { stdio: 'ignore' },
    );
    await waitUntil(`mariadbd on port ${port}`, async () => {
      if (!existsSync(socket)) return false;
      await run('mariadb-admin', [`--socket=${socket}`, '-uroot', 'ping']);
      return true;
    }, 60_000, 200);
  };
  await start();
  const stop = async () => {
    if (!child) return;
    await run('mariadb-admin', [`--socket=${socket}`, '-uroot', 'shutdown']).catch(() => undefined);
    await stopChild(child, 'SIGTERM', 20_000);
  };
  return {
    url: `mysql://root@127.0.0.1:${port}/`,
    port,
    socket,
    start,
    stop,
    destroy: async () => {
      await stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
