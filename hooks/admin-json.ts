/**
 * Small helpers for JSON admin routes (the upstream API, purge): read a bounded JSON body, answer
 * JSON. Built only from Node and the public API.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Largest admin request body read, in bytes. */
export const ADMIN_BODY_LIMIT = 65_536;

/**
 * Read the request body as JSON. Answers 413 / 400 itself and returns `undefined` when the body is
 * too large or not JSON; an empty body reads as `{}`.
 */
export async function readJsonBody(req: IncomingMessage, res: ServerResponse): Promise<Record<string, unknown> | undefined> {
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
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
