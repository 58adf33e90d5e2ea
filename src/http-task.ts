/**
 * The phase runner for one request: runs the hooks in order, consults the cache when a hook turned
 * it on, talks to the origin through the pool (this object is undici's dispatch handler, so no
 * per-request closures are made), streams the body with backpressure both ways, retries when it
 * is safe, and calls `logging` exactly once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
// Imported: the global `performance` is a lazy accessor on globalThis, a getter call per use.
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import type { HttpCache } from '../cache/http-cache.ts';
import type { FieldList } from '../cache/policy.ts';
import type { ChunkSource } from './cache-path.ts';
import { CacheRequest } from './cache-path.ts';
import { CairnError, isCairnError } from './errors.ts';
import { appendField, upstreamRequestHeaders, withoutHopByHop } from './headers.ts';
import type { Engine } from './engine.ts';
import type { HttpPeer } from './peer.ts';
import type { BodyFilterResult, ResponseHead, UpstreamRequest } from './proxy-http.ts';
import { Session } from './session.ts';
import { isThenable, runRequestFilters } from './request-phases.ts';
import type { ReuseProbe } from './upstream-pool.ts';
import { announceRequest, upstreamError } from './upstream-pool.ts';

const kTask = Symbol('cairn.task');
type TaskResponse = ServerResponse & { [kTask]?: HttpTask<unknown> };

/** Where the exchange with the origin stands. */
type UpstreamPhase = 'none' | 'connecting' | 'sent' | 'responding' | 'done';

/**
 * Stages a response body chunk goes through, in order: the origin-side filter, the cache, the
 * client-side filter, and the range window (a range request that missed). Each may go async.
 */
const STAGE_UPSTREAM_FILTER = 0;
const STAGE_CACHE = 1;
const STAGE_CLIENT_FILTER = 2;
const STAGE_WINDOW = 3;
const STAGE_WRITE = 4;

type Trailers = Record<string, string | string[] | undefined>;

/** A phase step: done (undefined) when every hook it ran was synchronous, else a promise of it. */
type Step = void | Promise<void>;

/** Wrap anything thrown by a hook as a coded internal error (keeping CairnErrors as they are). */
export function hookError(error: unknown): CairnError {
  if (isCairnError(error)) return error;
  return new CairnError(
    'CAIRN_ERR_INTERNAL_HOOK',
    `a hook failed: ${(error as Error)?.message ?? String(error)}`,
    {
      cause: error,
    },
  );
}

/** One downstream request on its way through the phases. */
export class HttpTask<Ctx> implements Dispatcher.DispatchHandler, ReuseProbe {
  readonly engine: Engine<Ctx>;
  readonly session: Session;
  readonly ctx: Ctx;
  upstreamReused: boolean;
  #phase: UpstreamPhase;
  #controller: Dispatcher.DispatchController | null;
  #request: UpstreamRequest | null;
  #peer: HttpPeer | null;
  #hasBody: boolean;
  #statusMessage: string | undefined;
  /** The cache path, when `requestCacheFilter` turned caching on. */
  #cache: CacheRequest<Ctx> | null;
  /** The cache answered; the origin's response (if any) is drained, not forwarded. */
  #detached: boolean;
  /** A body Cairn serves itself (hit, collapsed waiter), pumped with backpressure. */
  #local: ChunkSource | null;
  /** True while a body chunk is in an async stage; later chunks wait in `#bodyQueue`. */
  #bodyBusy: boolean;
  #bodyQueue: (Buffer | null)[];
  #trailers: Trailers | null;
  #logged: boolean;
  #corked: boolean;
  /** Body bytes the response head announced and `#writeChunk` has not written yet; -1: unknown. */
  #bodyLeft: number;
  /** Whether `closed()` is wired to the response's 'close' (see `run`). */
  #listening: boolean;

