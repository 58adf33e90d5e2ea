/**
 * `Upgrade` requests over HTTP/1.1 (WebSocket, and any other protocol switch, RFC 9110 §7.8): the
 * request phases run as for any request (`earlyRequestFilter`, `requestFilter`, `proxyUpstreamFilter`,
 * `upstreamPeer`, `upstreamRequestFilter`), then the request goes to the origin with its `Upgrade`
 * and `Connection: upgrade`. Nothing the client sends after its request head reaches the origin
 * before the origin's `101`; then bytes flow both ways untouched until one side closes.
 *
 * - The origin's `101` passes `upstreamResponseFilter` and `responseFilter` (add or change headers);
 *   any other answer is forwarded as a normal response and the connection closed.
 * - A side that ends (FIN) is ended on the other side (half-close kept); a side that errors or
 *   resets destroys the other; a tunnel with no byte in either direction for `idleTimeout` ms is
 *   closed (`CAIRN_ERR_UPGRADE_IDLE_TIMEOUT`).
 * - `logging` runs once, when the tunnel (or the refused request) is over; `session.bytesSent`
 *   counts bytes sent to the client.
 */
import { request as httpRequest, ServerResponse } from 'node:http';
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
// Imported: the global `performance` is a lazy accessor on globalThis, a getter call per use.
import { performance } from 'node:perf_hooks';
import type { Engine } from './engine.ts';
import { CairnError } from './errors.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { hookError } from './http-task.ts';
import type { HttpPeer } from './peer.ts';
import type { ResponseHead, UpstreamRequest } from './proxy-http.ts';
import { Session } from './session.ts';
import { isThenable, runRequestFilters } from './request-phases.ts';
import { upstreamError } from './upstream-pool.ts';

/** Options for `Upgrade` tunnels (`serve({ upgrade: { … } })`). */
export interface UpgradeOptions {
  /** ms a tunnel may carry no byte in either direction before both sides are closed. Default 300000. */
  readonly idleTimeout: number;
}

export const DEFAULT_UPGRADE_OPTIONS: UpgradeOptions = { idleTimeout: 300_000 };

/**
 * Handles the HTTP/1.1 server's `upgrade` events for one engine.
 *
 * @example
 * ```ts
 * const upgrades = new UpgradeHandler(engine, { idleTimeout: 60_000 });
 * server.on('upgrade', (req, socket, head) => upgrades.handle(req, upgrades.response(req, socket), socket, head));
 * ```
 */
export class UpgradeHandler<Ctx> {
  readonly engine: Engine<Ctx>;
  readonly options: UpgradeOptions;

  constructor(engine: Engine<Ctx>, options: Partial<UpgradeOptions> = {}) {
    this.engine = engine;
    this.options = { ...DEFAULT_UPGRADE_OPTIONS, ...options };
    if (!Number.isFinite(this.options.idleTimeout) || this.options.idleTimeout <= 0) {
      throw new CairnError(
        'CAIRN_ERR_CONFIG_INVALID',
        `upgrade.idleTimeout: must be a positive number of ms (got ${String(this.options.idleTimeout)})`,
      );
    }
  }

  /**
   * A `ServerResponse` writing to the upgrade request's socket, so hooks (`session.respond`) and the
   * refusal path answer an upgrade request exactly like any other; the connection closes after it.
   */
  response(req: IncomingMessage, socket: Socket): ServerResponse {
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.once('finish', endSocketSoon);
    return res;
  }

  handle(req: IncomingMessage, res: ServerResponse, socket: Socket, head: Buffer): void {
    this.engine.metrics.requestStarted();
    const task = new UpgradeTask(this, req, res, socket, head);
    void task.run();
  }
}

function endSocketSoon(this: ServerResponse): void {
  this.socket?.destroySoon();
}

