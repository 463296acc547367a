import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { freePort, spawnManaged, stopChild, tempDir, waitUntil } from './process.js';

/** A TLS terminator (Debian's stunnel) in front of plain TCP services: one TLS port per target. */
export interface TlsTerminator {
  /** `host:port` of each target → the TLS port in front of it (127.0.0.1). */
  fronts: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * Starts stunnel in server mode: each target (`host:port`) gets a TLS port on 127.0.0.1 presenting
 * `certFile`; with `clientCaFile`, clients must present a certificate it signed (mutual TLS).
 */
export async function startTlsTerminator(targets: string[], o: { certFile: string; keyFile: string; clientCaFile?: string }): Promise<TlsTerminator> {
  const dir = tempDir('stunnel');
  const fronts = new Map<string, number>();
  const services: string[] = [];
  for (const [i, target] of targets.entries()) {
    const port = await freePort();
    fronts.set(target, port);
    services.push(`[t${i}]`, `accept = 127.0.0.1:${port}`, `connect = ${target}`);
  }
  const conf = join(dir, 'stunnel.conf');
  writeFileSync(conf, [
    'foreground = yes', 'pid =', 'debug = notice', `output = ${join(dir, 'stunnel.log')}`,
    `cert = ${o.certFile}`, `key = ${o.keyFile}`,
    ...(o.clientCaFile ? [`CAfile = ${o.clientCaFile}`, 'verifyChain = yes', 'requireCert = yes'] : []),
    ...services, '',
  ].join('\n'));
  const bin = process.env.CELLAR_STUNNEL ?? 'stunnel4';
  const child: ChildProcess = spawnManaged(bin, [conf], { stdio: 'ignore' });
  await waitUntil(`stunnel on ${[...fronts.values()].join(', ')}`, async () => {
    if (child.exitCode !== null) throw new Error(`stunnel exited with ${child.exitCode}; see ${join(dir, 'stunnel.log')}`);
    const ports = [...fronts.values()];
    const open = await Promise.all(ports.map((p) => new Promise<boolean>((resolve) => {
      const s = connect(p, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    })));
    return open.every(Boolean);
  });
  return { fronts, stop: () => stopChild(child, 'SIGTERM', 5_000) };
}