  constructor(engine: Engine<Ctx>, request: IncomingMessage, response: ServerResponse) {
    this.engine = engine;
    this.session = new Session(request, response, engine.scheme, performance.now(), engine.logger);
    this.ctx = engine.proxy.newCtx();
    this.upstreamReused = false;
    this.#phase = 'none';
    this.#controller = null;
    this.#request = null;
    this.#peer = null;
    const headers = request.headers;
    const length = headers['content-length'];
    // HTTP/2 frames the body itself: a request has one unless its HEADERS frame ended the stream
    // (gRPC clients send no content-length at all).
    this.#hasBody =
      request.httpVersionMajor === 2
        ? !(request as IncomingMessage & { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders
        : headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
    this.#statusMessage = undefined;
    this.#cache = null;
    this.#detached = false;
    this.#local = null;
    this.#bodyBusy = false;
    this.#bodyQueue = [];
    this.#trailers = null;
    this.#logged = false;
    this.#corked = false;
    this.#bodyLeft = -1;
    this.#listening = false;
  }

  /**
   * Run the request phases, then the cache, then go to the origin. Never throws or rejects. Each
   * step continues synchronously while the hooks answer synchronously, so a request whose hooks are
   * all synchronous (a cache hit, most pass-through requests) allocates no promise on its way.
   */
  run(): void {
    let step: Step;
    try {
      step = this.#requestPhases();
    } catch (error) {
      step = undefined;
      void this.#failOrServeStale(hookError(error));
    }
    // Wired after the synchronous part: 'close' and 'drain' are never emitted during it, and a hit
    // that `#endLocal` finished there has been logged already, so it skips the listener (whose
    // call costs a hit about as much as the log line itself).
    if (!this.#logged) this.#listen();
    if (isThenable(step)) step.then(undefined, (error: unknown) => this.#failOrServeStale(hookError(error)));
  }

  #listen(): void {
    this.#listening = true;
    const response = this.session.response as TaskResponse;
    response[kTask] = this;
    // 'close' fires once; `on` avoids the wrapper closure `once` allocates per request.
    response.on('close', onResponseClose);
  }

  #requestPhases(): Step {
    const answered = runRequestFilters(this.engine, this.session, this.ctx);
    if (isThenable(answered)) return answered.then((done) => (done ? undefined : this.#cachePhase()));
    if (answered) return;
    return this.#cachePhase();
  }

  #cachePhase(): Step {
    const { proxy, plan } = this.engine;
    if (this.session.aborted) return;
    if (!plan.requestCacheFilter) return this.#upstreamPhase();
    const cache = proxy.requestCacheFilter(this.session, this.ctx);
    if (isThenable(cache)) return cache.then((c) => this.#lookup(c));
    return this.#lookup(cache);
  }

  #lookup(cache: HttpCache | undefined): Step {
    if (cache === undefined) return this.#upstreamPhase();
    this.engine.noteCache(cache);
    const lookup = new CacheRequest(this, cache);
    this.#cache = lookup;
    const answered = lookup.lookup();
    if (isThenable(answered)) return answered.then((done) => this.#afterLookup(done));
    return this.#afterLookup(answered);
  }

  #afterLookup(answered: boolean): Step {
    if (answered || this.session.aborted) return;
    return this.#upstreamPhase();
  }

  #upstreamPhase(): Step {
    const { proxy, plan } = this.engine;
    if (!plan.proxyUpstreamFilter) return this.#connect();
    const proceed = proxy.proxyUpstreamFilter(this.session, this.ctx);
    if (isThenable(proceed)) return proceed.then((p) => this.#afterUpstreamFilter(p));
    return this.#afterUpstreamFilter(proceed);
  }

  #afterUpstreamFilter(proceed: boolean): Step {
    if (proceed) return this.#connect();
    if (this.session.responded) {
      this.#abandonUnanswered();
      return;
    }
    // 502, as documented on proxyUpstreamFilter.
    return this.fail(
      new CairnError('CAIRN_ERR_INTERNAL', 'proxyUpstreamFilter declined without answering', { status: 502 }),
    ).then(() => this.#abandonUnanswered());
  }

  #abandonUnanswered(): void {
    this.#cache?.abandon(new CairnError('CAIRN_ERR_CACHE_WRITER_FAILED', 'answered without the origin'));
  }

  /**
   * No origin could be asked (e.g. `upstreamPeer` found no healthy backend, 503): stale content
   * where the policy allows (stale-if-error, RFC 5861 §4), else the error response.
   */
  async #failOrServeStale(error: CairnError): Promise<void> {
    if (error.source === 'upstream' && this.#cache?.serveStaleOnError(error) === true) return;
    await this.fail(error);
  }

  /** Choose a peer, build the origin request and hand it to the pool. */
  #connect(): Step {
    const session = this.session;
    if (session.aborted) return;
    session.attempts++;
    if (session.attempts > 1) this.engine.metrics.upstreamRetry();
    const peer = this.engine.proxy.upstreamPeer(session, this.ctx);
    if (isThenable(peer)) return peer.then((p) => this.#toPeer(p));
    return this.#toPeer(peer);
  }

  #toPeer(peer: HttpPeer | null | undefined): Step {
    const { proxy, plan } = this.engine;
    const session = this.session;
    if (peer === undefined || peer === null) {
      throw new CairnError('CAIRN_ERR_INTERNAL_NO_PEER', 'upstreamPeer returned no peer');
    }
    this.#peer = peer;
    session.peer = peer;
    let request = this.#request;
    if (request === null) {
      const req = session.request;
      const headers = upstreamRequestHeaders(
        req.headers,
        session.clientAddress,
        session.scheme,
        proxy.forwarding,
      );
      // A body filter may change the length: send it chunked.
      if (plan.requestBodyFilter && this.#hasBody) delete headers['content-length'];
      request = { method: session.method, path: session.path, headers };
      this.#request = request;
      this.#cache?.prepareUpstream(request);
    }
    const hostMode = peer.hostHeader;
    if (hostMode === 'peer')
      request.headers.host = peer.port === (peer.tls ? 443 : 80) ? peer.hostname : peer.address;
    else if (hostMode !== 'keep') request.headers.host = hostMode;
    if (plan.upstreamRequestFilter) {
      const filtered = proxy.upstreamRequestFilter(session, request, this.ctx);
      if (isThenable(filtered)) {
        const ready = request;
        return filtered.then(() => this.#dispatch(peer, ready));
      }
    }
    this.#dispatch(peer, request);
  }

  #dispatch(peer: HttpPeer, request: UpstreamRequest): void {
    const session = this.session;
    if (session.aborted) return;
    if (this.#hasBody && !session.request.readableDidRead) {
      // Tell a client that sent `Expect: 100-continue` to go on, now that the request phases let
      // it through (RFC 9110 §10.1.1); a refused request never makes it send the body.
      const expect = session.headers.expect;
      if (expect !== undefined && expect.toLowerCase() === '100-continue') session.response.writeContinue();
    }
    this.#phase = 'connecting';
    this.upstreamReused = false;
    this.engine.pools.get(peer).pool.dispatch(
      {
        path: request.path,
        method: request.method,
        headers: request.headers as Record<string, string | string[]>,
        // undici streams a Readable or an async iterable with backpressure; its types list only the former.
        body: this.#hasBody
          ? this.engine.plan.requestBodyFilter
            ? (filteredRequestBody(this) as unknown as Readable)
            : session.request
          : null,
      },
      this,
    );
  }

  // ---- undici dispatch handler -------------------------------------------------------------

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    this.#phase = 'sent';
    if (this.session.aborted && !this.#storing()) {
      controller.abort(new CairnError('CAIRN_ERR_DOWNSTREAM_CLOSED', 'client went away'));
      return;
    }
    announceRequest(this);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    originHeaders: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    this.#controller = controller;
    this.#phase = 'responding';
    const { engine, session } = this;
    engine.metrics.upstreamAttempt('response');
    this.#noteConnection();
    if (session.aborted) {
      controller.abort(new CairnError('CAIRN_ERR_DOWNSTREAM_CLOSED', 'client went away'));
      this.#cache?.abandon(session.error);
      return;
    }
    this.#statusMessage = statusMessage;
    const head: ResponseHead = { status: statusCode, headers: withoutHopByHop(originHeaders) };
    if (engine.plan.upstreamResponseFilter) {
      let r: void | Promise<void>;
      try {
        r = engine.proxy.upstreamResponseFilter(session, head, this.ctx);
      } catch (error) {
        controller.abort(hookError(error));
        return;
      }
      if (isThenable(r)) {
        // Hold the origin until the head is settled; resumed in #respondHead.
        controller.pause();
        r.then(
          () => this.#respondHead(head, true),
          (error: unknown) => controller.abort(hookError(error)),
        );
        return;
      }
    }
    this.#respondHead(head, false);
  }

  /** The cache sees the head, then `responseFilter`, then the head goes to the client. */
  #respondHead(head: ResponseHead, paused: boolean): void {
    const controller = this.#controller;
    if (controller === null) return;
    const cache = this.#cache;
    if (cache !== null) {
      let answered: boolean;
      try {
        answered = cache.onUpstreamResponse(head);
      } catch (error) {
        controller.abort(hookError(error));
        return;
      }
      if (answered) {
        // The cache answers (304 merged into the stored copy, or stale-if-error): drain the origin.
        this.#detached = true;
        if (paused) controller.resume();
        return;
      }
    }
    const { plan, proxy } = this.engine;
    if (plan.responseFilter) {
      let r: void | Promise<void>;
      try {
        r = proxy.responseFilter(this.session, head, this.ctx);
      } catch (error) {
        controller.abort(hookError(error));
        return;
      }
      if (isThenable(r)) {
        if (!paused) controller.pause();
        r.then(
          () => this.#writeHeadAndResume(head),
          (error: unknown) => controller.abort(hookError(error)),
        );
        return;
      }
    }
    this.#writeHead(head);
    if (paused) controller.resume();
  }

