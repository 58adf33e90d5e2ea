/**
 * `ProxyHttp`: the class users subclass. Each method is one phase of a request's life; the engine
 * runs them in the order below and does everything else. Override only what you need: the engine
 * detects overridden hooks once, at construction, and never calls (or awaits) the others.
 *
 * ```text
 * client
 *   │
 *   ├─ earlyRequestFilter
 *   ├─ requestFilter ──────────────(true: you answered)────────────────────► logging
 *   ├─ requestCacheFilter ─(an HttpCache)─► cacheKey ─► lookup
 *   │     ├─ isPurge ─► purge ─► purgeResponseFilter ──────────────────────► logging
 *   │     ├─ fresh hit (cacheHitFilter may force a refresh) ─► responseFilter ─► body from the cache
 *   │     ├─ stale ─► shouldServeStale: serve it (+ background revalidation), or revalidate ─┐
 *   │     └─ miss ─► cacheMiss ─► cache lock: one fetch, the others wait and share it ───────┤
 *   ├─ proxyUpstreamFilter ────────(false: you answered)────────────────────► logging      │
 *   ├─ upstreamPeer ─► upstreamRequestFilter ─► connect (pool) ◄─────────────────────────────┘
 *   │     └─ connect failed ─► failToConnect ─(err.retry)─► upstreamPeer again
 *   ├─ request (+ requestBodyFilter) ─► connectedToUpstream(reused?)
 *   │     └─ failed after connecting ─► errorWhileProxy ─(err.retry, if safe)─► upstreamPeer again
 *   ├─ upstreamResponseFilter ─► responseCacheFilter (store?) ─► responseFilter
 *   │     (cacheVaryFilter picks the variant; cacheNotModifiedFilter answers 304s from the cache)
 *   ├─ upstreamResponseBodyFilter ─► [into the cache] ─► responseBodyFilter ─► responseTrailerFilter
 *   ├─ on failure: failToProxy (502 / 503 / 504, or stale content where the policy allows)
 *   └─ logging (always, exactly once, last)
 * ```
 *
 * Every hook may return its value directly or as a Promise; prefer plain values on the hot path.
 */
// Imported: the global `performance` is a lazy accessor on globalThis, a getter call per use.
import { performance } from 'node:perf_hooks';
import type { HttpCache } from '../cache/http-cache.ts';
import { evaluateConditional } from '../cache/conditional.ts';
import { cacheKey as defaultCacheKey } from '../cache/key.ts';
import type { ResponseVerdict } from '../cache/policy.ts';
import type { ObjectMeta } from '../cache/store.ts';
import { CairnError } from './errors.ts';
import type { ForwardingOptions, HeaderMap } from './headers.ts';
import { DEFAULT_FORWARDING } from './headers.ts';
import type { HttpPeer } from './peer.ts';
import type { Session } from './session.ts';

export type MaybePromise<T> = T | Promise<T>;

/** The request Cairn will send to the origin; `upstreamRequestFilter` may change any of it. */
export interface UpstreamRequest {
  method: string;
  /** Path and query sent to the origin. */
  path: string;
  headers: HeaderMap;
}

/** A response head (status and headers), from the origin or about to go to the client. */
export interface ResponseHead {
  status: number;
  headers: HeaderMap;
}

/**
 * What a body filter returns: a replacement chunk (`Buffer`), `null` to drop the chunk, or nothing
 * to pass the chunk on unchanged.
 */
export type BodyFilterResult = Buffer | null | undefined | void;

/** Options every `ProxyHttp` takes. */
export interface ProxyHttpOptions {
  /** `Via` / `X-Forwarded-*` / `Forwarded` handling (default: `Via: 1.1 cairn`, X-Forwarded on). */
  readonly forwarding?: Partial<ForwardingOptions>;
  /** Most extra attempts at the origin for one request (default 2). */
  readonly maxRetries?: number;
}

/**
 * The proxy framework's base class. `Ctx` is your per-request state, made by `newCtx()`.
 *
 * @example
 * ```ts
 * import { ProxyHttp, HttpPeer, serve, type Session } from 'cairn';
 *
 * const origin = new HttpPeer('http://127.0.0.1:3000');
 * class AddHeader extends ProxyHttp<{ started: number }> {
 *   override newCtx() { return { started: Date.now() }; }
 *   override upstreamPeer() { return origin; }
 *   override responseFilter(_s: Session, res: ResponseHead) { res.headers['x-served-by'] = 'cairn'; }
 * }
 * await serve(new AddHeader(), { listen: '127.0.0.1:8080' });
 * ```
 */
