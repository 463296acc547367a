import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CellarError } from '../../pipelines/core/errors.js';
import { matchesPattern, type FeedConfig } from './config.js';

/** What identifies the last file a feed applied: its content hash, and what an HTTP server said of it. */
export interface FeedFileId {
  /** SHA-256 of the file's bytes (base64url): the same bytes are never applied twice. */
  hash: string;
  /** The file's name (folder) or address (URL), for messages and dead letters. */
  name: string;
  etag?: string;
  lastModified?: string;
}

/** A file to apply: its bytes and identity, and when it was written (ms), the rows' source time. */
export interface FeedFile extends FeedFileId {
  bytes: Buffer;
  mtimeMs: number;
}

/** A file's content hash. */
export function contentHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64url');
}

/** Wait for an HTTP answer, ms. */
const FETCH_TIMEOUT_MS = 30_000;

/**
 * The feed's current file, or undefined when there is none, or (URL) the server says it has not changed
 * since `last`. Errors are retriable {@link CellarError}s naming the folder or address (an address's
 * credentials are never named).
 */
export async function currentFile(feed: FeedConfig, last: FeedFileId | undefined): Promise<FeedFile | undefined> {
  return feed.path !== undefined ? newestInFolder(feed.path, feed.pattern) : fetchUrl(feed.url!, last);
}

async function newestInFolder(dir: string, pattern: string): Promise<FeedFile | undefined> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => matchesPattern(n, pattern));
  } catch (err) {
    throw new CellarError('feed_unreadable', `feed folder ${dir}: ${(err as Error).message}`, { retriable: true, cause: err });
  }
  let best: { name: string; mtimeMs: number } | undefined;
  for (const name of names) {
    const st = await stat(join(dir, name)).catch(() => undefined);
    if (!st?.isFile()) continue;
    if (!best || st.mtimeMs > best.mtimeMs || (st.mtimeMs === best.mtimeMs && name > best.name)) best = { name, mtimeMs: st.mtimeMs };
  }
  if (!best) return undefined;
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, best.name));
  } catch (err) {
    throw new CellarError('feed_unreadable', `feed file ${join(dir, best.name)}: ${(err as Error).message}`, { retriable: true, cause: err });
  }
  return { bytes, hash: contentHash(bytes), name: best.name, mtimeMs: Math.floor(best.mtimeMs) };
}

/** The address without credentials, for messages. */
function shown(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString();
}

async function fetchUrl(url: string, last: FeedFileId | undefined): Promise<FeedFile | undefined> {
  const u = new URL(url);
  const headers: Record<string, string> = {};
  if (u.username || u.password) {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
    u.username = '';
    u.password = '';
  }
  if (last?.etag) headers['if-none-match'] = last.etag;
  if (last?.lastModified) headers['if-modified-since'] = last.lastModified;
  let res: Response;
  try {
    res = await fetch(u, { headers, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CellarError('feed_unreachable', `feed ${shown(url)}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, { retriable: true, cause: err });
  }
  if (res.status === 304) return undefined;
  if (res.status === 404) return undefined;
  if (!res.ok) {
    throw new CellarError('feed_unreachable', `feed ${shown(url)}: HTTP ${res.status} ${res.statusText}`, { retriable: res.status >= 500 || res.status === 429 || res.status === 408 || res.status === 401 || res.status === 403 });
  }
  const bytes = Buffer.from(await res.arrayBuffer());
  const lastModified = res.headers.get('last-modified') ?? undefined;
  const etag = res.headers.get('etag') ?? undefined;
  const mtime = lastModified ? Date.parse(lastModified) : NaN;
  return { bytes, hash: contentHash(bytes), name: shown(url), mtimeMs: Number.isFinite(mtime) ? mtime : Date.now(), ...(etag ? { etag } : {}), ...(lastModified ? { lastModified } : {}) };
}