  #writeHeadAndResume(head: ResponseHead): void {
    this.#writeHead(head);
    this.#controller?.resume();
  }

  #writeHead(head: ResponseHead): void {
    const session = this.session;
    const res = session.response;
    if (session.aborted || res.headersSent) return;
    const headers = head.headers;
    const via = this.engine.proxy.forwarding.via;
    if (via !== false) appendField(headers, 'via', via);
    const cacheStatus = session.cacheStatus;
    if (cacheStatus !== undefined) {
      // RFC 9211 §2: the cache nearest the client lists its entry first... last: entries are
      // appended in the order the response passed the caches.
      const earlier = headers['cache-status'];
      headers['cache-status'] = earlier === undefined ? cacheStatus : `${String(earlier)}, ${cacheStatus}`;
    }
    if (this.engine.draining) headers.connection = 'close';
    try {
      res.writeHead(head.status, this.#statusMessage, headers as Record<string, string | string[]>);
    } catch (error) {
      // A hook left a head Node refuses (bad header name or value, bad status): a hook error, so
      // 500 as for a throwing hook. Thrown from a promise callback it would be an unhandled rejection.
      const failure = hookError(error);
      if (this.#phase === 'responding' && this.#controller !== null) this.#controller.abort(failure);
      else void this.fail(failure);
      return;
    }
    session.status = head.status;
    const length = headers['content-length'];
    this.#bodyLeft = typeof length === 'string' ? Number(length) : -1;
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#detached) return;
    if (this.session.aborted && !this.#storing()) return;
    if (this.#bodyBusy) {
      this.#bodyQueue.push(chunk);
      return;
    }
    this.#runBody(chunk, STAGE_UPSTREAM_FILTER);
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Trailers): void {
    this.#phase = 'done';
    if (this.#detached) return;
    this.#trailers = trailers;
    if (this.#bodyBusy) {
      this.#bodyQueue.push(null);
      return;
    }
    this.#runBody(null, STAGE_UPSTREAM_FILTER);
  }

  /**
   * Take one chunk (`null` = the end) through the stages from `stage` on. A stage that returns a
   * promise pauses the origin; later chunks queue until it settles, so order is kept.
   */
  #runBody(chunk: Buffer | null, stage: number, end = chunk === null): void {
    let current = chunk;
    for (let s = stage; s < STAGE_WRITE; s++) {
      let out: Buffer | null | Promise<Buffer | null>;
      try {
        out = this.#stage(s, current);
      } catch (error) {
        // Caught here: thrown into undici's callbacks it would look like the origin closing.
        this.#bodyFailed(error);
        return;
      }
      if (isThenable(out)) {
        this.#bodyBusy = true;
        this.#controller?.pause();
        out.then(
          // `end` travels with the chunk: a filter may turn the end call into data.
          (value) => this.#resumeBody(value, s + 1, end),
          (error: unknown) => this.#bodyFailed(error),
        );
        return;
      }
      current = out;
    }
    this.#emit(current, end);
  }

  #resumeBody(value: Buffer | null, nextStage: number, end: boolean): void {
    this.#bodyBusy = false;
    this.#runBody(value, nextStage, end);
    while (!this.#bodyBusy && this.#bodyQueue.length > 0) {
      const next = this.#bodyQueue.shift() ?? null;
      this.#runBody(next, STAGE_UPSTREAM_FILTER);
    }
    // Resume the origin only if the client can take more; otherwise the 'drain' handler will.
    if (!this.#bodyBusy && this.#phase !== 'done' && !this.#clientFull()) this.#controller?.resume();
  }

  /** The client's socket buffer is full (a write returned false and 'drain' has not come yet). */
  #clientFull(): boolean {
    return !this.session.aborted && this.session.response.writableNeedDrain;
  }

  #bodyFailed(error: unknown): void {
    this.#bodyBusy = false;
    const failure = hookError(error);
    // Set here too: after the origin finished, abort() is a no-op and onResponseError never runs.
    this.session.error = failure;
    this.#cache?.abandon(failure);
    this.#controller?.abort(failure);
    if (this.session.response.headersSent) this.session.response.destroy(failure);
  }

  /** One stage; `null` means end-of-body for the filters and "nothing to write" afterwards. */
  #stage(stage: number, chunk: Buffer | null): Buffer | null | Promise<Buffer | null> {
    const { plan, proxy } = this.engine;
    const end = chunk === null;
    switch (stage) {
      case STAGE_UPSTREAM_FILTER: {
        if (!plan.upstreamResponseBodyFilter) return chunk;
        const r = proxy.upstreamResponseBodyFilter(this.session, chunk, end, this.ctx);
        return isThenable(r) ? r.then((v) => resolveChunk(v, chunk)) : resolveChunk(r, chunk);
      }
      case STAGE_CACHE: {
        const cache = this.#cache;
        if (cache === null || chunk === null || chunk.length === 0) return chunk;
        const r = cache.tee(chunk);
        return isThenable(r) ? r.then(() => chunk) : chunk;
      }
      case STAGE_CLIENT_FILTER: {
        if (!plan.responseBodyFilter || this.session.aborted) return chunk;
        // The end call is made in #emit, after every data chunk has passed.
        if (end) return null;
        const r = proxy.responseBodyFilter(this.session, chunk, false, this.ctx);
        return isThenable(r) ? r.then((v) => resolveChunk(v, chunk)) : resolveChunk(r, chunk);
      }
      case STAGE_WINDOW: {
        const window = this.#cache?.window;
        return window === undefined ? chunk : window.cut(chunk);
      }
      default:
        return chunk;
    }
  }

  /** Write a chunk to the client, or finish the response at the end of the body. */
  #emit(chunk: Buffer | null, end: boolean): void {
    const controller = this.#controller;
    if (chunk !== null && chunk.length > 0 && controller !== null && !this.session.aborted) {
      this.#writeChunk(controller, chunk);
    }
    if (end) this.#endBody();
  }

  #endBody(): void {
    const { plan, proxy } = this.engine;
    this.#cache?.finish();
    if (this.session.aborted) return;
    if (plan.responseBodyFilter) {
      let r: BodyFilterResult | Promise<BodyFilterResult>;
      try {
        r = proxy.responseBodyFilter(this.session, null, true, this.ctx);
      } catch (error) {
        this.#bodyFailed(error);
        return;
      }
      if (isThenable(r)) {
        r.then(
          (last) => this.#finishResponse(last ?? null),
          (error: unknown) => this.#bodyFailed(error),
        );
        return;
      }
      this.#finishResponse(r ?? null);
      return;
    }
    this.#finishResponse(null);
  }

  #writeChunk(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const session = this.session;
    session.bytesSent += chunk.length;
    const res = session.response;
    if (this.#bodyLeft >= 0) this.#bodyLeft -= chunk.length;
    if (!this.#corked && this.#bodyLeft !== 0) {
      // An origin body over 64 KiB arrives in several socket reads within one event-loop turn
      // (libuv reads 64 KiB at a time). Corked until the turn's I/O is done, they leave in one
      // writev instead of one per read; `end()` uncorks at once when the body ends sooner. A
      // chunk that completes the announced length is not held: the end follows it.
      this.#corked = true;
      res.cork();
      setImmediate(uncorkLater, this);
    }
    if (!res.write(chunk)) {
      controller.pause();
      res.once('drain', onResponseDrain);
    }
  }

  /** Flush what `#writeChunk` held this turn. */
  uncork(): void {
    if (!this.#corked) return;
    this.#corked = false;
    this.session.response.uncork();
  }

  #finishResponse(last: Buffer | null): void {
    const res = this.session.response;
    // Flush what this turn held before the end: on Node 24, end() writes a chunked body's last
    // chunk ahead of chunks still held by the response's cork. The pending uncork then does nothing.
    this.uncork();
    if (last !== null && last.length > 0) {
      this.session.bytesSent += last.length;
      res.write(last);
    }
    const trailers = this.#trailers;
    if (trailers !== null) {
      // An overridden responseTrailerFilter sees the end of every origin response, with or without
      // trailers, and may return bytes to send as the last body chunk (a gRPC-web trailer frame).
      if (this.engine.plan.responseTrailerFilter) {
        let extra: Buffer | void;
        try {
          extra = this.engine.proxy.responseTrailerFilter(this.session, trailers, this.ctx);
        } catch (error) {
          // Also reached from a promise callback, where a throw would be an unhandled rejection.
          this.#bodyFailed(error);
          return;
        }
        if (extra !== undefined && extra.length > 0) {
          this.session.bytesSent += extra.length;
          res.write(extra);
        }
      }
      let any = false;
      for (const _ in trailers) {
        any = true;
        break;
      }
      if (any) res.addTrailers(trailers);
    }
    res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    const session = this.session;
    const phase = this.#phase;
    this.#phase = 'done';
    const peer = this.#peer;
    if (peer === null) return;
    const sent = phase !== 'connecting';
    const cairnError = upstreamError(error, sent, peer);
    if (this.#detached) return;
    const upload = session.request;
    if (this.#hasBody && upload.destroyed && !upload.complete && !session.aborted) {
      // The client went away mid-upload (the body stream failed before the response closed):
      // not the origin's failure, and nobody is left to answer.
      session.aborted = true;
      session.error = new CairnError(
        'CAIRN_ERR_DOWNSTREAM_BODY',
        'the client stopped sending the request body',
        {
          cause: error,
        },
      );
    }
    if (session.aborted) {
      this.#cache?.abandon(cairnError);
      return;
    }
    this.engine.metrics.upstreamAttempt(outcomeOf(cairnError));
    if (sent) this.#noteConnection();
    if (phase === 'responding' || session.response.headersSent) {
      // The response had started: the client must see it cut off, never a short body as complete;
      // and nothing partial is stored.
      this.#cache?.abandon(cairnError);
      session.error = cairnError;
      // Failed before the head went out (a response-head hook threw): there is still a status to send.
      if (!session.response.headersSent) void this.fail(cairnError);
      else session.response.destroy(cairnError);
      return;
    }
    void this.#retryOrFail(cairnError, sent, peer);
  }

  async #retryOrFail(error: CairnError, sent: boolean, peer: HttpPeer): Promise<void> {
    const { proxy, plan } = this.engine;
    const session = this.session;
    let decided = error;
    try {
      if (!sent) {
        if (plan.failToConnect) decided = proxy.failToConnect(session, peer, this.ctx, error);
      } else {
        decided = proxy.errorWhileProxy(peer, session, error, this.ctx, this.upstreamReused);
      }
    } catch (hookFailure) {
      decided = hookError(hookFailure);
    }
    // Safety rules the hooks cannot override: the request body cannot be sent twice, and a
    // non-idempotent request that may have reached the origin is never repeated.
    const bodyGone = this.#hasBody && session.request.readableDidRead;
    const safe =
      decided.retry &&
      session.attempts <= proxy.maxRetries &&
      !bodyGone &&
      (!sent || session.idempotent) &&
      !session.aborted;
    if (!safe) {
      // A dead origin: stale content where the policy allows, else the error response.
      if (this.#cache?.serveStaleOnError(decided) === true) return;
      await this.fail(decided);
      return;
    }
    try {
      await this.#connect();
    } catch (failure) {
      await this.#failOrServeStale(hookError(failure));
    }
  }

  /** Record the error and let `failToProxy` answer the client. */
  async fail(error: CairnError): Promise<void> {
    const session = this.session;
    session.error = error;
    this.#cache?.abandon(error);
    if (session.aborted) return;
    try {
      let status = this.engine.proxy.failToProxy(session, error, this.ctx);
      if (isThenable(status)) status = await status;
    } catch (hookFailure) {
      session.error = hookError(hookFailure);
    }
    // A failToProxy that wrote nothing must not leave the client waiting forever.
    const res = session.response;
    if (!res.headersSent && !session.aborted) res.destroy();
  }

  #noteConnection(): void {
    const { engine, session } = this;
    session.upstreamReused = this.upstreamReused;
    if (this.upstreamReused) engine.metrics.connectionReused();
    const peer = this.#peer;
    if (engine.plan.connectedToUpstream && peer !== null) {
      try {
        engine.proxy.connectedToUpstream(session, this.upstreamReused, peer, this.ctx);
      } catch (error) {
        session.error = hookError(error);
      }
    }
  }

  /** A response being written into the cache keeps going when its client leaves (others wait on it). */
  #storing(): boolean {
    return this.#cache !== null && this.#cache.storing;
  }

  // ---- answering without the origin (cache hits, collapsed waiters) -------------------------

  /** Send `head` and then `source`'s body, through `responseFilter` and `responseBodyFilter`. */
  serveLocal(head: ResponseHead, source: ChunkSource): void {
    this.#local = source;
    const { plan, proxy } = this.engine;
    if (plan.responseFilter) {
      let r: void | Promise<void>;
      try {
        r = proxy.responseFilter(this.session, head, this.ctx);
      } catch (error) {
        source.cancel();
        void this.fail(hookError(error));
        return;
      }
      if (isThenable(r)) {
        r.then(
          () => this.#startLocal(head),
          (error: unknown) => {
            source.cancel();
            void this.fail(hookError(error));
          },
        );
        return;
      }
    }
    this.#startLocal(head);
  }

  /**
   * A stored head as a flat field list, then `source`'s body: a cache hit that no hook sees (the
   * cache path decides that; see `#plainHit` there). `list` is a `storedHitFieldList`: its copy
   * gets `age`, then Via and Cache-Status as in `#writeHead` (a pair is dropped when not sent).
   */
  serveLocalHit(status: number, list: FieldList, age: string, bodyLength: number, source: ChunkSource): void {
    this.#local = source;
    const session = this.session;
    const res = session.response;
    if (!session.aborted && !res.headersSent) {
      const fields = list.slice();
      const n = fields.length;
      fields[n - 5] = age;
      const cacheStatus = session.cacheStatus;
      if (cacheStatus === undefined) fields.length = n - 2;
      else fields[n - 1] = cacheStatus;
      const via = this.engine.proxy.forwarding.via;
      if (via === false) fields.splice(n - 4, 2);
      else fields[n - 3] = via;
      try {
        res.writeHead(status, fields as string[]);
      } catch (error) {
        source.cancel();
        this.#local = null;
        void this.fail(hookError(error));
        return;
      }
      session.status = status;
      this.#bodyLeft = bodyLength;
    }
    this.#pumpLocal();
  }

  #startLocal(head: ResponseHead): void {
    this.#writeHead(head);
    this.#pumpLocal();
  }

  #pumpLocal(): void {
    const source = this.#local;
    if (source === null) return;
    for (;;) {
      if (this.session.aborted) {
        source.cancel();
        this.#local = null;
        return;
      }
      const chunk = source.read();
      if (isThenable(chunk)) {
        chunk.then(
          (c) => {
            if (this.#localChunk(c)) this.#pumpLocal();
          },
          () => this.#localChunk(undefined),
        );
        return;
      }
      if (!this.#localChunk(chunk)) return;
    }
  }

  /** Deliver one local chunk; returns true to keep pumping synchronously. */
  #localChunk(chunk: Buffer | null | undefined): boolean {
    const session = this.session;
    const res = session.response;
    if (chunk === undefined) {
      // The stored or shared body ended early: cut the response, never complete it short.
      this.#local = null;
      session.error ??= new CairnError('CAIRN_ERR_CACHE_WRITER_FAILED', 'the cached body ended early');
      res.destroy();
      return false;
    }
    if (chunk === null) {
      this.#local = null;
      this.#endBody();
      return false;
    }
    const { plan, proxy } = this.engine;
    if (!plan.responseBodyFilter) {
      const source = this.#local!;
      // The last chunk goes out with end(): one write for head, body and end, without the cork
      // that a lone write() sets up and undoes on the next tick (most stored bodies are one chunk).
      if (source.atEnd?.() === true && this.#trailers === null) {
        this.#endLocal(chunk, source);
        return false;
      }
      return this.#writeLocal(chunk, source);
    }
    // The filter may keep the chunk: it is never given back to the source.
    const r = proxy.responseBodyFilter(session, chunk, false, this.ctx);
    if (isThenable(r)) {
      r.then(
        (v) => {
          if (this.#writeLocal(resolveChunk(v, chunk), null)) this.#pumpLocal();
        },
        (error: unknown) => this.#bodyFailed(error),
      );
      return false;
    }
    return this.#writeLocal(resolveChunk(r, chunk), null);
  }

  /**
   * Write a local chunk. `owner` is the source the chunk came from when nothing else can hold it
   * (no body filter saw it): over HTTP/1.1 it gets the chunk back once the socket has taken it.
   */
  #writeLocal(chunk: Buffer | null, owner: ChunkSource | null): boolean {
    if (chunk === null || chunk.length === 0) return true;
    const session = this.session;
    session.bytesSent += chunk.length;
    const res = session.response;
    const written = this.#takesBack(owner)
      ? res.write(chunk, () => owner!.release!(chunk))
      : res.write(chunk);
    if (written) return true;
    res.once('drain', onResponseDrain);
    return false;
  }

  /** End a local body with its last chunk (no trailers, no body filter: see `#localChunk`). */
  #endLocal(chunk: Buffer, owner: ChunkSource): void {
    this.#local = null;
    this.#cache?.finish();
    const session = this.session;
    if (session.aborted) return;
    this.uncork();
    session.bytesSent += chunk.length;
    const res = session.response;
    // end()'s callback runs on 'finish', once the last write has completed: the chunk is free then.
    if (this.#takesBack(owner)) res.end(chunk, () => owner.release!(chunk));
    else res.end(chunk);
    // Still inside `run` (a synchronous hit), and the socket took every byte: the response is over
    // on Cairn's side, the point at which nginx logs too, so log now and leave 'close' unwired. A
    // response still buffered (a slow client, a pipelined request ahead of it) waits for 'close',
    // which tells a complete response from a client that went away.
    if (!this.#listening && session.request.httpVersionMajor === 1 && res.writableLength === 0) this.#log();
  }

  /** Whether a written chunk goes back to `owner` when the write completes: its tier lends chunks, over HTTP/1.1. */
  #takesBack(owner: ChunkSource | null): boolean {
    return owner?.release !== undefined && this.session.request.httpVersionMajor === 1;
  }

  // ---- downstream events -------------------------------------------------------------------

  /** The response is over (complete, or the client went away). */
  closed(): void {
    const session = this.session;
    const res = session.response;
    if (!res.writableFinished) {
      session.aborted = true;
      const gone = new CairnError(
        'CAIRN_ERR_DOWNSTREAM_CLOSED',
        'client closed the connection before the response ended',
      );
      session.error ??= gone;
      this.#local?.cancel();
      this.#local = null;
      const controller = this.#controller;
      if (this.#storing() && this.#phase !== 'done') {
        // Keep filling the cache: the client is gone, but waiters and later requests want it.
        controller?.resume();
      } else if (controller !== null && this.#phase !== 'done') {
        controller.abort(gone);
        this.#cache?.abandon(gone);
      } else if (this.#phase === 'none') {
        this.#cache?.abandon(gone);
      }
    }
    this.#log();
  }

  /** The client's socket drained: continue the local body, or let the origin send more. */
  drained(): void {
    if (this.#local !== null) {
      this.#pumpLocal();
      return;
    }
    if (!this.#bodyBusy) this.#controller?.resume();
  }

  #log(): void {
    if (this.#logged) return;
    this.#logged = true;
    const { engine, session } = this;
    engine.metrics.requestDone(session.status, (performance.now() - session.startedAt) / 1000);
    if (!engine.plan.logging && !engine.accessLog) return;
    try {
      const r = engine.proxy.logging(session, session.error, this.ctx);
      if (isThenable(r)) r.catch(logHookFailure.bind(engine));
    } catch (error) {
      logHookFailure.call(engine, error);
    }
  }
}

