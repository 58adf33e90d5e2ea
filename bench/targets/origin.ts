/**
 * The benchmark origin, and the `node-ceiling` target: a bare `node:http` server that answers
 * `GET /<size>` (`/1k`, `/64k`, `/512`, `/1m`) from a preallocated Buffer, with keep-alive.
 * It does the least work a Node HTTP server can do per request, so as a target it is the ceiling
 * for any Node proxy on the same core (a proxy does this plus an origin request).
 *
 * Responses are `Cache-Control: no-store`, so a caching proxy under test passes every request
 * through; `/cacheable/<size>` answers the same bytes with `public, max-age=3600` for cache-hit
 * benches. `GET /__bench/requests` answers how many other requests it has served (not counted
 * itself): the cache-hit bench reads it before and after each sample to prove every answer was a
 * hit (the count must not move).
 *
 *   node --import tsx bench/targets/origin.ts --port 8081 [--host 127.0.0.1]
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { parseSize } from '../lib/sizes.ts';

const { values } = parseArgs({
  options: { port: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' } },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0) throw new Error('origin: --port N is required');

/** Bounded, so a stray URL cannot make the origin allocate without limit. */
const MAX_SIZES = 32;

interface Body {
  readonly buf: Buffer;
  readonly length: string;
}

const bodies = new Map<string, Body>();

function body(token: string): Body | null {
  const hit = bodies.get(token);
  if (hit !== undefined) return hit;
  const n = parseSize(token);
  if (n === null || bodies.size >= MAX_SIZES) return null;
  // Printable, not zeros: nothing on the path can special-case the bytes.
  const buf = Buffer.alloc(n, 'cairn-bench-0123456789abcdefghijklmnopqrstuvwxyz\n');
  const b = { buf, length: String(n) };
  bodies.set(token, b);
  return b;
}
body('1k');
body('64k');

const NO_STORE = 'no-store';
const COUNT_PATH = '/__bench/requests';
/** Requests served (all but COUNT_PATH): one integer increment per request. */
let served = 0;
const CACHEABLE = 'public, max-age=3600';

function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '/';
  if (url === COUNT_PATH) {
    const text = String(served);
    res.writeHead(200, {
      'content-type': 'text/plain',
      'content-length': text.length,
      'cache-control': NO_STORE,
    });
    res.end(text);
    return;
  }
  served++;
  const q = url.indexOf('?');
  let path = q < 0 ? url : url.slice(0, q);
  let cacheControl = NO_STORE;
  if (path.startsWith('/cacheable/')) {
    cacheControl = CACHEABLE;
    path = path.slice('/cacheable'.length);
  }
  const b = body(path.slice(1));
  if (b === null) {
    res.writeHead(404, { 'content-length': '0' });
    res.end();
    return;
  }
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': b.length,
    'cache-control': cacheControl,
  });
  res.end(req.method === 'HEAD' ? undefined : b.buf);
}

const server = http.createServer({ keepAlive: true }, onRequest);
// Outlive the pauses between a proxy's turns, so its pooled origin connections stay open.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.requestTimeout = 0;
server.listen(port, values.host, () => {
  console.log(`origin listening on http://${values.host}:${port}`);
});

const stop = (): void => {
  server.close();
  server.closeAllConnections();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