/** One upgrade request, from the phases to the end of its tunnel. */
class UpgradeTask<Ctx> {
  readonly handler: UpgradeHandler<Ctx>;
  readonly engine: Engine<Ctx>;
  readonly session: Session;
  readonly ctx: Ctx;
  readonly socket: Socket;
  /** Bytes the client sent after its request head; held until the origin's 101. */
  readonly head: Buffer;
  upstream: Socket | null;
  origin: ClientRequest | null;
  peer: HttpPeer | null;
  tunnelling: boolean;
  logged: boolean;

  constructor(
    handler: UpgradeHandler<Ctx>,
    req: IncomingMessage,
    res: ServerResponse,
    socket: Socket,
    head: Buffer,
  ) {
    this.handler = handler;
    this.engine = handler.engine;
    this.session = new Session(req, res, this.engine.scheme, performance.now(), this.engine.logger);
    this.ctx = this.engine.proxy.newCtx();
    this.socket = socket;
    this.head = head;
    this.upstream = null;
    this.origin = null;
    this.peer = null;
    this.tunnelling = false;
    this.logged = false;
    socket.on('error', this.onClientError.bind(this));
    socket.once('close', this.onClientClose.bind(this));
  }

  async run(): Promise<void> {
    const { proxy, plan } = this.engine;
    const session = this.session;
    try {
      let answered = runRequestFilters(this.engine, session, this.ctx);
      if (isThenable(answered)) answered = await answered;
      if (answered) return this.finishAnswered();
      if (plan.proxyUpstreamFilter) {
        let proceed = proxy.proxyUpstreamFilter(session, this.ctx);
        if (isThenable(proceed)) proceed = await proceed;
        if (!proceed) {
          if (!session.responded)
            throw new CairnError('CAIRN_ERR_INTERNAL', 'proxyUpstreamFilter declined without answering');
          return this.finishAnswered();
        }
      }
      if (session.aborted) return;
      session.attempts = 1;
      let peer = proxy.upstreamPeer(session, this.ctx);
      if (isThenable(peer)) peer = await peer;
      if (peer === undefined || peer === null)
        throw new CairnError('CAIRN_ERR_INTERNAL_NO_PEER', 'upstreamPeer returned no peer');
      this.peer = peer;
      session.peer = peer;
      const request = this.upstreamRequest(peer);
      if (plan.upstreamRequestFilter) {
        const r = proxy.upstreamRequestFilter(session, request, this.ctx);
        if (isThenable(r)) await r;
      }
      if (session.aborted) return;
      this.connect(peer, request);
    } catch (error) {
      await this.fail(hookError(error));
    }
  }

  /** The client's headers minus hop-by-hop fields, plus the ones that ask the origin to switch. */
  upstreamRequest(peer: HttpPeer): UpstreamRequest {
    const session = this.session;
    const { proxy } = this.engine;
    const headers = upstreamRequestHeaders(
      session.request.headers,
      session.clientAddress,
      session.scheme,
      proxy.forwarding,
    );
    headers.connection = 'upgrade';
    headers.upgrade = session.request.headers.upgrade ?? '';
    const hostMode = peer.hostHeader;
    if (hostMode === 'peer')
      headers.host = peer.port === (peer.tls ? 443 : 80) ? peer.hostname : peer.address;
    else if (hostMode !== 'keep') headers.host = hostMode;
    return { method: session.method, path: session.path, headers };
  }

