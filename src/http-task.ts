/**
 * The phase runner for one request: runs the hooks in order, talks to the origin through the pool
 * (this object is undici's dispatch handler, so no per-request closures are made), streams the
 * body with backpressure both ways, retries when it is safe, and calls `logging` exactly once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { CairnError, isCairnError } from './errors.ts';
import type { HeaderMap } from './headers.ts';
import { appendField, stripHopByHop, upstreamRequestHeaders } from './headers.ts';
import type { Engine } from './engine.ts';
import type { HttpPeer } from './peer.ts';
import type { BodyFilterResult, ResponseHead, UpstreamRequest } from './proxy-http.ts';
import { Session } from './session.ts';
import type { ReuseProbe } from './upstream-pool.ts';
import { announceRequest, upstreamError } from './upstream-pool.ts';

const kTask = Symbol('cairn.task');
type TaskResponse = ServerResponse & { [kTask]?: HttpTask<unknown> };

/** Where the exchange with the origin stands. */
type UpstreamPhase = 'none' | 'connecting' | 'sent' | 'responding' | 'done';

function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}

/** Wrap anything thrown by a hook as a coded internal error (keeping CairnErrors as they are). */
export function hookError(error: unknown): CairnError {
  if (isCairnError(error)) return error;
  return new CairnError('CAIRN_ERR_INTERNAL_HOOK', `a hook failed: ${(error as Error)?.message ?? String(error)}`, {
    cause: error,
  });
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
  /** Chunks waiting while an async body filter runs (null when none is pending). */
  #bodyQueue: (Buffer | null)[] | null;
  #logged: boolean;

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
    this.#hasBody = headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
    this.#statusMessage = undefined;
    this.#bodyQueue = null;
    this.#logged = false;
    (response as TaskResponse)[kTask] = this as HttpTask<unknown>;
    response.once('close', onResponseClose);
  }

  /** Run the request phases, then go to the origin. Never rejects: failures end in `failToProxy`. */
  async run(): Promise<void> {
    const { proxy, plan } = this.engine;
    const session = this.session;
    try {
      if (plan.earlyRequestFilter) {
        const r = proxy.earlyRequestFilter(session, this.ctx);
        if (isThenable(r)) await r;
      }
      if (plan.requestFilter) {
        let answered = proxy.requestFilter(session, this.ctx);
        if (isThenable(answered)) answered = await answered;
        if (answered) return;
      }
      if (session.aborted) return;
      if (plan.proxyUpstreamFilter) {
        let proceed = proxy.proxyUpstreamFilter(session, this.ctx);
        if (isThenable(proceed)) proceed = await proceed;
        if (!proceed) {
          if (!session.responded) await this.fail(new CairnError('CAIRN_ERR_INTERNAL', 'proxyUpstreamFilter declined without answering'));
          return;
        }
      }
      await this.#connect();
    } catch (error) {
      await this.fail(hookError(error));
    }
  }

  /** Choose a peer, build the origin request and hand it to the pool. */
  async #connect(): Promise<void> {
    const { proxy, plan, pools } = this.engine;
    const session = this.session;
    if (session.aborted) return;
    session.attempts++;
    if (session.attempts > 1) this.engine.metrics.upstreamRetry();
    let peer = proxy.upstreamPeer(session, this.ctx);
    if (isThenable(peer)) peer = await peer;
    if (peer === undefined || peer === null) {
      throw new CairnError('CAIRN_ERR_INTERNAL_NO_PEER', 'upstreamPeer returned no peer');
    }
    this.#peer = peer;
    session.peer = peer;
    let request = this.#request;
    if (request === null) {
      const req = session.request;
      const headers = upstreamRequestHeaders(req.headers, session.clientAddress, session.scheme, proxy.forwarding);
      // A body filter may change the length: send it chunked.
      if (plan.requestBodyFilter && this.#hasBody) delete headers['content-length'];
      request = { method: session.method, path: session.path, headers };
      this.#request = request;
    }
    const hostMode = peer.hostHeader;
    if (hostMode === 'peer') request.headers.host = peer.port === (peer.tls ? 443 : 80) ? peer.hostname : peer.address;
    else if (hostMode !== 'keep') request.headers.host = hostMode;
    if (plan.upstreamRequestFilter) {
      const r = proxy.upstreamRequestFilter(session, request, this.ctx);
      if (isThenable(r)) await r;
    }
    if (session.aborted) return;
    if (this.#hasBody && !session.request.readableDidRead) {
      // Tell a client that sent `Expect: 100-continue` to go on, now that the request phases let
      // it through (RFC 9110 §10.1.1); a refused request never makes it send the body.
      const expect = session.headers.expect;
      if (expect !== undefined && expect.toLowerCase() === '100-continue') session.response.writeContinue();
    }
    this.#phase = 'connecting';
    this.upstreamReused = false;
    pools.get(peer).pool.dispatch(
      {
        path: request.path,
        method: request.method as Dispatcher.HttpMethod,
        headers: request.headers as Record<string, string | string[]>,
        // undici streams a Readable or an async iterable with backpressure; its types list only the former.
        body: this.#hasBody
          ? plan.requestBodyFilter
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
    if (this.session.aborted) {
      controller.abort(new CairnError('CAIRN_ERR_DOWNSTREAM_CLOSED', 'client went away'));
      return;
    }
    announceRequest(this);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    this.#controller = controller;
    this.#phase = 'responding';
    const { engine, session } = this;
    engine.metrics.upstreamAttempt('response');
    this.#noteConnection();
    if (session.aborted) return;
    stripHopByHop(headers);
    this.#statusMessage = statusMessage;
    const head: ResponseHead = { status: statusCode, headers };
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

  /** Run `responseFilter` and write the head to the client; resume the origin if it was held. */
  #respondHead(head: ResponseHead, paused: boolean): void {
    const controller = this.#controller;
    if (controller === null) return;
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
    if (this.engine.draining) headers.connection = 'close';
    session.status = head.status;
    res.writeHead(head.status, this.#statusMessage, headers as Record<string, string | string[]>);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.session.aborted) return;
    const plan = this.engine.plan;
    if (this.#bodyQueue !== null) {
      this.#bodyQueue.push(chunk);
      return;
    }
    if (plan.upstreamResponseBodyFilter || plan.responseBodyFilter) {
      this.#filterBody(chunk, false);
      return;
    }
    this.#writeChunk(controller, chunk);
  }

  #writeChunk(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const session = this.session;
    session.bytesSent += chunk.length;
    if (!session.response.write(chunk)) {
      controller.pause();
      session.response.once('drain', onResponseDrain);
    }
  }

  /** Run the body filters on one chunk (or the end, as null); async filters queue later chunks. */
  #filterBody(chunk: Buffer | null, end: boolean): void {
    const result = this.#applyBodyFilters(chunk, end);
    if (isThenable(result)) {
      this.#bodyQueue ??= [];
      this.#controller?.pause();
      result.then(
        (out) => this.#afterAsyncChunk(out, end),
        (error: unknown) => this.#controller?.abort(hookError(error)),
      );
      return;
    }
    this.#emitFiltered(result, end);
  }

  #afterAsyncChunk(out: Buffer | null, end: boolean): void {
    this.#emitFiltered(out, end);
    const queue = this.#bodyQueue;
    if (queue === null) return;
    this.#bodyQueue = null;
    for (let i = 0; i < queue.length; i++) {
      const next = queue[i] ?? null;
      const isEnd = next === null;
      if (this.#bodyQueue !== null) {
        // A filter went async again: keep the rest for later, in order.
        (this.#bodyQueue as (Buffer | null)[]).push(...queue.slice(i));
        return;
      }
      this.#filterBody(next, isEnd);
    }
    if (this.#bodyQueue === null && !end) this.#controller?.resume();
  }

  #applyBodyFilters(chunk: Buffer | null, end: boolean): Buffer | null | Promise<Buffer | null> {
    const { plan, proxy } = this.engine;
    let current = chunk;
    if (plan.upstreamResponseBodyFilter) {
      const r = proxy.upstreamResponseBodyFilter(this.session, current, end, this.ctx);
      if (isThenable(r)) return r.then((v) => this.#secondFilter(resolveChunk(v, current), end));
      current = resolveChunk(r, current);
    }
    return this.#secondFilter(current, end);
  }

  #secondFilter(chunk: Buffer | null, end: boolean): Buffer | null | Promise<Buffer | null> {
    const { plan, proxy } = this.engine;
    if (!plan.responseBodyFilter) return chunk;
    const r = proxy.responseBodyFilter(this.session, chunk, end, this.ctx);
    if (isThenable(r)) return r.then((v) => resolveChunk(v, chunk));
    return resolveChunk(r, chunk);
  }

  #emitFiltered(out: Buffer | null, end: boolean): void {
    const controller = this.#controller;
    if (out !== null && out.length > 0 && controller !== null) this.#writeChunk(controller, out);
    if (end) this.#finishResponse(this.#pendingTrailers);
  }

  #pendingTrailers: Record<string, string | string[] | undefined> | null = null;

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.#phase = 'done';
    if (this.session.aborted) return;
    const plan = this.engine.plan;
    if (plan.upstreamResponseBodyFilter || plan.responseBodyFilter) {
      this.#pendingTrailers = trailers;
      if (this.#bodyQueue !== null) this.#bodyQueue.push(null);
      else this.#filterBody(null, true);
      return;
    }
    this.#finishResponse(trailers);
  }

  #finishResponse(trailers: Record<string, string | string[] | undefined> | null): void {
    const res = this.session.response;
    if (trailers !== null) {
      let any = false;
      for (const _ in trailers) {
        any = true;
        break;
      }
      if (any) {
        if (this.engine.plan.responseTrailerFilter) {
          this.engine.proxy.responseTrailerFilter(this.session, trailers as HeaderMap, this.ctx);
        }
        res.addTrailers(trailers as Record<string, string>);
      }
    }
    res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    const session = this.session;
    const phase = this.#phase;
    this.#phase = 'done';
    if (session.aborted) return;
    const peer = this.#peer;
    if (peer === null) return;
    const sent = phase !== 'connecting';
    const cairnError = upstreamError(error, sent, peer);
    this.engine.metrics.upstreamAttempt(outcomeOf(cairnError));
    if (sent) this.#noteConnection();
    if (phase === 'responding' || session.response.headersSent) {
      // The response had started: the client must see it cut off, never a short body as complete.
      session.error = cairnError;
      session.response.destroy(cairnError);
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
      await this.fail(decided);
      return;
    }
    try {
      await this.#connect();
    } catch (failure) {
      await this.fail(hookError(failure));
    }
  }

  /** Record the error and let `failToProxy` answer the client. */
  async fail(error: CairnError): Promise<void> {
    const session = this.session;
    session.error = error;
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

  // ---- downstream events -------------------------------------------------------------------

  /** The response is over (complete, or the client went away). */
  closed(): void {
    const session = this.session;
    const res = session.response;
    if (!res.writableFinished) {
      session.aborted = true;
      const gone = new CairnError('CAIRN_ERR_DOWNSTREAM_CLOSED', 'client closed the connection before the response ended');
      session.error ??= gone;
      const controller = this.#controller;
      if (controller !== null && this.#phase !== 'done') controller.abort(gone);
    }
    this.#log();
  }

  resumeUpstream(): void {
    if (this.#bodyQueue === null) this.#controller?.resume();
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
  switch (error.code) {
    case 'CAIRN_ERR_UPSTREAM_CONNECT':
    case 'CAIRN_ERR_UPSTREAM_TLS':
      return 'connect_error';
    case 'CAIRN_ERR_UPSTREAM_CONNECT_TIMEOUT':
    case 'CAIRN_ERR_UPSTREAM_HEADERS_TIMEOUT':
    case 'CAIRN_ERR_UPSTREAM_BODY_TIMEOUT':
      return 'timeout';
    default:
      return 'error';
  }
}

function onResponseClose(this: TaskResponse): void {
  this[kTask]?.closed();
}

function onResponseDrain(this: TaskResponse): void {
  this[kTask]?.resumeUpstream();
}

/** The request body with `requestBodyFilter` applied, chunk by chunk, for undici to stream. */
async function* filteredRequestBody<Ctx>(task: HttpTask<Ctx>): AsyncGenerator<Buffer> {
  const { proxy } = task.engine;
  const { session, ctx } = task;
  for await (const chunk of session.request as AsyncIterable<Buffer>) {
    let out = proxy.requestBodyFilter(session, chunk, false, ctx);
    if (isThenable(out)) out = await out;
    const next = resolveChunk(out, chunk);
    if (next !== null && next.length > 0) yield next;
  }
  let last = proxy.requestBodyFilter(session, null, true, ctx);
  if (isThenable(last)) last = await last;
  if (last !== undefined && last !== null && last.length > 0) yield last;
}
