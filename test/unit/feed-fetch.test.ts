import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FeedSpec } from '../../connectors/feed/config.js';
import { currentFile } from '../../connectors/feed/fetch.js';
import { CellarError } from '../../pipelines/core/errors.js';

/** A supplier's export address served by a real HTTP server on this machine: validators, auth, failures. */
describe('feed files from an HTTP address', () => {
  let server: Server;
  let base = '';
  let body = 'sku,store,bottles\nW-1,s1,3\n';
  let etag = '"v1"';
  const seen: Array<{ auth?: string; inm?: string; ims?: string }> = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ auth: req.headers.authorization, inm: req.headers['if-none-match'] as string | undefined, ims: req.headers['if-modified-since'] as string | undefined });
      if (req.url === '/down') return void res.writeHead(503).end();
      if (req.url === '/private' && req.headers.authorization !== `Basic ${Buffer.from('feeder:s3cr3t pass').toString('base64')}`) return void res.writeHead(401).end();
      if (req.headers['if-none-match'] === etag) return void res.writeHead(304).end();
      res.writeHead(200, { etag, 'last-modified': 'Mon, 30 Nov 2026 06:00:00 GMT', 'content-type': 'text/csv' }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const feed = (url: string) => FeedSpec.parse({ url });

  it('reads the body once, then sends its validators back and skips an unchanged file (304)', async () => {
    const first = await currentFile(feed(`${base}/stock.csv`), undefined);
    expect(first).toMatchObject({ etag: '"v1"', lastModified: 'Mon, 30 Nov 2026 06:00:00 GMT', mtimeMs: Date.parse('Mon, 30 Nov 2026 06:00:00 GMT') });
    expect(first!.bytes.toString()).toBe(body);
    expect(await currentFile(feed(`${base}/stock.csv`), first)).toBeUndefined();
    expect(seen.at(-1)).toMatchObject({ inm: '"v1"', ims: 'Mon, 30 Nov 2026 06:00:00 GMT' });
    body = 'sku,store,bottles\nW-1,s1,4\n';
    etag = '"v2"';
    const next = await currentFile(feed(`${base}/stock.csv`), first);
    expect(next!.hash).not.toBe(first!.hash);
  });

  it('sends the address\'s credentials as basic auth, and never names them', async () => {
    const got = await currentFile(feed(`http://feeder:s3cr3t%20pass@${base.slice(7)}/private`), undefined);
    expect(got!.name).toBe(`${base}/private`);
    const refused = await currentFile(feed(`http://feeder:wrong@${base.slice(7)}/private`), undefined).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CellarError);
    expect((refused as Error).message).toBe(`feed ${base}/private: HTTP 401 Unauthorized`);
    expect((refused as Error).message).not.toContain('wrong');
  });

  it('fails retriably, naming the address, when the server errs or is not there', async () => {
    const down = await currentFile(feed(`${base}/down`), undefined).catch((e: unknown) => e);
    expect(down).toMatchObject({ retriable: true });
    expect((down as Error).message).toBe(`feed ${base}/down: HTTP 503 Service Unavailable`);
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const gone = await currentFile(feed(`http://127.0.0.1:${port}/stock.csv`), undefined).catch((e: unknown) => e);
    expect(gone).toMatchObject({ retriable: true });
    expect((gone as Error).message).toBe(`feed http://127.0.0.1:${port}/stock.csv: ECONNREFUSED`);
  });
});
