/**
 * Downstream listeners beyond plain HTTP/1.1: one port that speaks HTTP/1.1 and HTTP/2, in clear
 * text (h2c with prior knowledge, told apart by the connection preface) or over TLS (told apart by
 * ALPN, `h2` and `http/1.1` on one port).
 *
 * The shape: a front server accepts the connection (a `net.Server`, or a `tls.Server` that does the
 * handshake and SNI), decides the protocol, and hands the socket to one of two servers that never
 * listen themselves — the HTTP/1.1 `http.Server` that `serve()` configured (limits, screening,
 * `clientError`, upgrades; unchanged), or an `http2` server whose compat request/response objects
 * have the same API as `IncomingMessage`/`ServerResponse`, so the same phase runner serves both.
 *
 * HTTP/2 specifics handled here:
 * - requests: pseudo-headers are kept off `headers` (`:authority` becomes `host` when the client
 *   sent no `Host`, RFC 9113 §8.3.1), so every hook and the origin see HTTP/1.1-shaped headers;
 * - responses: connection-specific fields are dropped (RFC 9113 §8.2.2) and status text is not sent;
 * - limits: concurrent streams, header list size and count, session memory, an idle timeout, and
 *   a guard against rapid reset (CVE-2023-44487): a session whose client cancels more than
 *   `maxResets` streams, and more than half of all it opened, is sent GOAWAY(ENHANCE_YOUR_CALM)
 *   and closed. Header floods (huge lists, endless CONTINUATION) are refused by nghttp2 itself.
 */
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type {
  Http2Server,
  IncomingHttpHeaders,
  OutgoingHttpHeaders,
  ServerHttp2Session,
  ServerHttp2Stream,
} from 'node:http2';
import { createServer as createTlsServer } from 'node:tls';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Engine } from './engine.ts';
import type { CairnMetrics } from './metrics.ts';
import { CertificateStore } from './tls.ts';
import type { TlsServeOptions } from './tls.ts';
import type { UpgradeOptions } from './upgrade.ts';

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

/**
 * How many bytes a client connection may buffer before a write reports backpressure. Node's 16 KiB
 * default made every response body over 16 KiB pause the origin (or a cache read) and wait for
 * 'drain' once per response, an extra event-loop turn plus a pair of epoll_ctl calls on the origin
 * socket; 256 KiB per connection keeps memory flat while a 64 KiB body goes out in one pass.
 */
export const CLIENT_HIGH_WATER_MARK = 256 * 1024;

/** HTTP/2 limits of a listener. */
export interface Http2Limits {
  /** Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS). Default 100. */
  readonly maxConcurrentStreams: number;
  /** Memory one session may use for buffered frames and header tables, in MiB. Default 10. */
  readonly maxSessionMemory: number;
  /** Per-stream flow-control window (SETTINGS_INITIAL_WINDOW_SIZE). Default 1 MiB. */
  readonly initialWindowSize: number;
  /**
   * Streams a client may cancel (RST_STREAM) before any response was sent, per connection,
   * before it is closed with GOAWAY(ENHANCE_YOUR_CALM) — only when they are also more than half of
   * the connection's streams, so a long-lived connection that cancels now and then is left alone.
   * Default 100.
   */
  readonly maxResets: number;
  /** Invalid frames tolerated per session before it is closed. Default 100. */
  readonly maxInvalidFrames: number;
  /** Streams refused (over the concurrency limit) per session before it is closed. Default 100. */
  readonly maxRejectedStreams: number;
}

export const DEFAULT_HTTP2_LIMITS: Http2Limits = {
  maxConcurrentStreams: 100,
  maxSessionMemory: 10,
  initialWindowSize: 1024 * 1024,
  maxResets: 100,
  maxInvalidFrames: 100,
  maxRejectedStreams: 100,
};

/** Request and response objects a listener hands to the engine (HTTP/1.1 or the HTTP/2 compat pair). */
export type Http2RequestListener = (request: CairnHttp2Request, response: CairnHttp2Response) => void;

