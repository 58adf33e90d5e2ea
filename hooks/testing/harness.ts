/**
 * `startCacheTest`: a Cairn (any `ProxyHttp`, by default a `CdnProxy` over an in-memory cache) on
 * 127.0.0.1:0 in front of a scripted origin or a real origin URL, or a running cache by URL; send
 * requests, read each response's cache outcome and the origin's hit counts.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpCache, resolvePolicyOptions, serve } from '../../src/index.ts';
import type {
  CacheLockOptions,
  CairnServer,
  LmdbStoreOptions,
  MemoryStoreOptions,
  PolicyOptions,
  ProxyHttp,
  ResolvedPolicyOptions,
  ServeOptions,
} from '../../src/index.ts';
import { CdnProxy } from '../cdn-proxy.ts';
import { explainStorability } from './explain.ts';
import type { StorabilityExplanation } from './explain.ts';
import { observeCache } from './observe.ts';
import type { CacheObservation, CacheOutcome } from './observe.ts';
import { startOriginTap, startScriptedOrigin, TEST_ID_HEADER } from './origin.ts';
import type { OriginExchange, OriginRecorder, ScriptedRoutes } from './origin.ts';
import { compilePattern } from './pattern.ts';

/** The cache the kit opens for its default `CdnProxy` (or for a proxy factory that takes it). */
export interface CacheTestCacheOptions {
  /** RFC 9111 policy options, also used to explain responses. */
  readonly policy?: PolicyOptions;
  /** Default `{ maxBytes: 64 MiB, maxObjectBytes: 8 MiB }`. */
  readonly memory?: MemoryStoreOptions;
  /**
   * An LMDB disk tier under the memory tier: `'temp'` for a fresh temporary directory removed by
   * `close()`, or explicit options. Default: none (memory only, fastest).
   */
  readonly disk?: false | 'temp' | LmdbStoreOptions;
  /** Collapse concurrent misses (default on); `false` lets every miss fetch. */
  readonly lock?: CacheLockOptions | false;
  /** The cache's name in `Cache-Status` (default `Cairn`). */
  readonly name?: string;
}

/** What a proxy factory receives. */
export interface ProxyFactoryContext {
  /** Where the proxy must send requests: the scripted origin, or the tap in front of the real one. */
  readonly origin: string;
  /** The cache the kit opened from `cache` options (close is the kit's job). */
  readonly cache: HttpCache;
}

/** A proxy to test, or a function that builds one for the kit's origin and cache. */
export type ProxyUnderTest<Ctx> =
  ProxyHttp<Ctx> | ((context: ProxyFactoryContext) => ProxyHttp<Ctx> | Promise<ProxyHttp<Ctx>>);

/** Options of {@link startCacheTest}. Give `origin` (a Cairn is started) or `target` (none is). */
export interface CacheTestOptions<Ctx> {
  /**
   * The origin: a URL of a real origin (requests reach it through a recording tap, so hits are
   * counted), routes of a scripted origin to start, or an origin you started yourself.
   */
  readonly origin?: string | ScriptedRoutes | OriginRecorder;
  /** A cache that is already running (any vendor), tested from outside by its response headers. */
  readonly target?: string;
  /**
   * The proxy under test. Default: `CdnProxy` over the kit's cache. A factory receives the origin
   * URL to use and the cache; an instance must already point at the origin (hits are counted only
   * if it points at `origin.url`).
   */
  readonly proxy?: ProxyUnderTest<Ctx>;
  readonly cache?: CacheTestCacheOptions;
  /** Which `Cache-Status` entry to judge (default: the last, closest to the client). */
  readonly cacheName?: string;
  /** Headers sent with every request. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Passed to `serve` (default log level `silent`). */
  readonly serve?: Pick<ServeOptions, 'limits' | 'logLevel' | 'logger'>;
}

/** A request to send. */
export interface CacheTestRequestInit {
  /** Default `GET`. */
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string | readonly string[]>>;
  readonly body?: string | Uint8Array;
}

/** The request as sent, for messages. */
export interface SentRequest {
  readonly method: string;
  /** Absolute URL. */
  readonly url: string;
  /** Path and query. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
}

/**
 * One response, with its cache outcome and (when the origin was reached) the origin exchange.
 *
 * @example
 * ```ts
 * const res = await test.get('/static/app.js');
 * res.outcome;             // 'miss'
 * res.stored;              // true
 * res.cache.entry?.fwd;    // 'uri-miss'
 * res.origin?.status;      // 200
 * res.explain().lifetime;  // 3600
 * ```
 */
export class CacheTestResponse {
  readonly request: SentRequest;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** What the response headers say about the cache. */
  readonly cache: CacheObservation;
  /** What the origin received and answered for this request; `undefined` if it was not reached (or not observed). */
  readonly origin: OriginExchange | undefined;
  /** Epoch ms the request was sent and the response completed. */
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly #policy: ResolvedPolicyOptions;
  #explanation: StorabilityExplanation | undefined;