function logHookFailure(this: Engine<unknown>, error: unknown): void {
  this.logger.error({ err: hookError(error) }, 'logging hook failed');
}

function resolveChunk(result: BodyFilterResult, original: Buffer | null): Buffer | null {
  return result === undefined ? original : result;
}

function outcomeOf(error: CairnError): 'connect_error' | 'timeout' | 'error' {
  const code = error.code;
  if (code === 'CAIRN_ERR_UPSTREAM_CONNECT' || code === 'CAIRN_ERR_UPSTREAM_TLS') return 'connect_error';
  if (
    code === 'CAIRN_ERR_UPSTREAM_CONNECT_TIMEOUT' ||
    code === 'CAIRN_ERR_UPSTREAM_HEADERS_TIMEOUT' ||
    code === 'CAIRN_ERR_UPSTREAM_BODY_TIMEOUT'
  ) {
    return 'timeout';
  }
  return 'error';
}

function onResponseClose(this: TaskResponse): void {
  this[kTask]?.closed();
}

function uncorkLater(task: HttpTask<unknown>): void {
  task.uncork();
}

function onResponseDrain(this: TaskResponse): void {
  this[kTask]?.drained();
}

/** The request body with `requestBodyFilter` applied, chunk by chunk, for undici to stream. */
async function* filteredRequestBody<Ctx>(task: HttpTask<Ctx>): AsyncGenerator<Buffer> {
  const { proxy } = task.engine;
  const { session, ctx } = task;
  for await (const chunk of session.request as AsyncIterable<Buffer>) {
    let out: BodyFilterResult | Promise<BodyFilterResult>;
    try {
      out = proxy.requestBodyFilter(session, chunk, false, ctx);
      if (isThenable(out)) out = await out;
    } catch (error) {
      // Coded here, or undici's body error would be reported as the origin closing.
      throw hookError(error);
    }
    const next = resolveChunk(out, chunk);
    if (next !== null && next.length > 0) yield next;
  }
  let last: BodyFilterResult | Promise<BodyFilterResult>;
  try {
    last = proxy.requestBodyFilter(session, null, true, ctx);
    if (isThenable(last)) last = await last;
  } catch (error) {
    throw hookError(error);
  }
  if (last !== undefined && last !== null && last.length > 0) yield last;
}
