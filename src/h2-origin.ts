/**
 * Cairn's HTTP/2 client for origins that speak only HTTP/2: h2c with prior knowledge
 * (`http://`, RFC 9113 §3.3) or TLS with ALPN `h2` (`https://`). Used for peers made with
 * `http2: true` — what gRPC needs.
 *
 * Why not undici's HTTP/2: in undici 7 an HTTP/2 connection is "busy" while any request runs if the
 * next one is non-idempotent or has a streamed body, so concurrent gRPC calls (POST, streamed) would
 * each open their own connection instead of sharing one; and it stops reading DATA once trailers
 * arrive. This client multiplexes every request over few sessions, streams bodies with
 * backpressure both ways, and delivers trailers after the last DATA frame.
 *
 * It is driven through the same `Dispatcher.DispatchHandler` interface as undici (`onRequestStart`,
 * `onResponseStart`, `onResponseData`, `onResponseEnd`, `onResponseError`; a controller with
 * `pause`/`resume`/`abort`), so `HttpTask` is the handler for both. Errors carry undici's codes for
 * timeouts so `upstreamError` classifies them the same way.
 */
import http2 from 'node:http2';
import type {
  ClientHttp2Session,
  ClientHttp2Stream,
  IncomingHttpHeaders,
  OutgoingHttpHeaders,
} from 'node:http2';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { HttpPeer } from './peer.ts';

const { NGHTTP2_CANCEL } = http2.constants;

/** The part of an undici dispatcher the engine uses (an undici `Pool` is one). */
export interface OriginDispatcher {
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

/** What this client reads of `DispatchOptions`: headers as an object, as the engine passes them. */
interface OriginRequest {
  readonly path: string;
  readonly method: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Readable | AsyncIterable<Uint8Array> | Uint8Array | string | null;
}

/** Counters one pool keeps for its peer (shared with the undici pools' stats). */
export interface H2PoolStats {
  connectionsCreated: number;
  requestsReused: number;
}

/** Called when a request is on a session: whether that session had carried a request before. */
export type ReuseListener = (reused: boolean) => void;

/** Fields an HTTP/2 request must not carry (RFC 9113 §8.2.2); `host` becomes `:authority`. */
const DROPPED: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'http2-settings',
]);

function codedError(message: string, code: string, cause?: unknown): Error & { code: string } {
  const error = new Error(message, cause === undefined ? undefined : { cause }) as Error & { code: string };
  error.code = code;
  return error;
}

/** One HTTP/2 connection to the origin. */
class OriginSession {
  readonly session: ClientHttp2Session;
  /** Streams open now. */
  active: number;
  /** Requests it has carried. */
  uses: number;
  ready: boolean;
  /** GOAWAY received or closing: no new streams. */
  draining: boolean;
  idleTimer: NodeJS.Timeout | undefined;

  constructor(session: ClientHttp2Session) {
    this.session = session;
    this.active = 0;
    this.uses = 0;
    this.ready = false;
    this.draining = false;
    this.idleTimer = undefined;
  }

  get limit(): number {
    return this.session.remoteSettings.maxConcurrentStreams ?? 100;
  }

  usable(): boolean {
    return this.ready && !this.draining && !this.session.destroyed && this.active < this.limit;
  }
}

interface Queued {
  readonly options: OriginRequest;
  readonly handler: Dispatcher.DispatchHandler;
  readonly controller: H2Exchange;
}

/**
 * The HTTP/2 sessions to one peer: up to `peer.maxConnections`, each carrying as many concurrent
 * streams as the origin allows (SETTINGS_MAX_CONCURRENT_STREAMS); requests beyond that wait.
 *
 * @example
 * ```ts
 * const pool = new H2OriginPool(new HttpPeer('http://127.0.0.1:50051', { http2: true }), stats, onConnect, onReuse);
 * pool.dispatch({ path: '/pkg.Svc/Method', method: 'POST', headers, body }, handler);
 * ```
 */