  constructor(
    request: SentRequest,
    response: { status: number; headers: IncomingHttpHeaders; body: Buffer },
    cache: CacheObservation,
    origin: OriginExchange | undefined,
    times: { sentAt: number; receivedAt: number },
    policy: ResolvedPolicyOptions,
  ) {
    this.request = request;
    this.status = response.status;
    this.headers = response.headers;
    this.body = response.body;
    this.cache = cache;
    this.origin = origin;
    this.sentAt = times.sentAt;
    this.receivedAt = times.receivedAt;
    this.#policy = policy;
    this.#explanation = undefined;
  }

  /** The outcome in one word (`hit`, `miss`, `bypass`, …). */
  get outcome(): CacheOutcome {
    return this.cache.outcome;
  }

  /** Whether the cache stored this response (`undefined` when its headers do not say). */
  get stored(): boolean | undefined {
    return this.cache.stored;
  }

  /** The body as UTF-8. */
  text(): string {
    return this.body.toString('utf8');
  }

  /**
   * Why the cache's policy stores this response or not, in words: from the origin's own response
   * when the kit saw it (so `CDN-Cache-Control` counts), else from these response headers.
   *
   * @example
   * ```ts
   * console.log(res.explain().summary); // 'Not stored: the response has no-store in Cache-Control …'
   * ```
   */
  explain(): StorabilityExplanation {
    if (this.#explanation === undefined) {
      const o = this.origin;
      this.#explanation =
        o === undefined
          ? explainStorability({
              method: this.request.method,
              requestHeaders: this.request.headers,
              status: this.status,
              headers: this.headers,
              timing: { requestTime: this.sentAt, responseTime: this.receivedAt },
              policy: this.#policy,
            })
          : explainStorability({
              method: o.request.method,
              requestHeaders: o.request.headers,
              status: o.status,
              headers: o.headers,
              timing: { requestTime: o.requestTime, responseTime: o.responseTime },
              policy: this.#policy,
            });
    }
    return this.#explanation;
  }
}

interface Agents {
  readonly http: HttpAgent;
  readonly https: HttpsAgent;
}

/**
 * A running cache test. Close it when done.
 *
 * @example
 * ```ts
 * const test = await startCacheTest({ origin: 'http://127.0.0.1:3000' });
 * t.after(() => test.close());
 * await test.get('/');
 * test.originHits('/');  // 1
 * test.hitRatio();       // 0
 * ```
 */
export class CacheTest {
  /** Base URL requests go to: the started Cairn, or the target. */
  readonly url: string;
  /** The origin, when the kit knows it (scripted, tapped or given). */
  readonly origin: OriginRecorder | undefined;
  /** The cache the kit opened (undefined against a target or a proxy instance). */
  readonly cache: HttpCache | undefined;
  /** The started Cairn (undefined against a target). */
  readonly server: CairnServer | undefined;
  /** The LMDB directory of `cache: { disk: 'temp' }` (removed by `close()`), else `undefined`. */
  readonly cacheDir: string | undefined;
  /** Every response so far, oldest first. */
  readonly responses: CacheTestResponse[];
  readonly #agents: Agents;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #policy: ResolvedPolicyOptions;
  readonly #cacheName: string | undefined;
  readonly #cleanup: (() => Promise<void>)[];
  readonly #runId: string;
  #sent = 0;
  #closed: Promise<void> | undefined;

  /** @internal Use {@link startCacheTest}. */
  constructor(parts: {
    url: string;
    origin: OriginRecorder | undefined;
    cache: HttpCache | undefined;
    server: CairnServer | undefined;
    cacheDir: string | undefined;
    headers: Readonly<Record<string, string>>;
    policy: ResolvedPolicyOptions;
    cacheName: string | undefined;
    cleanup: (() => Promise<void>)[];
  }) {
    this.url = parts.url.replace(/\/$/, '');
    this.origin = parts.origin;
    this.cache = parts.cache;
    this.server = parts.server;
    this.cacheDir = parts.cacheDir;
    this.responses = [];
    this.#agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };
    this.#headers = parts.headers;
    this.#policy = parts.policy;
    this.#cacheName = parts.cacheName;
    this.#cleanup = parts.cleanup;
    this.#runId = randomBytes(4).toString('hex');
    this.#sent = 0;
    this.#closed = undefined;
  }

