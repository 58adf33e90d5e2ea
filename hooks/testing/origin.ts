/**
 * Origins for cache tests: a scripted origin (declared routes on a real `node:http` server on
 * 127.0.0.1:0) and an origin tap (a recording pass-through in front of a real origin URL). Both
 * record every exchange, so a test can count origin hits and explain what the origin answered.
 */
import { Agent as HttpAgent, createServer, request as httpRequest } from 'node:http';
import type {
  IncomingHttpHeaders,
  IncomingMessage,
  OutgoingHttpHeaders,
  Server,
  ServerResponse,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { stripHopByHop } from '../../src/index.ts';
import type { HeaderMap } from '../../src/index.ts';
import { compilePattern } from './pattern.ts';
import type { RequestPattern } from './pattern.ts';

/**
 * The request header the kit adds so an origin exchange can be tied to the client request (the
 * tap removes it before a real origin sees it).
 *
 * @example
 * ```ts
 * origin.exchanges.find((e) => e.testId === sentId); // what `res.origin` is made of
 * ```
 */
export const TEST_ID_HEADER = 'x-cairn-test-id';

/** A request as an origin saw it. */
export interface OriginRequest {
  readonly method: string;
  /** Request target: path and query. */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** 1 for the first request this route answers, 2 for the second, … (0 for an unmatched request). */
  readonly hit: number;
}

/** One request the origin received and the head of what it answered. */
export interface OriginExchange {
  readonly request: OriginRequest;
  readonly status: number;
  /** Response headers (lower-case names) as the origin sent them. */
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
  /** The scripted route that answered (its pattern), or `undefined`. */
  readonly route: string | undefined;
  /** The kit's request id (`x-cairn-test-id`), when the proxy forwarded it. */
  readonly testId: string | undefined;
  /** Epoch ms the request arrived and the response head was sent. */
  readonly requestTime: number;
  readonly responseTime: number;
}

/** What the kit needs from an origin: where it is, and what it has seen. */
export interface OriginRecorder {
  /** `http://127.0.0.1:port`: point the proxy under test here. */
  readonly url: string;
  /** Every exchange so far, oldest first. */
  readonly exchanges: readonly OriginExchange[];
  /**
   * Requests the origin received whose method and target match `pattern` (see `compilePattern`);
   * every request without a pattern.
   *
   * @example
   * ```ts
   * origin.hits('/static/*'); // 1
   * ```
   */
  hits(pattern?: string): number;
  /** Forget the exchanges (and per-route hit numbers). */
  reset(): void;
  close(): Promise<void>;
}

/** What a scripted route answers. */
export interface ScriptedReply {
  /** Default 200. */
  readonly status?: number;
  readonly headers?: Readonly<Record<string, string | number | readonly string[]>>;
  /** Default empty. Sent with a Content-Length (never for HEAD). */
  readonly body?: string | Uint8Array;
  /** Milliseconds to wait before answering (slow origins, collapsing concurrent misses). */
  readonly delayMs?: number;
}

/** A route: a fixed reply, or a function of the request (e.g. a new ETag after the 2nd hit). */
export type ScriptedRoute =
  ScriptedReply | ((request: OriginRequest) => ScriptedReply | Promise<ScriptedReply>);

/** Routes by pattern (`'/static/*'`, `'POST /api/*'`); the first matching pattern answers. */
export type ScriptedRoutes = Readonly<Record<string, ScriptedRoute>>;

/** A scripted origin: a recorder whose routes can be replaced mid-test (a "deploy"). */
export interface ScriptedOrigin extends OriginRecorder {
  /**
   * Replace or add one route (added routes are matched after the existing ones).
   *
   * @example
   * ```ts
   * origin.route('/static/*', { headers: { 'cache-control': 'no-store' }, body: 'v2' });
   * ```
   */
  route(pattern: string, route: ScriptedRoute): void;
}

const UNMATCHED: ScriptedReply = {
  status: 404,
  headers: { 'content-type': 'text/plain', 'cache-control': 'no-store' },
  body: 'no scripted route matches this request\n',
};

class Exchanges {
  readonly list: OriginExchange[] = [];
  readonly perRoute = new Map<string, number>();

  nextHit(route: string): number {
    const n = (this.perRoute.get(route) ?? 0) + 1;
    this.perRoute.set(route, n);
    return n;
  }

  hits(pattern: string | undefined): number {
    if (pattern === undefined) return this.list.length;
    const p = compilePattern(pattern);
    let n = 0;
    for (const e of this.list) if (p.matches(e.request.method, e.request.path)) n++;
    return n;
  }

  reset(): void {
    this.list.length = 0;
    this.perRoute.clear();
  }
}

function testIdOf(headers: IncomingHttpHeaders): string | undefined {
  const v = headers[TEST_ID_HEADER];
  return typeof v === 'string' ? v : undefined;
}

function plainHeaders(
  headers: OutgoingHttpHeaders | IncomingHttpHeaders,
): Record<string, string | readonly string[]> {
  const out: Record<string, string | readonly string[]> = {};
  for (const [name, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(v) ? v.map(String) : String(v);
  }
  return out;
}

async function listenLoopback(server: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function wait(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Start a scripted origin on 127.0.0.1:0. A request no route matches gets a 404 with
 * `Cache-Control: no-store`.
 *
 * @example
 * ```ts
 * const origin = await startScriptedOrigin({
 *   '/static/*': { headers: { 'cache-control': 'public, max-age=3600' }, body: 'asset' },
 *   '/api/*': (req) => ({ headers: { 'cache-control': 'no-store' }, body: `call ${req.hit}` }),
 * });
 * // … point a proxy at origin.url, send requests …
 * origin.hits('/static/*'); // requests that reached the origin
 * await origin.close();
 * ```
 */
export async function startScriptedOrigin(routes: ScriptedRoutes): Promise<ScriptedOrigin> {
  const table: { pattern: RequestPattern; route: ScriptedRoute }[] = [];
  const setRoute = (pattern: string, route: ScriptedRoute): void => {
    const existing = table.find((r) => r.pattern.source === pattern);
    if (existing !== undefined) existing.route = route;
    else table.push({ pattern: compilePattern(pattern), route });
  };
  for (const [pattern, route] of Object.entries(routes)) setRoute(pattern, route);
  const exchanges = new Exchanges();

  const answer = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const requestTime = Date.now();
    // Read (and drop) any request body first, so the reply never races the upload.
    for await (const _chunk of req as AsyncIterable<Buffer>) {
      // discarded
    }
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const entry = table.find((r) => r.pattern.matches(method, path));
    const hit = entry === undefined ? 0 : exchanges.nextHit(entry.pattern.source);
    const request: OriginRequest = { method, path, headers: req.headers, hit };
    let reply: ScriptedReply;
    if (entry === undefined) reply = UNMATCHED;
    else reply = typeof entry.route === 'function' ? await entry.route(request) : entry.route;
    if (reply.delayMs !== undefined && reply.delayMs > 0) await wait(reply.delayMs);
    const body =
      reply.body === undefined
        ? Buffer.alloc(0)
        : typeof reply.body === 'string'
          ? Buffer.from(reply.body)
          : reply.body;
    const headers: OutgoingHttpHeaders = {};
    for (const [name, v] of Object.entries(reply.headers ?? {}))
      headers[name.toLowerCase()] = typeof v === 'object' ? [...v] : v;
    if (headers['content-length'] === undefined && headers['transfer-encoding'] === undefined) {
      headers['content-length'] = body.byteLength;
    }
    const status = reply.status ?? 200;
    res.writeHead(status, headers);
    exchanges.list.push({
      request,
      status,
      headers: plainHeaders(headers),
      route: entry?.pattern.source,
      testId: testIdOf(req.headers),
      requestTime,
      responseTime: Date.now(),
    });
    res.end(method === 'HEAD' || status === 204 || status === 304 ? undefined : body);
  };

  const server = createServer((req, res) => {
    answer(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      res.end(`scripted route failed: ${(error as Error).message}\n`);
    });
  });
  const url = await listenLoopback(server);
  return {
    url,
    get exchanges(): readonly OriginExchange[] {
      return exchanges.list;
    },
    hits: (pattern?: string) => exchanges.hits(pattern),
    reset: () => exchanges.reset(),
    route: setRoute,
    close: () => closeServer(server),
  };
}

/**
 * Start a recording pass-through on 127.0.0.1:0 in front of a real origin: every request is
 * forwarded to `target` (Host rewritten to it, bodies streamed) and the exchange recorded, so a test
 * can count what reached the origin. Answers 502 when the origin cannot be reached.
 *
 * @example
 * ```ts
 * const tap = await startOriginTap('http://127.0.0.1:3000');
 * const proxy = new CdnProxy({ origins: [tap.url], cache });
 * // … later
 * tap.hits('/api/*');
 * ```
 */
export async function startOriginTap(target: string): Promise<OriginRecorder> {
  const base = new URL(target);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new TypeError(`origin tap: ${target} is not an http(s) URL`);
  }
  const secure = base.protocol === 'https:';
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const prefix = base.pathname.replace(/\/$/, '');
  const exchanges = new Exchanges();

  const server = createServer((req, res) => {
    const requestTime = Date.now();
    const headers: HeaderMap = { ...req.headers };
    stripHopByHop(headers);
    headers.host = base.host;
    // The kit's request id is for the tap's records; the real origin never sees it.
    delete headers[TEST_ID_HEADER];
    const path = req.url ?? '/';
    const send = secure ? httpsRequest : httpRequest;
    const upstream = send(
      {
        protocol: base.protocol,
        hostname: base.hostname,
        port: base.port,
        method: req.method,
        path: prefix + path,
        headers,
        agent,
      },
      (up: IncomingMessage) => {
        const status = up.statusCode ?? 502;
        const out: HeaderMap = { ...up.headers };
        stripHopByHop(out);
        const method = req.method ?? 'GET';
        exchanges.list.push({
          request: { method, path, headers: req.headers, hit: 0 },
          status,
          headers: plainHeaders(out),
          route: undefined,
          testId: testIdOf(req.headers),
          requestTime,
          responseTime: Date.now(),
        });
        res.writeHead(status, out);
        up.pipe(res);
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', (error) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(502, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      res.end(`origin tap: cannot reach ${target}: ${error.message}\n`);
    });
    req.pipe(upstream);
  });
  const url = await listenLoopback(server);
  return {
    url,
    get exchanges(): readonly OriginExchange[] {
      return exchanges.list;
    },
    hits: (pattern?: string) => exchanges.hits(pattern),
    reset: () => exchanges.reset(),
    close: async () => {
      await closeServer(server);
      agent.destroy();
    },
  };
}