export class H2OriginPool implements OriginDispatcher {
  readonly peer: HttpPeer;
  readonly stats: H2PoolStats;
  readonly #onConnection: () => void;
  readonly #onReuse: ReuseListener;
  readonly #sessions: OriginSession[] = [];
  readonly #queue: Queued[] = [];
  #closed = false;
  #idleWaiters: (() => void)[] = [];

  constructor(peer: HttpPeer, stats: H2PoolStats, onConnection: () => void, onReuse: ReuseListener) {
    this.peer = peer;
    this.stats = stats;
    this.#onConnection = onConnection;
    this.#onReuse = onReuse;
  }

  dispatch(dispatchOptions: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const options: OriginRequest = {
      path: dispatchOptions.path,
      method: dispatchOptions.method,
      headers: (dispatchOptions.headers ?? {}) as OriginRequest['headers'],
      body: (dispatchOptions.body ?? null) as OriginRequest['body'],
    };
    const controller = new H2Exchange(this, handler);
    if (this.#closed) {
      controller.fail(codedError('the origin pool is closed', 'UND_ERR_DESTROYED'));
      return false;
    }
    this.#queue.push({ options, handler, controller });
    this.#drain();
    return true;
  }

  /** Wait for in-flight requests, then close every session. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#inFlight() > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    await Promise.all(this.#sessions.map((s) => closeSession(s.session)));
  }

  /** Close every session now, failing in-flight requests. */
  async destroy(): Promise<void> {
    this.#closed = true;
    for (const queued of this.#queue.splice(0))
      queued.controller.fail(codedError('the origin pool was destroyed', 'UND_ERR_DESTROYED'));
    for (const s of this.#sessions) s.session.destroy();
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  #inFlight(): number {
    let n = this.#queue.length;
    for (const s of this.#sessions) n += s.active;
    return n;
  }

  /** Start what can be started: on a session with a free stream, else on a new session. */
  #drain(): void {
    while (this.#queue.length > 0) {
      const head = this.#queue[0] as Queued;
      if (head.controller.aborted) {
        this.#queue.shift();
        continue;
      }
      const session = this.#sessions.find((s) => s.usable());
      if (session !== undefined) {
        this.#queue.shift();
        this.#start(session, head);
        continue;
      }
      const connecting = this.#sessions.some((s) => !s.ready && !s.session.destroyed);
      if (!connecting && this.#sessions.filter((s) => !s.draining).length < this.peer.maxConnections)
        this.#connect();
      return;
    }
  }

  #connect(): void {
    const peer = this.peer;
    const tls = peer.tlsOptions;
    const options: http2.SecureClientSessionOptions = peer.tls
      ? {
          ALPNProtocols: ['h2'],
          rejectUnauthorized: tls?.rejectUnauthorized ?? true,
          ...(tls?.ca === undefined ? {} : { ca: tls.ca as string | Buffer | (string | Buffer)[] }),
          ...(tls?.cert === undefined ? {} : { cert: tls.cert }),
          ...(tls?.key === undefined ? {} : { key: tls.key }),
          ...(peer.sni !== undefined
            ? { servername: peer.sni }
            : isIP(peer.hostname) === 0
              ? { servername: peer.hostname }
              : {}),
        }
      : {};
    const session = http2.connect(peer.origin, { ...options, settings: { enablePush: false } });
    const entry = new OriginSession(session);
    this.#sessions.push(entry);
    const timer = setTimeout(() => {
      session.destroy(codedError(`connect to ${peer.address} timed out`, 'UND_ERR_CONNECT_TIMEOUT'));
    }, peer.connectTimeout);
    session.once('connect', () => {
      clearTimeout(timer);
      entry.ready = true;
      this.stats.connectionsCreated++;
      this.#onConnection();
      this.#drain();
      this.#idle(entry);
    });
    session.on('remoteSettings', () => this.#drain());
    session.on('goaway', () => {
      entry.draining = true;
      this.#drain();
    });
    session.on('error', (error: Error) => {
      clearTimeout(timer);
      if (!entry.ready) this.#connectFailed(entry, error);
    });
    session.once('close', () => {
      clearTimeout(timer);
      if (entry.idleTimer !== undefined) clearTimeout(entry.idleTimer);
      const index = this.#sessions.indexOf(entry);
      if (index >= 0) this.#sessions.splice(index, 1);
      if (!entry.ready)
        this.#connectFailed(entry, codedError(`${peer.address} closed the connection`, 'UND_ERR_SOCKET'));
      else this.#drain();
    });
  }

  /** A session that never connected: the requests waiting for it fail as connect errors. */
  #connectFailed(entry: OriginSession, error: Error): void {
    if (entry.ready) return;
    entry.ready = true; // only once
    entry.draining = true;
    const waiting = this.#queue.splice(0);
    for (const queued of waiting) queued.controller.fail(error);
  }

  #start(entry: OriginSession, queued: Queued): void {
    const { options, handler, controller } = queued;
    const peer = this.peer;
    if (entry.idleTimer !== undefined) {
      clearTimeout(entry.idleTimer);
      entry.idleTimer = undefined;
    }
    entry.active++;
    controller.entry = entry;
    handler.onRequestStart?.(controller, {});
    if (controller.aborted) {
      this.#release(entry);
      return;
    }
    this.#onReuse(entry.uses > 0);
    if (entry.uses > 0) this.stats.requestsReused++;
    entry.uses++;
    const headers: OutgoingHttpHeaders = {
      ':method': options.method,
      ':path': options.path,
      ':scheme': peer.tls ? 'https' : 'http',
    };
    let authority: string | undefined;
    const given = options.headers;
    for (const name in given) {
      const value = given[name];
      if (value === undefined) continue;
      const lower = name.toLowerCase();
      if (lower === 'host') authority = Array.isArray(value) ? value[0] : value;
      if (DROPPED.has(lower)) continue;
      if (lower === 'te') continue; // set below: only `trailers` may be sent on HTTP/2 (RFC 9113 §8.2.2)
      headers[lower] = value;
    }
    headers[':authority'] = authority ?? peer.address;
    // Cairn forwards trailers, so it always accepts them (gRPC servers require this field).
    headers.te = 'trailers';
    const body = options.body;
    let stream: ClientHttp2Stream;
    try {
      stream = entry.session.request(headers, { endStream: body === null });
    } catch (error) {
      this.#release(entry);
      controller.fail(error as Error);
      return;
    }
    controller.attach(stream);
    stream.setTimeout(peer.headersTimeout);
    if (body !== null) void sendBody(stream, body, controller);
  }

  /** A stream is over: free its slot and start what waits. */
  #release(entry: OriginSession): void {
    entry.active--;
    this.#idle(entry);
    this.#drain();
    if (this.#idleWaiters.length > 0 && this.#inFlight() === 0)
      for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  /** An idle session is closed after the peer's keep-alive timeout. */
  #idle(entry: OriginSession): void {
    if (entry.active > 0 || entry.idleTimer !== undefined) return;
    entry.idleTimer = setTimeout(() => {
      entry.idleTimer = undefined;
      if (entry.active === 0) {
        entry.draining = true;
        entry.session.close();
      }
    }, this.peer.keepAliveTimeout);
    entry.idleTimer.unref();
  }

  /** Called by an exchange when its stream has closed. */
  streamClosed(entry: OriginSession): void {
    this.#release(entry);
  }
}

/** Close a session gracefully; resolves once it is closed (also if it was closing already). */
function closeSession(session: ClientHttp2Session): Promise<void> {
  if (session.destroyed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    session.once('close', () => resolve());
    // Node ignores close() on a session that is already closing (it closes when its streams end).
    if (!session.closed) session.close();
  });
}