/**
 * The HTTP/2 compat request, with HTTP/1.1-shaped `headers`: no pseudo-headers, and `host` from
 * `:authority` (the client's `Host` wins if it sent both, as nghttp2 lets through; RFC 9113 §8.3.1
 * says they must agree). `method`, `url`, `authority` and `scheme` still read the pseudo-headers.
 */
export class CairnHttp2Request extends http2.Http2ServerRequest {
  constructor(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    options: ConstructorParameters<typeof http2.Http2ServerRequest>[2],
    rawHeaders: string[],
  ) {
    super(stream, headers, options, rawHeaders);
    // A plain object like HTTP/1.1's, copied once, without the pseudo-header fields.
    const clean: IncomingHttpHeaders = {};
    for (const name in headers) {
      if (name.charCodeAt(0) !== 0x3a /* ':' */) clean[name] = headers[name];
    }
    if (clean.host === undefined) {
      const authority = headers[':authority'];
      if (authority !== undefined) clean.host = authority;
    }
    // An own property shadows the prototype's getter (which the pseudo-header getters bypass).
    Object.defineProperty(this, 'headers', {
      value: clean,
      writable: false,
      enumerable: true,
      configurable: true,
    });
  }
}

/** Fields that must not appear in an HTTP/2 message (RFC 9113 §8.2.2); `te` is checked apart. */
const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

const kHeld = Symbol('cairn.headHeld');

/**
 * The HTTP/2 compat response, made safe for headers that came from an HTTP/1.1 origin or a hook:
 * connection-specific fields are dropped instead of throwing, and the status text is not sent
 * (HTTP/2 has none).
 *
 * The head is held until the first body byte or `end()`, so a response without a body goes out as
 * one HEADERS frame that ends the stream. gRPC needs that: a "Trailers-Only" response
 * (PROTOCOL-HTTP2.md) is a single HEADERS frame with END_STREAM, and clients (grpc-js) ignore a
 * `grpc-status` in headers that do not end the stream. `headersSent` is true from `writeHead` on.
 */
export class CairnHttp2Response extends http2.Http2ServerResponse<CairnHttp2Request> {
  [kHeld] = false;

  override writeHead(statusCode: number, statusMessage?: unknown, headers?: unknown): this {
    const given = (typeof statusMessage === 'object' && statusMessage !== null ? statusMessage : headers) as
      OutgoingHttpHeaders | readonly string[] | undefined;
    if (this.stream.headersSent || this.stream.destroyed) return this;
    if (given === undefined && statusMessage === undefined) {
      // The compat layer's own call from write()/end(): send what was held.
      this[kHeld] = false;
      return super.writeHead(statusCode);
    }
    if (Array.isArray(given)) return super.writeHead(statusCode, given as unknown as OutgoingHttpHeaders);
    this.statusCode = statusCode;
    const fields = (given ?? {}) as OutgoingHttpHeaders;
    for (const name in fields) {
      const value = fields[name];
      if (value === undefined) continue;
      const lower = name.toLowerCase();
      if (CONNECTION_SPECIFIC.has(lower) || (lower === 'te' && String(value).toLowerCase() !== 'trailers'))
        continue;
      this.setHeader(lower, value);
    }
    this[kHeld] = true;
    return this;
  }

  override addTrailers(trailers: OutgoingHttpHeaders): void {
    // Trailers follow the head: it must go now, without END_STREAM.
    if (this[kHeld]) {
      this[kHeld] = false;
      super.writeHead(this.statusCode);
    }
    super.addTrailers(trailers);
  }

  override end(chunk?: unknown, encoding?: unknown, callback?: unknown): this {
    // An empty last chunk must not cost the head its END_STREAM flag.
    if ((typeof chunk === 'string' || chunk instanceof Uint8Array) && chunk.length === 0) {
      return super.end(encoding as never, callback as never);
    }
    return super.end(chunk as never, encoding as never, callback as never);
  }
}

