import { readFileSync } from 'node:fs';
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';

/** How a local REST service (Schema Registry, Kafka Connect) is reached: over HTTPS, behind basic auth. */
export interface LocalHttpOptions {
  /** Serve HTTPS with this certificate and key (PEM files). */
  tls?: { certFile: string; keyFile: string };
  /** Require these basic-auth credentials: anything else is answered 401, as the real services do. */
  basicAuth?: { username: string; password: string };
}

/** An HTTP(S) server for `handler`, refusing requests without the configured credentials (401, `error_code` 401). */
export function localServer(handler: (req: IncomingMessage, res: ServerResponse) => void, o: LocalHttpOptions = {}): Server {
  const expected = o.basicAuth && `Basic ${Buffer.from(`${o.basicAuth.username}:${o.basicAuth.password}`).toString('base64')}`;
  const guarded = (req: IncomingMessage, res: ServerResponse) => {
    if (expected && req.headers.authorization !== expected) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="cellar-test"' }).end(JSON.stringify({ error_code: 401, message: 'Unauthorized' }));
      return;
    }
    handler(req, res);
  };
  return o.tls ? createHttps({ cert: readFileSync(o.tls.certFile), key: readFileSync(o.tls.keyFile) }, guarded) : createHttp(guarded);
}
