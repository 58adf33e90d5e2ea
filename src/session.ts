/**
 * `Session`: one downstream request and everything the engine learns about it while proxying.
 *
 * Every field is assigned in the constructor and none is added later, so all sessions share one
 * hidden class (see `test/unit/session-shape.test.ts`).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { CairnError } from './errors.ts';
import type { HttpPeer } from './peer.ts';

// Request ids: a per-process random prefix plus a counter: unique enough to follow one request
// through the logs, and far cheaper than a UUID per request.
const ID_PREFIX = randomBytes(4).toString('hex');
let idCounter = 0;
const VALID_REQUEST_ID = /^[\w.:@-]{1,128}$/;

/** A connection's peer address, read once per connection (the getter calls into C++ every time). */
const kAddress = Symbol('cairn.clientAddress');

function clientAddressOf(request: IncomingMessage): string {
  // HTTP/2's request.socket is a proxy over the session's socket: read through it as it is.
  if (request.httpVersionMajor !== 1) return request.socket.remoteAddress ?? '';
  const socket = request.socket as IncomingMessage['socket'] & { [kAddress]?: string };
  let address = socket[kAddress];
  if (address === undefined) {
    address = socket.remoteAddress ?? '';
    socket[kAddress] = address;
  }
  return address;
}

/** Methods whose repetition has the same effect as doing them once (RFC 9110 §9.2.2). */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * One request from a client. Hooks read it (method, path, headers, client address) and may answer
 * through it (`respond`) or change `headers` before they are copied for the origin.
 *
 * @example
 * ```ts
 * override requestFilter(session: Session) {
 *   if (session.headers.authorization === undefined) {
 *     session.respond(401, { 'www-authenticate': 'Bearer' }, 'login first\n');
 *     return true; // answered: skip the origin
 *   }
 *   return false;
 * }
 * ```
 */
export class Session {
  /** The raw Node request (the body stream). */
  readonly request: IncomingMessage;
  /** The raw Node response. Prefer `respond()`; the engine writes it otherwise. */
  readonly response: ServerResponse;
  readonly method: string;
  /** The request target as sent (path and query). */
  readonly path: string;
  /** `Host` (or `:authority`) as sent by the client, '' if none. */
  readonly host: string;
  readonly scheme: 'http' | 'https';
  /** The client's IP address. */
  readonly clientAddress: string;
  /** Request headers (lower-case names). Hooks may change them before they are copied upstream. */
  readonly headers: IncomingHttpHeaders;
  /** `performance.now()` when the request arrived. */
  readonly startedAt: number;
  /** The listener's pino logger, for hooks that want to log. */
  readonly log: Logger;
  /** True once the client went away before its response was complete. */
  aborted: boolean;
  /** Status sent to the client (0 until a response starts). */
  status: number;
  /** Response body bytes written to the client. */
  bytesSent: number;
  /** The origin chosen for the last attempt (undefined if none was contacted). */
  peer: HttpPeer | undefined;
  /** Whether the last origin request went over a re-used connection. */
  upstreamReused: boolean | undefined;
  /** Origin attempts made so far (1 on the first try, 2 on the first retry, …). */
  attempts: number;
  /** The error that ended or degraded the request, if any. */
  error: CairnError | undefined;
  /** The `Cache-Status` value sent, when the cache took part. */
  cacheStatus: string | undefined;
  /** Made on first use: most requests are never logged one by one. */
  #id: string | undefined;
  /** `X-Request-Id` as the request arrived (hooks may change `headers` later). */
  readonly #givenId: string | string[] | undefined;

  constructor(
    request: IncomingMessage,
    response: ServerResponse,
    scheme: 'http' | 'https',
    startedAt: number,
    log: Logger,
  ) {
    this.request = request;
    this.response = response;
    this.method = request.method ?? 'GET';
    this.path = request.url ?? '/';
    this.host = request.headers.host ?? '';
    this.scheme = scheme;
    this.clientAddress = clientAddressOf(request);
    this.headers = request.headers;
    this.startedAt = startedAt;
    this.log = log;
    this.aborted = false;
    this.status = 0;
    this.bytesSent = 0;
    this.peer = undefined;
    this.upstreamReused = undefined;
    this.attempts = 0;
    this.error = undefined;
    this.cacheStatus = undefined;
    this.#id = undefined;
    this.#givenId = request.headers['x-request-id'];
  }

  /** Request id: the client's `X-Request-Id` when it is well formed, else a generated one. */
  get id(): string {
    if (this.#id === undefined) {
      const given = this.#givenId;
      this.#id =
        typeof given === 'string' && VALID_REQUEST_ID.test(given)
          ? given
          : `${ID_PREFIX}-${(++idCounter).toString(36)}`;
    }
    return this.#id;
  }

  /** True if the method may be repeated safely (and so retried on a fresh connection). */
  get idempotent(): boolean {
    return IDEMPOTENT.has(this.method);
  }

  /** True once a response has started (headers sent) or the client is gone. */
  get responded(): boolean {
    return this.response.headersSent || this.aborted;
  }

  /**
   * Write a complete response from a hook. Sets `Content-Length`; sends no body to a HEAD request.
   */
  respond(status: number, headers: OutgoingHttpHeaders = {}, body: string | Buffer = ''): void {
    const res = this.response;
    if (res.headersSent || this.aborted) return;
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    headers['content-length'] = bytes.length;
    if (this.cacheStatus !== undefined && headers['cache-status'] === undefined)
      headers['cache-status'] = this.cacheStatus;
    res.writeHead(status, headers);
    this.status = status;
    if (this.method === 'HEAD' || status === 204 || status === 304) {
      res.end();
      return;
    }
    this.bytesSent += bytes.length;
    res.end(bytes);
  }
}