// `headersSent` is a data property in @types/node but an accessor at run time: redefine it there.
const compatHeadersSent = Object.getOwnPropertyDescriptor(http2.Http2ServerResponse.prototype, 'headersSent');
Object.defineProperty(CairnHttp2Response.prototype, 'headersSent', {
  configurable: true,
  get(this: CairnHttp2Response): boolean {
    return this[kHeld] || (compatHeadersSent?.get?.call(this) as boolean);
  },
});

/** Everything a mixed listener needs. */
export interface MixedListenerOptions {
  /** The configured HTTP/1.1 server (never listens itself). */
  readonly h1: HttpServer;
  /** Serve HTTP/2 (h2 over TLS, h2c in clear text). */
  readonly http2: boolean;
  readonly http2Limits: Http2Limits;
  /** TLS certificates; clear text when absent. */
  readonly tls: CertificateStore | undefined;
  /** Largest request header block, bytes (SETTINGS_MAX_HEADER_LIST_SIZE). */
  readonly maxHeaderSize: number;
  /** Most request header fields. */
  readonly maxHeadersCount: number;
  /** ms an idle connection (no open stream) is kept; also the h2c preface and TLS handshake deadline. */
  readonly keepAliveTimeout: number;
  /** ms to receive the preface / finish the TLS handshake. */
  readonly headersTimeout: number;
  readonly onRequest: Http2RequestListener;
  readonly metrics: CairnMetrics;
  readonly logger: Logger;
}

/** The listening side of `serve()`, whatever the protocols: stop, drain, and force-close. */
export interface Listener {
  /** Stop accepting; resolves once every connection has closed. */
  close(): Promise<void>;
  /** Close connections with nothing in flight (HTTP/2: GOAWAY, then close when streams finish). */
  closeIdle(): void;
  /** Cut every connection now. */
  closeAll(): void;
}

/** The HTTP/2 connection preface a client sends first (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * A listener that accepts HTTP/1.1 and HTTP/2 (h2c or TLS + ALPN) on one port. Call `listen()`.
 */
export class MixedListener implements Listener {
  readonly front: NetServer | TlsServer;
  readonly h2: Http2Server | undefined;
  readonly #options: MixedListenerOptions;
  readonly #sessions = new Set<ServerHttp2Session>();