  /**
   * Send one request (`path` is relative to {@link url}, or an absolute URL) and read the whole
   * response.
   *
   * @example
   * ```ts
   * const res = await test.request('/api/items', { method: 'POST', body: '{}' });
   * res.outcome; // 'bypass'
   * ```
   */
  async request(path: string, init: CacheTestRequestInit = {}): Promise<CacheTestResponse> {
    const url = /^https?:\/\//i.test(path)
      ? new URL(path)
      : new URL(this.url + (path.startsWith('/') ? path : `/${path}`));
    const method = (init.method ?? 'GET').toUpperCase();
    const headers: Record<string, string | readonly string[]> = { ...this.#headers, ...init.headers };
    const id = `${this.#runId}-${++this.#sent}`;
    const wire: OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(headers)) wire[k] = typeof v === 'string' ? v : [...v];
    if (this.origin !== undefined) wire[TEST_ID_HEADER] = id;
    const sent: SentRequest = { method, url: url.href, path: url.pathname + url.search, headers };
    const sentAt = Date.now();
    const response = await send(url, method, wire, init.body, this.#agents);
    const receivedAt = Date.now();
    const exchange = this.origin?.exchanges.find((e) => e.testId === id);
    const res = new CacheTestResponse(
      sent,
      response,
      observeCache(response.headers, this.#cacheName),
      exchange,
      { sentAt, receivedAt },
      this.#policy,
    );
    this.responses.push(res);
    return res;
  }

  /**
   * `GET path`.
   *
   * @example
   * ```ts
   * expectHit(await test.get('/static/app.js'));
   * ```
   */
  get(path: string, headers?: Readonly<Record<string, string>>): Promise<CacheTestResponse> {
    return this.request(path, headers === undefined ? {} : { headers });
  }

  /**
   * Requests the origin received that match `pattern` (all without one).
   * Throws when the origin is not observed (a `target`, or a proxy instance without `origin`).
   *
   * @example
   * ```ts
   * test.originHits('/static/*'); // 1
   * ```
   */
  originHits(pattern?: string): number {
    if (this.origin === undefined) {
      throw new TypeError('originHits: this test does not observe the origin (give `origin`, not `target`)');
    }
    return this.origin.hits(pattern);
  }

  /**
   * Share of responses (matching `pattern`, if given) served from the cache (`hit` or `stale`).
   * `NaN` when no response matches.
   *
   * @example
   * ```ts
   * test.hitRatio('/static/*'); // 0.9
   * ```
   */
  hitRatio(pattern?: string): number {
    const p = pattern === undefined ? undefined : compilePattern(pattern);
    let total = 0;
    let hits = 0;
    for (const r of this.responses) {
      if (p !== undefined && !p.matches(r.request.method, r.request.path)) continue;
      total++;
      if (r.outcome === 'hit' || r.outcome === 'stale') hits++;
    }
    return total === 0 ? NaN : hits / total;
  }

  /** Stop the Cairn, the origin the kit started, and remove a temporary disk cache. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#agents.http.destroy();
      this.#agents.https.destroy();
      for (const step of this.#cleanup.reverse()) await step();
    })();
    return this.#closed;
  }
}

async function send(
  url: URL,
  method: string,
  headers: OutgoingHttpHeaders,
  body: string | Uint8Array | undefined,
  agents: Agents,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  const secure = url.protocol === 'https:';
  const request = secure ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, headers, agent: secure ? agents.https : agents.http },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function isRecorder(origin: string | ScriptedRoutes | OriginRecorder): origin is OriginRecorder {
  return (
    typeof origin === 'object' &&
    typeof (origin as Partial<OriginRecorder>).hits === 'function' &&
    typeof (origin as Partial<OriginRecorder>).url === 'string'
  );
}

/** The policy a proxy's own `cache` (a `CdnProxy`, say) uses, if it exposes one. */
function policyOf(proxy: unknown): ResolvedPolicyOptions | undefined {
  if (typeof proxy !== 'object' || proxy === null) return undefined;
  const cache = (proxy as { cache?: unknown }).cache;
  return cache instanceof HttpCache ? cache.policy : undefined;
}

/**
 * Start a cache test. With `origin`, a Cairn is started on 127.0.0.1:0 (by default a `CdnProxy`
 * over an in-memory cache) in front of it; with `target`, requests go to that running cache.
 *
 * @example
 * ```ts
 * import { startCacheTest, expectHit, expectMiss, expectOriginHits } from 'cairn/testing';
 * const test = await startCacheTest({
 *   origin: { '/static/*': { headers: { 'cache-control': 'max-age=300' }, body: 'body{}' } },
 * });
 * expectMiss(await test.get('/static/site.css'));
 * expectHit(await test.get('/static/site.css'));
 * expectOriginHits(test, '/static/*', 1);
 * await test.close();
 * ```
 */
export async function startCacheTest<Ctx = unknown>(options: CacheTestOptions<Ctx>): Promise<CacheTest> {
  const headers = options.headers ?? {};
  if (options.target !== undefined) {
    if (options.origin !== undefined || options.proxy !== undefined) {
      throw new TypeError(
        'startCacheTest: give either `target` (a running cache) or `origin` (and `proxy`), not both',
      );
    }
    const target = new URL(options.target);
    return new CacheTest({
      url: target.href,
      origin: undefined,
      cache: undefined,
      server: undefined,
      cacheDir: undefined,
      headers,
      policy: resolvePolicyOptions(options.cache?.policy),
      cacheName: options.cacheName,
      cleanup: [],
    });
  }
  if (options.origin === undefined) throw new TypeError('startCacheTest: give `origin` (or `target`)');
  const cleanup: (() => Promise<void>)[] = [];
  const undo = async (): Promise<void> => {
    for (const step of cleanup.reverse()) await step();
  };
  try {
    let origin: OriginRecorder;
    if (isRecorder(options.origin)) origin = options.origin;
    else if (typeof options.origin === 'string') {
      origin = await startOriginTap(options.origin);
      cleanup.push(() => origin.close());
    } else {
      origin = await startScriptedOrigin(options.origin);
      cleanup.push(() => origin.close());
    }
    let cache: HttpCache | undefined;
    let cacheDir: string | undefined;
    const serveOptions: ServeOptions = {
      logLevel: 'silent',
      ...options.serve,
      listen: '127.0.0.1:0',
      admin: false,
      workers: 1,
      signals: false,
    };
    let server: CairnServer;
    let proxy: unknown;
    if (options.proxy !== undefined && typeof options.proxy !== 'function') {
      proxy = options.proxy;
      server = await serve(options.proxy, serveOptions);
    } else {
      ({ cache, dir: cacheDir } = await openCache(options.cache ?? {}, cleanup));
      const c = cache;
      cleanup.push(() => c.close());
      if (options.proxy === undefined) {
        const cdn = new CdnProxy({ origins: [origin.url], cache });
        proxy = cdn;
        server = await serve(cdn, serveOptions);
      } else {
        const built = await options.proxy({ origin: origin.url, cache });
        proxy = built;
        server = await serve(built, serveOptions);
      }
    }
    cleanup.push(() => server.close());
    const policy = cache?.policy ?? policyOf(proxy) ?? resolvePolicyOptions(options.cache?.policy);
    return new CacheTest({
      url: `http://127.0.0.1:${server.address.port}`,
      origin,
      cache,
      server,
      cacheDir,
      headers,
      policy,
      cacheName: options.cacheName,
      cleanup,
    });
  } catch (error) {
    await undo();
    throw error;
  }
}

async function openCache(
  options: CacheTestCacheOptions,
  cleanup: (() => Promise<void>)[],
): Promise<{ cache: HttpCache; dir: string | undefined }> {
  let disk: LmdbStoreOptions | undefined;
  let dir: string | undefined;
  if (options.disk === 'temp') {
    const made = await mkdtemp(join(tmpdir(), 'cairn-test-cache-'));
    dir = made;
    cleanup.push(() => rm(made, { recursive: true, force: true }));
    disk = { path: made, maxBytes: 256 * 1024 ** 2 };
  } else if (options.disk !== undefined && options.disk !== false) disk = options.disk;
  const cache = await HttpCache.open({
    memory: options.memory ?? { maxBytes: 64 * 1024 ** 2, maxObjectBytes: 8 * 1024 ** 2 },
    ...(disk === undefined ? {} : { disk }),
    ...(options.lock === undefined ? {} : { lock: options.lock }),
    ...(options.policy === undefined ? {} : { policy: options.policy }),
    ...(options.name === undefined ? {} : { name: options.name }),
  });
  return { cache, dir };
}