async function sendBody(
  stream: ClientHttp2Stream,
  body: NonNullable<OriginRequest['body']>,
  controller: H2Exchange,
): Promise<void> {
  try {
    if (typeof body === 'string' || body instanceof Uint8Array) {
      stream.end(body);
      return;
    }
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      if (stream.destroyed || controller.aborted) return;
      if (!stream.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            stream.off('drain', done);
            stream.off('close', done);
            resolve();
          };
          stream.on('drain', done);
          stream.on('close', done);
        });
      }
    }
    if (!stream.destroyed) stream.end();
  } catch (error) {
    // The client's body failed (it went away, or sent garbage): cancel the origin stream.
    controller.fail(codedError('the request body failed', 'UND_ERR_REQ_BODY', error));
  }
}

/** One request/response exchange: the dispatch controller the handler drives. */
class H2Exchange implements Dispatcher.DispatchController {
  readonly pool: H2OriginPool;
  readonly handler: Dispatcher.DispatchHandler;
  entry: OriginSession | null;
  stream: ClientHttp2Stream | null;
  #aborted: boolean;
  #paused: boolean;
  #reason: Error | null;
  #responded: boolean;
  #done: boolean;
  #trailers: IncomingHttpHeaders;

  constructor(pool: H2OriginPool, handler: Dispatcher.DispatchHandler) {
    this.pool = pool;
    this.handler = handler;
    this.entry = null;
    this.stream = null;
    this.#aborted = false;
    this.#paused = false;
    this.#reason = null;
    this.#responded = false;
    this.#done = false;
    this.#trailers = {};
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get reason(): Error | null {
    return this.#reason;
  }

  abort(reason: Error): void {
    if (this.#aborted || this.#done) return;
    this.#aborted = true;
    this.#reason = reason;
    const stream = this.stream;
    if (stream !== null && !stream.destroyed) stream.close(NGHTTP2_CANCEL);
    // As undici does: the handler hears about its own abort through onResponseError.
    queueMicrotask(() => this.fail(reason));
  }

  pause(): void {
    this.#paused = true;
    this.stream?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.stream?.resume();
  }

  attach(stream: ClientHttp2Stream): void {
    this.stream = stream;
    stream.on('response', (headers: IncomingHttpHeaders) => this.#onResponse(headers));
    stream.on('data', (chunk: Buffer) => {
      if (!this.#done && !this.#aborted) this.handler.onResponseData?.(this, chunk);
    });
    stream.on('trailers', (trailers: IncomingHttpHeaders) => {
      // Kept until 'end': DATA read before the trailers may still be buffered behind a pause.
      this.#trailers = withoutPseudo(trailers);
    });
    stream.once('end', () => this.#onEnd());
    stream.on('timeout', () => {
      const error = this.#responded
        ? codedError(`${this.pool.peer.address} stalled while sending the body`, 'UND_ERR_BODY_TIMEOUT')
        : codedError(`${this.pool.peer.address} sent no response headers in time`, 'UND_ERR_HEADERS_TIMEOUT');
      stream.close(NGHTTP2_CANCEL);
      this.fail(error);
    });
    stream.on('error', (error: Error) => this.fail(error));
    stream.once('close', () => {
      const entry = this.entry;
      this.entry = null;
      if (entry !== null) this.pool.streamClosed(entry);
      if (!this.#done) {
        const code = stream.rstCode;
        this.fail(
          codedError(
            `${this.pool.peer.address} reset the stream (HTTP/2 error ${code ?? 0})`,
            'UND_ERR_SOCKET',
          ),
        );
      }
    });
  }

  #onResponse(headers: IncomingHttpHeaders): void {
    if (this.#done || this.#aborted) return;
    this.#responded = true;
    this.stream?.setTimeout(this.pool.peer.idleTimeout);
    const status = Number(headers[':status']);
    this.handler.onResponseStart?.(this, status, withoutPseudo(headers), '');
    if (this.#paused) this.stream?.pause();
  }

  #onEnd(): void {
    if (this.#done || this.#aborted) return;
    if (!this.#responded) {
      this.fail(codedError(`${this.pool.peer.address} ended the stream without a response`, 'UND_ERR_INFO'));
      return;
    }
    this.#done = true;
    this.stream?.setTimeout(0);
    this.handler.onResponseEnd?.(this, this.#trailers);
  }

  /** End the exchange with an error (once). */
  fail(error: Error): void {
    if (this.#done) return;
    this.#done = true;
    const stream = this.stream;
    if (stream !== null) {
      stream.setTimeout(0);
      if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
    }
    this.handler.onResponseError?.(this, error);
  }
}

function withoutPseudo(headers: IncomingHttpHeaders): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const name in headers) if (name.charCodeAt(0) !== 0x3a) out[name] = headers[name];
  return out;
}