  constructor(options: MixedListenerOptions) {
    this.#options = options;
    const { h1, tls } = options;
    // The HTTP/1.1 server starts its connection bookkeeping (used for headersTimeout,
    // requestTimeout and closeIdleConnections) on 'listening'; it gets its sockets from us instead.
    h1.emit('listening');
    this.h2 = options.http2 ? this.#createHttp2() : undefined;
    if (tls !== undefined) {
      const server = createTlsServer({
        ...tls.defaultOptions(),
        SNICallback: tls.sniCallback,
        ALPNProtocols: options.http2 ? ['h2', 'http/1.1'] : ['http/1.1'],
        handshakeTimeout: options.headersTimeout,
        allowHalfOpen: true,
        highWaterMark: CLIENT_HIGH_WATER_MARK,
      });
      tls.onDefaultChange = (secure) => server.setSecureContext(secure);
      server.on('secureConnection', (socket: TLSSocket) => this.#route(socket, socket.alpnProtocol === 'h2'));
      server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
        if (options.logger.isLevelEnabled('debug'))
          options.logger.debug(
            { err: error.code ?? error.message, client: socket.remoteAddress },
            'TLS handshake failed',
          );
        socket.destroy();
      });
      this.front = server;
    } else {
      this.front = createNetServer(
        { allowHalfOpen: true, noDelay: true, highWaterMark: CLIENT_HIGH_WATER_MARK },
        (socket) => this.#sniff(socket),
      );
    }
  }

  listen(port: number, host: string): Promise<void> {
    const server = this.front;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  address(): ReturnType<NetServer['address']> {
    return this.front.address();
  }

  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.front.close(() => resolve()));
    // Stops the HTTP/1.1 server's timers; its callback reports "not running", which is expected.
    this.#options.h1.close(() => undefined);
    return closed;
  }

  closeIdle(): void {
    this.#options.h1.closeIdleConnections();
    // GOAWAY: no new streams; the session closes once its open streams are done.
    for (const session of this.#sessions) session.close();
  }

  closeAll(): void {
    this.#options.h1.closeAllConnections();
    for (const session of this.#sessions) session.destroy();
  }

  /** Clear text: read until the bytes either are the HTTP/2 preface or cannot be. */
  #sniff(socket: Socket): void {
    if (this.h2 === undefined) {
      this.#route(socket, false);
      return;
    }
    let seen: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), this.#options.headersTimeout);
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
        const n = Math.min(seen.length, PREFACE.length);
        const isH2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
        if (!isH2 || seen.length >= PREFACE.length) {
          done();
          socket.unshift(seen);
          this.#route(socket, isH2);
          return;
        }
      }
    };
    const onGone = (): void => {
      done();
      socket.destroy();
    };
    const done = (): void => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onGone);
      socket.off('error', onGone);
    };
    socket.on('readable', onReadable);
    socket.on('end', onGone);
    socket.on('error', onGone);
  }

  #route(socket: Socket, h2: boolean): void {
    if (h2 && this.h2 !== undefined) this.h2.emit('connection', socket);
    else this.#options.h1.emit('connection', socket);
  }

  #createHttp2(): Http2Server {
    const o = this.#options;
    const limits = o.http2Limits;
    const server = http2.createServer({
      maxSessionMemory: limits.maxSessionMemory,
      // Pseudo-headers count as pairs too (4 on a request).
      maxHeaderListPairs: o.maxHeadersCount + 4,
      maxSessionInvalidFrames: limits.maxInvalidFrames,
      maxSessionRejectedStreams: limits.maxRejectedStreams,
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams,
        maxHeaderListSize: o.maxHeaderSize,
        initialWindowSize: limits.initialWindowSize,
        enablePush: false,
      },
      Http2ServerRequest: CairnHttp2Request,
      Http2ServerResponse: CairnHttp2Response,
    });
    server.on('request', o.onRequest);
    // As on HTTP/1.1: `100 Continue` only once the request phases let the request through.
    server.on('checkContinue', o.onRequest);
    server.on('session', (session: ServerHttp2Session) => this.#watchSession(session));
    server.on('sessionError', (error: Error & { code?: string }) => {
      if (o.logger.isLevelEnabled('debug'))
        o.logger.debug({ err: error.code ?? error.message }, 'HTTP/2 session error');
    });
    return server as unknown as Http2Server;
  }

  /** Idle timeout and the rapid-reset guard, per session. */
  #watchSession(session: ServerHttp2Session): void {
    const o = this.#options;
    this.#sessions.add(session);
    const state = new SessionState(session, o.keepAliveTimeout, o.http2Limits.maxResets, o.metrics, o.logger);
    session.on('stream', (stream: ServerHttp2Stream) => state.opened(stream));
    session.once('close', () => {
      state.stop();
      this.#sessions.delete(session);
    });
    session.on('error', () => undefined);
    state.idle();
  }
}

const kState = Symbol('cairn.h2state');
type WatchedStream = ServerHttp2Stream & { [kState]?: SessionState };

/** Per-session bookkeeping: open streams (for the idle timer) and client cancellations. */
class SessionState {
  readonly session: ServerHttp2Session;
  readonly idleTimeout: number;
  readonly maxResets: number;
  readonly metrics: CairnMetrics;
  readonly logger: Logger;
  open: number;
  total: number;
  resets: number;
  timer: NodeJS.Timeout | undefined;