export class ProxyHttp<Ctx = Record<string, never>> {
  readonly forwarding: ForwardingOptions;
  readonly maxRetries: number;

  constructor(options: ProxyHttpOptions = {}) {
    this.forwarding = { ...DEFAULT_FORWARDING, ...options.forwarding };
    this.maxRetries = options.maxRetries ?? 2;
  }

  /**
   * Make the per-request context. Runs first, synchronously, once per request.
   * Default: an empty object.
   */
  newCtx(): Ctx {
    return {} as Ctx;
  }

  /**
   * First look at a request, before anything else runs (e.g. tag it, start a timer).
   * Return value ignored. May be async. Default: nothing.
   */
  earlyRequestFilter(_session: Session, _ctx: Ctx): MaybePromise<void> {}

  /**
   * Decide whether to answer the request yourself (auth, rate limits, redirects).
   * Return `true` when you have written a response (`session.respond(...)`): the engine skips to
   * `logging`. Return `false` to continue. May be async. Default: `false`.
   */
  requestFilter(_session: Session, _ctx: Ctx): MaybePromise<boolean> {
    return false;
  }

  /**
   * See or change each request body chunk on its way to the origin; `end` is true for the last call
   * (whose chunk may be null). Return a Buffer to replace the chunk, `null` to drop it, nothing to keep
   * it. Overriding this makes Cairn send the body chunked (its length may change). May be async.
   * Default: the body streams through untouched.
   */
  requestBodyFilter(
    _session: Session,
    _chunk: Buffer | null,
    _end: boolean,
    _ctx: Ctx,
  ): MaybePromise<BodyFilterResult> {
    return undefined;
  }

  /**
   * Turn caching on for this request: return the `HttpCache` to use, or nothing to bypass the
   * cache. May be async. Default: nothing (the bare `ProxyHttp` does not cache; `CdnProxy` does).
   */
  requestCacheFilter(_session: Session, _ctx: Ctx): MaybePromise<HttpCache | undefined> {
    return undefined;
  }

  /**
   * The primary cache key. Must be synchronous. Default: scheme + host (lower-cased, default port
   * dropped) + path + query; never without the host. Return `undefined` to bypass the cache.
   */
  cacheKey(session: Session, _ctx: Ctx): string | undefined {
    return defaultCacheKey(session.scheme, session.host, session.path);
  }

  /**
   * A stored response was found and is usable. Return `true` to force a refresh from the origin
   * anyway (it is revalidated as if stale). Must be synchronous. Default: `false`.
   */
  cacheHitFilter(_session: Session, _meta: ObjectMeta, _ctx: Ctx): boolean {
    return false;
  }

  /** Nothing usable was stored for this request; called before the cache lock. Default: nothing. */
  cacheMiss(_session: Session, _ctx: Ctx): void {}

  /**
   * Decide whether the origin's response is stored. `verdict` is the RFC 9111 decision (with
   * `CDN-Cache-Control`); return it, or another one (e.g. `{ storable: false, reason: 'status' }`).
   * Must be synchronous. Default: `verdict`.
   */
  responseCacheFilter(
    _session: Session,
    _response: ResponseHead,
    verdict: ResponseVerdict,
    _ctx: Ctx,
  ): ResponseVerdict {
    return verdict;
  }

  /**
   * Normalise a request header named by `Vary` before it selects a variant (e.g. reduce
   * `Accept-Encoding` to the one coding you serve). Must be synchronous. Default: the value as sent.
   */
  cacheVaryFilter(
    _session: Session,
    _name: string,
    value: string | undefined,
    _ctx: Ctx,
  ): string | undefined {
    return value;
  }

  /**
   * May a stale response be served? `error` is set when the origin failed (stale-if-error), unset
   * for stale-while-revalidate; `allowed` is what the response's directives permit. Must be
   * synchronous. Default: `allowed`.
   */
  shouldServeStale(_session: Session, _ctx: Ctx, _error: CairnError | undefined, allowed: boolean): boolean {
    return allowed;
  }