  connect(peer: HttpPeer, request: UpstreamRequest): void {
    const tls = peer.tlsOptions;
    const make = peer.tls ? httpsRequest : httpRequest;
    const origin = make({
      host: peer.hostname,
      port: peer.port,
      method: request.method,
      path: request.path,
      headers: request.headers as OutgoingHttpHeaders,
      agent: false,
      ...(peer.tls
        ? {
            servername: peer.sni ?? (isIP(peer.hostname) === 0 ? peer.hostname : undefined),
            rejectUnauthorized: tls?.rejectUnauthorized ?? true,
            ...(tls?.ca === undefined ? {} : { ca: tls.ca as string | Buffer | (string | Buffer)[] }),
            ...(tls?.cert === undefined ? {} : { cert: tls.cert }),
            ...(tls?.key === undefined ? {} : { key: tls.key }),
          }
        : {}),
    });
    this.origin = origin;
    // One deadline for connect + response head: the peer's connect timeout, then its headers timeout.
    origin.setTimeout(peer.connectTimeout + peer.headersTimeout);
    origin.once('timeout', () =>
      origin.destroy(
        Object.assign(new Error('upgrade: origin timed out'), { code: 'UND_ERR_HEADERS_TIMEOUT' }),
      ),
    );
    origin.once('upgrade', (res: IncomingMessage, upstream: Socket, head: Buffer) =>
      this.onUpgrade(res, upstream, head),
    );
    origin.once('response', (res: IncomingMessage) => this.onRefused(res));
    origin.once('error', (error: Error) => this.onOriginError(error));
    origin.end();
  }

  /** The origin switched protocols: send its 101, then join the two sockets. */
  onUpgrade(res: IncomingMessage, upstream: Socket, upstreamHead: Buffer): void {
    const session = this.session;
    this.upstream = upstream;
    this.engine.metrics.upstreamAttempt('response');
    upstream.setTimeout(0);
    if (session.aborted) {
      upstream.destroy();
      return;
    }
    const headHead: ResponseHead = { status: res.statusCode ?? 101, headers: { ...res.headers } };
    const next = this.filterHead(headHead);
    if (isThenable(next)) {
      next.then(
        () => this.tunnel(headHead, upstream, upstreamHead),
        (error: unknown) => this.abortTunnel(hookError(error)),
      );
      return;
    }
    this.tunnel(headHead, upstream, upstreamHead);
  }

  filterHead(head: ResponseHead): void | Promise<void> {
    const { proxy, plan } = this.engine;
    const session = this.session;
    if (plan.upstreamResponseFilter) {
      const r = proxy.upstreamResponseFilter(session, head, this.ctx);
      if (isThenable(r)) {
        return r.then(() => {
          if (plan.responseFilter) return proxy.responseFilter(session, head, this.ctx);
          return undefined;
        });
      }
    }
    if (plan.responseFilter) return proxy.responseFilter(session, head, this.ctx);
    return undefined;
  }

  tunnel(head: ResponseHead, upstream: Socket, upstreamHead: Buffer): void {
    const session = this.session;
    const client = this.socket;
    if (session.aborted || client.destroyed) {
      upstream.destroy();
      return;
    }
    this.tunnelling = true;
    session.status = head.status;
    // The ServerResponse stands aside: from here on the socket carries the new protocol.
    session.response.detachSocket(client);
    session.response.off('finish', endSocketSoon);
    let text = `HTTP/1.1 ${head.status} Switching Protocols\r\n`;
    for (const name in head.headers) {
      const value = head.headers[name];
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) text += `${name}: ${v}\r\n`;
      else text += `${name}: ${value}\r\n`;
    }
    text += '\r\n';
    client.write(text);
    if (upstreamHead.length > 0) {
      session.bytesSent += upstreamHead.length;
      client.write(upstreamHead);
    }
    // Only now may the client's own bytes go to the origin.
    if (this.head.length > 0) upstream.write(this.head);
    const idle = this.handler.options.idleTimeout;
    client.setTimeout(idle);
    upstream.setTimeout(idle);
    client.on('timeout', this.onIdle.bind(this));
    upstream.on('timeout', this.onIdle.bind(this));
    upstream.on('error', this.onUpstreamError.bind(this));
    upstream.once('close', this.onUpstreamClose.bind(this));
    upstream.on('data', this.countSent.bind(this));
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  countSent(chunk: Buffer): void {
    this.session.bytesSent += chunk.length;
  }

