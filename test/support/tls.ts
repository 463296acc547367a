import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../infra/local/process.js';

/** PEM files of a test certificate authority and what it signed (paths). */
export interface TestPki {
  dir: string;
  ca: string;
  /** A server certificate for `localhost` and 127.0.0.1, and its key. */
  serverCert: string;
  serverKey: string;
  /** A client certificate (CN `cellar`), and its key. */
  clientCert: string;
  clientKey: string;
  /** Another CA that signed none of these: a client trusting it must refuse the server. */
  otherCa: string;
}

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

/** Makes a fresh test PKI with openssl: a CA, a server and a client certificate it signed, and an unrelated CA. */
export function makeTestPki(clientCn = 'cellar'): TestPki {
  const dir = tempDir('pki');
  mkdirSync(dir, { recursive: true });
  const ca = (name: string) => {
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=Cellar test ${name}`], dir);
  };
  ca('ca');
  ca('other-ca');
  const leaf = (name: string, cn: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`], dir);
    chmodSync(join(dir, `${name}.key`), 0o600);
  };
  leaf('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  leaf('client', clientCn, 'extendedKeyUsage=clientAuth\n');
  return {
    dir, ca: join(dir, 'ca.pem'), serverCert: join(dir, 'server.pem'), serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'), clientKey: join(dir, 'client.key'), otherCa: join(dir, 'other-ca.pem'),
  };
}
