import type { ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { Redis } from 'ioredis';
import { freePort, spawnManaged, stopChild, tempDir, waitUntil } from './process.js';

/** A private redis-server on a free port, keeping nothing on disk. */
export interface LocalRedis {
  url: string;
  port: number;
  /** Stops the server (for outage tests); `start()` brings it back on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a hung host. */
  freeze(): void;
  /** Lets a frozen server run again (SIGCONT). */
  thaw(): void;
  /** Stops the server and removes its folder. */
  destroy(): Promise<void>;
}

/**
 * TLS for a private server: it listens only with TLS, asks clients for a certificate signed by `caFile`,
 * and with `users` has ACL users (`name` → password) and no default user.
 */
export interface LocalRedisTls {
  certFile: string;
  keyFile: string;
  caFile: string;
  users?: Record<string, string>;
}

export async function startLocalRedis(options: { tls?: LocalRedisTls } = {}): Promise<LocalRedis> {
  const port = await freePort();
  const dir = tempDir('redis');
  let child: ChildProcess | undefined;
  const t = options.tls;
  const listen = t
    ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', t.certFile, '--tls-key-file', t.keyFile, '--tls-ca-cert-file', t.caFile, '--tls-auth-clients', 'yes',
      ...(t.users ? ['--user', 'default', 'off', ...Object.entries(t.users).flatMap(([u, pw]) => ['--user', u, 'on', `>${pw}`, '~*', '&*', '+@all'])] : [])]
    : ['--port', String(port)];
  const start = async () => {
    child = spawnManaged(
      'redis-server',
      [...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', `${dir}/redis.log`],
      { stdio: 'ignore' },
    );
    await waitUntil(`redis-server on port ${port}`, async () => {
      const [user, password] = Object.entries(t?.users ?? {})[0] ?? [];
      const tls = t && { ca: readFileSync(t.caFile), cert: readFileSync(t.certFile), key: readFileSync(t.keyFile), servername: 'localhost' };
      const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...(tls ? { tls } : {}), ...(user ? { username: user, password } : {}) });
      r.on('error', () => undefined);
      try {
        await r.connect();
        return (await r.ping()) === 'PONG';
      } finally {
        r.disconnect();
      }
    });
  };
  await start();
  return {
    url: `${t ? 'rediss' : 'redis'}://127.0.0.1:${port}/0`,
    port,
    start,
    stop: async () => {
      if (child) await stopChild(child, 'SIGTERM');
    },
    freeze: () => void child?.kill('SIGSTOP'),
    thaw: () => void child?.kill('SIGCONT'),
    destroy: async () => {
      child?.kill('SIGCONT');
      if (child) await stopChild(child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