  /** The origin did not switch: forward its answer as a normal response, then close. */
  onRefused(res: IncomingMessage): void {
    const session = this.session;
    this.engine.metrics.upstreamAttempt('response');
    const head: ResponseHead = { status: res.statusCode ?? 502, headers: { ...res.headers } };
    delete head.headers.connection;
    delete head.headers['keep-alive'];
    delete head.headers.upgrade;
    delete head.headers['transfer-encoding'];
    const next = this.filterHead(head);
    const send = (): void => {
      if (session.aborted) {
        res.destroy();
        return;
      }
      const out = session.response;
      session.status = head.status;
      out.writeHead(head.status, res.statusMessage, head.headers as OutgoingHttpHeaders);
      res.on('data', (chunk: Buffer) => {
        session.bytesSent += chunk.length;
        out.write(chunk);
      });
      res.once('end', () => out.end());
      res.once('error', () => out.destroy());
    };
    if (isThenable(next)) next.then(send, (error: unknown) => void this.fail(hookError(error)));
    else send();
  }

  onOriginError(error: Error): void {
    if (this.tunnelling) return;
    const peer = this.peer;
    if (peer === null) return;
    const cairnError = upstreamError(error, this.origin?.socket?.readyState === 'open', peer);
    this.engine.metrics.upstreamAttempt(
      cairnError.code === 'CAIRN_ERR_UPSTREAM_CONNECT' ? 'connect_error' : 'error',
    );
    void this.fail(cairnError);
  }

  onUpstreamError(error: Error): void {
    const peer = this.peer;
    this.session.error ??= peer === null ? hookError(error) : upstreamError(error, true, peer);
    this.socket.destroy();
  }

  onUpstreamClose(): void {
    // The origin is gone: whatever the client still sends has nowhere to go.
    if (!this.socket.destroyed && this.socket.writableEnded === false) this.socket.end();
    this.socket.destroySoon();
  }

  onClientError(error: Error): void {
    this.session.error ??= new CairnError(
      'CAIRN_ERR_DOWNSTREAM_CLOSED',
      `client connection failed: ${error.message}`,
      { cause: error },
    );
    this.upstream?.destroy();
    this.origin?.destroy();
  }

  onClientClose(): void {
    const session = this.session;
    if (!this.tunnelling && !session.response.writableFinished) {
      session.aborted = true;
      session.error ??= new CairnError(
        'CAIRN_ERR_DOWNSTREAM_CLOSED',
        'client closed the connection before the upgrade',
      );
      this.origin?.destroy();
    }
    const upstream = this.upstream;
    if (upstream !== null && !upstream.destroyed) {
      // Let what the client sent before its FIN reach the origin, then close.
      upstream.end();
      upstream.destroySoon();
    }
    this.log();
  }

  onIdle(): void {
    this.session.error ??= new CairnError(
      'CAIRN_ERR_UPGRADE_IDLE_TIMEOUT',
      `tunnel idle for ${this.handler.options.idleTimeout} ms`,
    );
    this.upstream?.destroy();
    this.socket.destroy();
  }

  abortTunnel(error: CairnError): void {
    this.upstream?.destroy();
    void this.fail(error);
  }

  finishAnswered(): void {
    // The hook answered (e.g. 401); the response's 'finish' closes the socket.
    if (!this.session.responded) this.socket.destroy();
  }

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
    if (!session.response.headersSent) this.socket.destroy();
  }

  log(): void {
    if (this.logged) return;
    this.logged = true;
    const { engine, session } = this;
    engine.metrics.requestDone(session.status, (performance.now() - session.startedAt) / 1000);
    if (!engine.plan.logging && !engine.accessLog) return;
    try {
      const r = engine.proxy.logging(session, session.error, this.ctx);
      if (isThenable(r))
        r.catch((error: unknown) => engine.logger.error({ err: hookError(error) }, 'logging hook failed'));
    } catch (error) {
      engine.logger.error({ err: hookError(error) }, 'logging hook failed');
    }
  }
}