  constructor(
    session: ServerHttp2Session,
    idleTimeout: number,
    maxResets: number,
    metrics: CairnMetrics,
    logger: Logger,
  ) {
    this.session = session;
    this.idleTimeout = idleTimeout;
    this.maxResets = maxResets;
    this.metrics = metrics;
    this.logger = logger;
    this.open = 0;
    this.total = 0;
    this.resets = 0;
    this.timer = undefined;
  }

  opened(stream: ServerHttp2Stream): void {
    this.open++;
    this.total++;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    (stream as WatchedStream)[kState] = this;
    stream.once('close', onStreamClose);
  }

  closed(stream: ServerHttp2Stream): void {
    this.open--;
    // A stream the client cancelled before any response: the rapid-reset pattern when it is most
    // of what a connection does.
    if (stream.rstCode === NGHTTP2_CANCEL && !stream.headersSent) {
      this.resets++;
      if (this.resets > this.maxResets && this.resets * 2 > this.total && !this.session.destroyed) {
        this.metrics.rejected('bad_request');
        this.logger.warn(
          { client: this.session.socket?.remoteAddress, resets: this.resets, streams: this.total },
          'HTTP/2 client cancels most of its streams (rapid reset): closing the connection',
        );
        this.session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
        this.session.destroy();
        return;
      }
    }
    if (this.open === 0) this.idle();
  }