  /**
   * Should this conditional request (`If-None-Match`, `If-Modified-Since`) get a 304 for the cached
   * `response`? Must be synchronous. Default: RFC 9110 §13.2.2 evaluation.
   */
  cacheNotModifiedFilter(session: Session, response: ResponseHead, _ctx: Ctx): boolean {
    return (
      evaluateConditional(session.method, session.headers, response.status, response.headers) ===
      'not-modified'
    );
  }

  /**
   * Is this request a purge? Must be synchronous. Default: method `PURGE` (the cache's `purgeFrom`
   * addresses are allowed; others get 403).
   */
  isPurge(session: Session, _ctx: Ctx): boolean {
    return session.method === 'PURGE';
  }

  /** Change the response to a purge before it is sent. Must be synchronous. Default: nothing. */
  purgeResponseFilter(_session: Session, _response: ResponseHead, _ctx: Ctx): void {}

  /**
   * Last chance to answer without the origin (after the cache, on a miss).
   * Return `true` to go to the origin, `false` when you have written a response yourself (if you
   * wrote none, the client gets 502). May be async. Default: `true`.
   */
  proxyUpstreamFilter(_session: Session, _ctx: Ctx): MaybePromise<boolean> {
    return true;
  }

  /**
   * Choose the origin for this attempt. Called again for each retry (`session.attempts` counts them
   * and `session.peer` is the previous choice), so it can pick the same peer or the next one.
   * May be async. Default: throws `CAIRN_ERR_INTERNAL_NO_PEER` — every proxy must override it.
   */
  upstreamPeer(_session: Session, _ctx: Ctx): MaybePromise<HttpPeer> {
    throw new CairnError('CAIRN_ERR_INTERNAL_NO_PEER', 'upstreamPeer() is not implemented by this proxy');
  }

  /**
   * The request went over a connection to `peer`; `reused` says whether that connection served
   * earlier requests. Runs once the origin answers (or fails after connecting), before the
   * response phases: undici connects and writes the request in one step, so this is the first
   * moment the connection is known. Return value ignored; must be synchronous.
   * Default: nothing.
   */
  connectedToUpstream(_session: Session, _reused: boolean, _peer: HttpPeer, _ctx: Ctx): void {}

  /**
   * Opening a connection to `peer` failed. Return the error (possibly another one); set
   * `error.retry = true` to try again (`upstreamPeer` is asked again). Must be synchronous.
   * Default: no retry.
   */
  failToConnect(_session: Session, _peer: HttpPeer, _ctx: Ctx, error: CairnError): CairnError {
    return error;
  }

  /**
   * Change the request before it goes to the origin (path, method, headers). Runs on every attempt.
   * May be async. Default: nothing (the copied, hop-by-hop-free client headers are sent).
   */
  upstreamRequestFilter(_session: Session, _request: UpstreamRequest, _ctx: Ctx): MaybePromise<void> {}

  /**
   * See or change the origin's response head before the cache sees it. May be async.
   * Default: nothing.
   */
  upstreamResponseFilter(_session: Session, _response: ResponseHead, _ctx: Ctx): MaybePromise<void> {}

  /**
   * See or change each origin body chunk before it is cached (same return convention as
   * `requestBodyFilter`). May be async (the origin is paused meanwhile). Default: unchanged.
   */
  upstreamResponseBodyFilter(
    _session: Session,
    _chunk: Buffer | null,
    _end: boolean,
    _ctx: Ctx,
  ): MaybePromise<BodyFilterResult> {
    return undefined;
  }

  /**
   * See or change the response head the client gets (after the cache). May be async.
   * Default: nothing.
   */
  responseFilter(_session: Session, _response: ResponseHead, _ctx: Ctx): MaybePromise<void> {}

  /**
   * See or change each body chunk the client gets. May be async. Default: unchanged.
   * A filter that changes the body length should delete `content-length` in `responseFilter`.
   */
  responseBodyFilter(
    _session: Session,
    _chunk: Buffer | null,
    _end: boolean,
    _ctx: Ctx,
  ): MaybePromise<BodyFilterResult> {
    return undefined;
  }

  /**
   * The origin's response ended: see or change its trailers (`{}` when it sent none) before they go
   * to the client, and optionally return bytes to send as the last body chunk (as Pingora's
   * `response_trailer_filter` does — e.g. a gRPC-web trailer frame carrying the trailers in the body;
   * delete the fields you moved there). Runs for origin responses only, not for cache hits. Must be
   * synchronous. Default: nothing.
   */
  responseTrailerFilter(_session: Session, _trailers: HeaderMap, _ctx: Ctx): Buffer | void {}

