import { createWriteStream, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { spawnManaged, stopChild, tempDir } from './process.js';

/**
 * librdkafka's mock cluster, from Debian's `kcat`: a Kafka-protocol broker that lives as long as the
 * kcat process. See docs/ARCHITECTURE.md ("Kafka in tests") for what it does not implement and how
 * Cellar accounts for it (CELLAR_KAFKA_COMPAT=librdkafka-mock).
 */
export interface KafkaMockCluster {
  brokers: string[];
  logFile: string;
  /** Stops the cluster (its data is gone) and removes its log unless CELLAR_KEEP_LOGS=1. */
  stop(): Promise<void>;
}

/** Starts a mock cluster with `brokers` brokers (default 3). Requires `kcat` on PATH. */
export async function startKafkaMock(brokers = 3): Promise<KafkaMockCluster> {
  const dir = tempDir('kafka');
  const logFile = join(dir, 'kcat.log');
  const log = createWriteStream(logFile);
  // kcat produces from stdin: the pipe stays open (and the cluster alive) until we stop it.
  const child: ChildProcess = spawnManaged(
    'kcat',
    ['-X', `test.mock.num.brokers=${brokers}`, '-b', 'x', '-P', '-t', '_keepalive', '-d', 'mock'],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  const bootstrap = await new Promise<string>((resolve, reject) => {
    let buf = '';
    let found = false;
    const timer = setTimeout(() => reject(new Error(`kcat mock cluster did not start; log: ${logFile}`)), 15_000);
    child.once('error', (err) => reject(new Error(`cannot run kcat (${err.message}); install Debian's kcat package`)));
    child.once('exit', (code) => reject(new Error(`kcat exited with ${code}; log: ${logFile}`)));
    child.stderr!.on('data', (d: Buffer) => {
      log.write(d);
      if (found) return;
      buf += d.toString();
      const m = /bootstrap\.servers=(\S+)/.exec(buf);
      if (m) {
        found = true;
        clearTimeout(timer);
        resolve(m[1]!);
      } else if (buf.length > 1_000_000) buf = buf.slice(-10_000);
    });
  });
  return {
    brokers: bootstrap.split(','),
    logFile,
    stop: async () => {
      child.stdin?.end();
      await stopChild(child, 'SIGTERM', 5_000);
      log.end();
      if (process.env.CELLAR_KEEP_LOGS !== '1') rmSync(dir, { recursive: true, force: true });
    },
  };
}