  idle(): void {
    if (this.session.closed || this.session.destroyed) return;
    this.timer = setTimeout(closeIdleSession, this.idleTimeout, this.session);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

function onStreamClose(this: WatchedStream): void {
  this[kState]?.closed(this);
}

function closeIdleSession(session: ServerHttp2Session): void {
  if (!session.closed && !session.destroyed) session.close();
}

/** The protocol options of `serve()` (part of `ServeOptions`). */
export interface ProtocolOptions {
  /**
   * Terminate TLS on the listener: certificates from PEM or files (reloaded on change), chosen by
   * SNI (exact and wildcard names, or the async `certificateFor` hook). With TLS, ALPN offers `h2`
   * and `http/1.1` on the one port unless `http2` is `false`.
   *
   * @example
   * ```ts
   * await serve(proxy, { listen: '0.0.0.0:443', tls: { certFile: 'site.pem', keyFile: 'site.key' } });
   * ```
   */
  readonly tls?: TlsServeOptions;
  /**
   * Also accept HTTP/2 in clear text with prior knowledge (h2c, RFC 9113 §3.3) on the listener,
   * beside HTTP/1.1 — what gRPC clients use without TLS. Default false. (The `Upgrade: h2c` dance of
   * RFC 7540 §3.2 was removed in RFC 9113 and is not offered.)
   */
  readonly h2c?: boolean;
  /** HTTP/2 limits, or `false` for no HTTP/2 at all (TLS then offers only `http/1.1`). */
  readonly http2?: Partial<Http2Limits> | false;
  /**
   * WebSocket and other `Upgrade` requests over HTTP/1.1: proxied as tunnels after the request
   * phases ran (on by default); `false` forwards them as plain requests without `Upgrade`.
   */
  readonly upgrade?: Partial<UpgradeOptions> | false;
}

/** A listener that is accepting connections, and where. */
export interface OpenListener extends Listener {
  readonly address: AddressInfo;
}

/** What `openListener` needs besides the HTTP/1.1 server. */
export interface OpenListenerConfig {
  readonly host: string;
  readonly port: number;
  readonly options: ProtocolOptions;
  readonly engine: Engine<unknown>;
  readonly maxHeaderSize: number;
  readonly maxHeadersCount: number;
  readonly keepAliveTimeout: number;
  readonly headersTimeout: number;
}

/**
 * Open the downstream listener. Plain HTTP/1.1 (no TLS, no h2c) listens with the `http.Server`
 * itself, exactly as before; anything else goes through a `MixedListener`.
 */
export async function openListener(h1: HttpServer, config: OpenListenerConfig): Promise<OpenListener> {
  const { options, engine } = config;
  const http2Enabled = options.http2 !== false && (options.tls !== undefined || options.h2c === true);
  if (options.tls === undefined && !http2Enabled) {
    await listenPlain(h1, config.port, config.host);
    return {
      address: h1.address() as AddressInfo,
      close: () => new Promise<void>((resolve) => h1.close(() => resolve())),
      closeIdle: () => h1.closeIdleConnections(),
      closeAll: () => h1.closeAllConnections(),
    };
  }
  const tls = options.tls === undefined ? undefined : await CertificateStore.open(options.tls, engine.logger);
  const maxFields = config.maxHeadersCount * 2;
  const listener = new MixedListener({
    h1,
    http2: http2Enabled,
    http2Limits: { ...DEFAULT_HTTP2_LIMITS, ...(options.http2 === false ? {} : options.http2) },
    tls,
    maxHeaderSize: config.maxHeaderSize,
    maxHeadersCount: config.maxHeadersCount,
    keepAliveTimeout: config.keepAliveTimeout,
    headersTimeout: config.headersTimeout,
    onRequest: (req, res) => {
      const status = screenHttp2Request(req, maxFields);
      if (status !== 0) {
        refuseHttp2(res, status, engine.metrics, engine.logger);
        return;
      }
      // The compat pair has the API of IncomingMessage/ServerResponse that the engine uses (see
      // CairnHttp2Request/CairnHttp2Response); the phases run unchanged on it.
      engine.handle(req as unknown as IncomingMessage, res as unknown as ServerResponse);
    },
    metrics: engine.metrics,
    logger: engine.logger,
  });
  try {
    await listener.listen(config.port, config.host);
  } catch (error) {
    tls?.close();
    throw error;
  }
  return {
    address: listener.address() as AddressInfo,
    close: async () => {
      tls?.close();
      await listener.close();
    },
    closeIdle: () => listener.closeIdle(),
    closeAll: () => listener.closeAll(),
  };
}

function listenPlain(server: HttpServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

// RFC 3986 §3.2.2 host and §3.2.3 port, as server.ts checks Host on HTTP/1.1.
const AUTHORITY = /^(?:\[[0-9A-Za-z:._~%!$&'()*+,;=-]+\]|[0-9A-Za-z._~%!$&'()*+,;=-]+)(?::[0-9]*)?$/;

/**
 * What nghttp2 lets through but a proxy must not forward. Returns the status to refuse with, or 0.
 * nghttp2 already refuses malformed messages (RFC 9113 §8.1.1: bad pseudo-headers, connection-specific
 * fields, uppercase names, content-length that disagrees with the DATA frames).
 */
export function screenHttp2Request(req: CairnHttp2Request, maxFields: number): number {
  // Pseudo-headers are in rawHeaders too (4 pairs on a request).
  if (req.rawHeaders.length - 8 > maxFields) return 431;
  // Extended CONNECT (RFC 8441) and plain CONNECT tunnel; a reverse proxy does not (RFC 9110 §9.3.6).
  if (req.method === 'CONNECT') return 501;
  const host = req.headers.host;
  if (host === undefined || !AUTHORITY.test(host)) return 400;
  const path = req.url;
  if (
    typeof path !== 'string' ||
    (path.charCodeAt(0) !== 0x2f && !(path === '*' && req.method === 'OPTIONS'))
  )
    return 400;
  return 0;
}

const REFUSAL_TEXT: Readonly<Record<number, string>> = {
  400: '400 Bad Request\n',
  431: '431 Request Header Fields Too Large\n',
  501: '501 Not Implemented\n',
};

function refuseHttp2(res: CairnHttp2Response, status: number, metrics: CairnMetrics, logger: Logger): void {
  metrics.rejected(status === 431 ? 'headers_too_large' : 'bad_request');
  if (logger.isLevelEnabled('info'))
    logger.info({ status, client: res.socket?.remoteAddress, http: 2 }, 'request rejected');
  const body = REFUSAL_TEXT[status] ?? `${status}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}
