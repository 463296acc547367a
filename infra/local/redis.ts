import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
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

export async function startLocalRedis(): Promise<LocalRedis> {
  const port = await freePort();
  const dir = tempDir('redis');
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawnManaged(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', `${dir}/redis.log`],
      { stdio: 'ignore' },
    );
    await waitUntil(`redis-server on port ${port}`, async () => {
      const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
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
    url: `redis://127.0.0.1:${port}/0`,
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