  /**
   * An error happened after the request reached a connection to `peer` (reset, timeout, bad reply).
   * `reused` tells whether that connection had served earlier requests. Return the error; set
   * `error.retry = true` to try again. The engine never retries a request whose body was already
   * sent, nor a non-idempotent request that may have reached the origin, whatever this returns.
   * Must be synchronous. Default: retry once when a re-used connection was closed by the origin
   * before any response byte came back (a keep-alive race), for idempotent methods.
   */
  errorWhileProxy(
    _peer: HttpPeer,
    session: Session,
    error: CairnError,
    _ctx: Ctx,
    reused: boolean,
  ): CairnError {
    if (reused && error.retryable === 'if-reused' && session.attempts === 1) error.retry = true;
    return error;
  }

  /**
   * Write the error response and return the status used (0 if nothing could be written because the
   * client is gone or the response had already started). May be async.
   * Default: `error.status` (502 for connect and protocol errors, 504 for timeouts, …) with a short
   * plain-text body; nothing to a client that is gone; a response already started is cut off so
   * the client never mistakes it for a complete one.
   */
  failToProxy(session: Session, error: CairnError, _ctx: Ctx): MaybePromise<number> {
    if (session.aborted) return 0;
    const res = session.response;
    if (res.headersSent) {
      res.destroy(error);
      return 0;
    }
    const status = error.status;
    session.respond(
      status,
      { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' },
      `${status} ${statusText(status)}\n`,
    );
    return status;
  }

  /**
   * Always called exactly once per request, last, when the response is complete or the client is
   * gone; `error` is what went wrong, if anything. May be async (not awaited by the response).
   * Default: one JSON access line through `session.log` (pino).
   */
  logging(session: Session, error: CairnError | undefined, _ctx: Ctx): MaybePromise<void> {
    const logger = session.log;
    if (!logger.isLevelEnabled('info')) return;
    const peer = session.peer;
    logger.info(
      {
        reqId: session.id,
        method: session.method,
        host: session.host,
        path: session.path,
        status: session.status,
        bytes: session.bytesSent,
        durationMs: Math.round((performance.now() - session.startedAt) * 1000) / 1000,
        upstream: peer === undefined ? undefined : peer.address,
        reused: session.upstreamReused,
        attempts: session.attempts,
        cache: session.cacheStatus,
        err: error === undefined ? undefined : error.code,
        errSource: error === undefined ? undefined : error.source,
        errRetryable: error === undefined ? undefined : error.retryable,
      },
      'request',
    );
  }
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  413: 'Content Too Large',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function statusText(status: number): string {
  return STATUS_TEXT[status] ?? 'Error';
}

/** The hooks the engine looks up to build a plan. */
export const HOOK_NAMES = [
  'earlyRequestFilter',
  'requestFilter',
  'requestBodyFilter',
  'requestCacheFilter',
  'cacheKey',
  'cacheHitFilter',
  'cacheMiss',
  'responseCacheFilter',
  'cacheVaryFilter',
  'shouldServeStale',
  'cacheNotModifiedFilter',
  'isPurge',
  'purgeResponseFilter',
  'proxyUpstreamFilter',
  'connectedToUpstream',
  'failToConnect',
  'upstreamRequestFilter',
  'upstreamResponseFilter',
  'upstreamResponseBodyFilter',
  'responseFilter',
  'responseBodyFilter',
  'responseTrailerFilter',
  'errorWhileProxy',
  'failToProxy',
  'logging',
] as const satisfies readonly (keyof ProxyHttp)[];

export type HookName = (typeof HOOK_NAMES)[number];

/** Which hooks a proxy overrides: `true` where the subclass's method differs from the base class's. */
export type PhasePlan = Readonly<Record<HookName, boolean>>;

/**
 * Compare each hook with `ProxyHttp.prototype` once, so the runner can skip the untouched ones
 * without calling them (fastify keeps `null` for empty hook lists the same way).
 */
export function phasePlan(proxy: ProxyHttp<unknown>): PhasePlan {
  const plan = {} as Record<HookName, boolean>;
  const base = ProxyHttp.prototype as unknown as Record<HookName, unknown>;
  const own = proxy as unknown as Record<HookName, unknown>;
  for (const name of HOOK_NAMES) plan[name] = own[name] !== base[name];
  return plan;
}
