/**
 * Small helpers for JSON admin routes (the upstream API, purge): read a bounded JSON body, answer
 * JSON. Built only from Node and the public API.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpCache } from '../src/index.ts';

/** Largest admin request body read, in bytes. */
export const ADMIN_BODY_LIMIT = 65_536;

/**
 * Read the request body as JSON. Answers 413 / 400 itself and returns `undefined` when the body is
 * too large or not JSON; an empty body reads as `{}`.
 */
export async function readJsonBody(
  req: IncomingMessage,
  res: ServerResponse,
): Promise<Record<string, unknown> | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > ADMIN_BODY_LIMIT) {
      sendJson(res, 413, { error: 'body too large' });
      return undefined;
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    sendJson(res, 400, { error: 'body must be JSON' });
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    sendJson(res, 400, { error: 'body must be a JSON object' });
    return undefined;
  }
  return parsed as Record<string, unknown>;
}

/** Answer `status` with `body` as JSON. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** What a purge names: one URL (every variant, by its cache key), a Surrogate-Key / Cache-Tag, or a URL prefix. */
export type PurgeTarget =
  | { readonly kind: 'url'; readonly url: URL; readonly key: string }
  | { readonly kind: 'tag'; readonly tag: string }
  | { readonly kind: 'prefix'; readonly prefix: string };

/**
 * Read the body of an admin `POST /purge` (`{"url"}`, `{"tag"}` or `{"prefix"}`). Answers 400/413
 * itself and returns `undefined` when the body names nothing purgeable.
 */
export async function readPurgeTarget(
  req: IncomingMessage,
  res: ServerResponse,
  cache: HttpCache,
): Promise<PurgeTarget | undefined> {
  const body = await readJsonBody(req, res);
  if (body === undefined) return undefined;
  if (typeof body.url === 'string') {
    let url: URL | undefined;
    try {
      url = new URL(body.url);
    } catch {
      url = undefined;
    }
    const key =
      url === undefined
        ? undefined
        : cache.keyFor(url.protocol.slice(0, -1), url.host, url.pathname + url.search);
    if (url === undefined || key === undefined) {
      sendJson(res, 400, { error: 'url must be an absolute http(s) URL' });
      return undefined;
    }
    return { kind: 'url', url, key };
  }
  if (typeof body.tag === 'string') return { kind: 'tag', tag: body.tag };
  if (typeof body.prefix === 'string') return { kind: 'prefix', prefix: body.prefix };
  sendJson(res, 400, { error: 'give one of url, tag, prefix' });
  return undefined;
}

/** Drop what `target` names from this process's cache (both tiers); resolves to the objects removed. */
export function purgeLocally(cache: HttpCache, target: PurgeTarget): Promise<number> {
  switch (target.kind) {
    case 'url':
      return cache.purgeKey(target.key);
    case 'tag':
      return cache.purgeTag(target.tag);
    case 'prefix':
      return cache.purgePrefix(target.prefix);
  }
}
