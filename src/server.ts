/**
 * `serve(proxy, options)`: run a proxy — the downstream listener, the admin listener, limits,
 * graceful shutdown, and `workers > 1` as one process per core with `node:cluster`.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { CLUSTER_WORKER_ENV, relayPurgesAsPrimary } from '../cache/cluster-purge.ts';
import { AdminServer } from './admin.ts';
import { serveWorkerAdmin, WorkerAdminRelay } from './cluster-admin.ts';
import { Engine } from './engine.ts';
import { CairnError } from './errors.ts';
import type { LogLevel } from './logger.ts';
import { createLogger, flushLogger } from './logger.ts';
import { CairnMetrics } from './metrics.ts';
import type { ProxyHttp } from './proxy-http.ts';
import { CLIENT_HIGH_WATER_MARK, openListener } from './listeners.ts';
import type { Listener, ProtocolOptions } from './listeners.ts';
import { UpgradeHandler } from './upgrade.ts';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Limits on what a client may send, and how long connections live. */
export interface ServerLimits {
  /** Largest request head in bytes (request line + headers); larger gets 431. Default 16384. */
  readonly maxHeaderSize: number;
  /** Most request header fields; more gets 431. Default 100. */
  readonly maxHeadersCount: number;
  /** ms an idle keep-alive client connection is kept. Default 5000. */
  readonly keepAliveTimeout: number;
  /** ms to receive the request head. Default 10000. */
  readonly headersTimeout: number;
  /** ms to receive the whole request, body included (0 = no limit). Default 300000. */
  readonly requestTimeout: number;
  /** Requests served on one client connection before it is closed (0 = no limit). Default 0. */
  readonly maxRequestsPerSocket: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxHeaderSize: 16_384,
  maxHeadersCount: 100,
  keepAliveTimeout: 5000,
  headersTimeout: 10_000,
  requestTimeout: 300_000,
  maxRequestsPerSocket: 0,
};

export interface ServeOptions extends ProtocolOptions {
  /** Where to accept clients: `'host:port'` or `{ host, port }`. Default `127.0.0.1:8080`. */
  readonly listen?: string | ListenAddress;
  /** Admin listener (`/metrics`, `/healthz`, …): an address, or `false` for none. Default none. */
  readonly admin?: string | ListenAddress | false;
  /**
   * Processes to run (default 1: this one). With N > 1 this process becomes the cluster primary: it
   * forks N workers that re-run the same script (which must call `serve` again) and serves the
   * aggregated admin metrics itself.
   */
  readonly workers?: number;
  readonly logLevel?: LogLevel;
  /** A logger to use instead of a new stdout one. */
  readonly logger?: Logger;
  readonly limits?: Partial<ServerLimits>;
  /** ms to let in-flight requests finish on shutdown before connections are cut. Default 10000. */
  readonly shutdownTimeout?: number;
  /** Drain and exit on SIGTERM / SIGINT (default false; the CLI turns it on). */
  readonly signals?: boolean;
  /** Called once the admin listener exists, to add routes (purge, upstream API, …). */
  readonly adminRoutes?: (admin: AdminServer) => void;
  /**
   * Things that run beside the proxy in each serving process (health checkers, DNS watchers, a
   * proxy's own background work): started before the listener opens, stopped on `close()` after
   * in-flight requests ended. Not started in a `workers > 1` primary, which serves no requests.
   */
  readonly services?: readonly CairnService[];
}

/** What a service is given when it starts. */
export interface ServiceRuntime {
  /** The process's metrics (register per-service gauges here). */
  readonly metrics: CairnMetrics;
  readonly logger: Logger;
}

/**
 * Background work tied to a server's life (see `ServeOptions.services`).
 *
 * @example
 * ```ts
 * const proxy = new ReverseProxy({ upstream: { backends: ['127.0.0.1:3000'], health: { path: '/healthz' } } });
 * await serve(proxy, { services: [proxy] }); // its health checks run while the server does
 * ```
 */
export interface CairnService {
  start(runtime: ServiceRuntime): void | Promise<void>;
  stop(): void | Promise<void>;
}

/** A running proxy. */
export interface CairnServer {
  /** Where clients connect. */
  readonly address: ListenAddress;
  /** The admin listener's address, if any. */
  readonly adminAddress: ListenAddress | undefined;
  readonly metrics: CairnMetrics;
  readonly logger: Logger;
  /** Stop accepting, let in-flight requests finish (up to `shutdownTimeout`), close origin pools. */
  close(): Promise<void>;
}

/** Parse `host:port`, `[v6]:port` or `:port` (host 127.0.0.1). */
export function parseAddress(value: string | ListenAddress, what = 'listen'): ListenAddress {
  if (typeof value !== 'string') return value;
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || port > 65_535) {
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `${what}: expected host:port, got "${value}"`);
  }
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? '127.0.0.1' : host, port };
}

/**
 * Run `proxy` until `close()` (or a signal, with `signals: true`).
 *
 * @example
 * ```ts
 * const server = await serve(new ReverseProxy({ origin: 'http://127.0.0.1:3000' }), {
 *   listen: '127.0.0.1:8080',
 *   admin: '127.0.0.1:9090',
 * });
 * // … later
 * await server.close();
 * ```
 */
export async function serve<Ctx>(proxy: ProxyHttp<Ctx>, options: ServeOptions = {}): Promise<CairnServer> {
  const workers = options.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1) {
    throw new CairnError(
      'CAIRN_ERR_CONFIG_INVALID',
      `workers: must be a whole number >= 1 (got ${String(workers)})`,
    );
  }
  if (workers > 1 && cluster.isPrimary) return servePrimary(workers, options);
  return serveProcess(proxy, options);
}

async function serveProcess<Ctx>(proxy: ProxyHttp<Ctx>, options: ServeOptions): Promise<CairnServer> {
  const limits = resolveLimits(options.limits);
  const logger = options.logger ?? createLogger(options.logLevel ?? 'info');
  const metrics = new CairnMetrics();
  const engine = new Engine(proxy, metrics, logger, options.tls === undefined ? 'http' : 'https');
  const services = options.services ?? [];
  for (const service of services) await service.start({ metrics, logger });
  const listen = parseAddress(options.listen ?? '127.0.0.1:8080');
  // Node checks headersTimeout/requestTimeout only every connectionsCheckingInterval (30 s by
  // default), so a 10 s header deadline could let a slowloris client hold a socket for 40 s.
  const shortest =
    limits.requestTimeout > 0
      ? Math.min(limits.headersTimeout, limits.requestTimeout)
      : limits.headersTimeout;
  const server = createServer({
    maxHeaderSize: limits.maxHeaderSize,
    keepAliveTimeout: limits.keepAliveTimeout,
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(shortest / 4))),
    // Checked in screenRequest instead, so the refusal is counted and logged like the others.
    requireHostHeader: false,
    insecureHTTPParser: false,
    highWaterMark: CLIENT_HIGH_WATER_MARK,
  });
  // Node truncates headers past maxHeadersCount silently; allow one more so an overflow is seen
  // (and refused with 431) instead of being forwarded with fields missing.
  server.maxHeadersCount = limits.maxHeadersCount + 1;
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
  const maxFields = limits.maxHeadersCount * 2;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const socket = req.socket;
    // A request pipelined behind a refused one on the same connection is never proxied: the
    // connection closes after the refusal, and its framing can no longer be trusted.
    if (refusedSockets.has(socket)) return;
    // Node answers the last request allowed by maxRequestsPerSocket with `Connection: close` but
    // leaves the socket open until the keep-alive timeout (it does not mark the response last);
    // a response that must not keep the connection alive does both.
    if ((res as NodeServerResponse).maxRequestsOnConnectionReached === true) {
      res.shouldKeepAlive = false;
    }
    const status = req.rawHeaders.length > maxFields ? 431 : screenRequest(req);
    if (status !== 0) {
      refuse(socket, res, status, metrics, logger);
      return;
    }
    engine.handle(req, res);
  };
  server.on('request', onRequest);
  // With a listener here Node no longer answers `Expect: 100-continue` by itself: the engine sends
  // `100 Continue` only once the request phases have let the request through.
  server.on('checkContinue', onRequest);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    rejectClient(error, socket, metrics, logger);
  });
  // A reverse proxy does not tunnel (RFC 9110 §9.3.6): refuse CONNECT instead of dropping the socket.
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    metrics.rejected('bad_request');
    socket.on('error', destroySocket);
    socket.end('HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    socket.destroySoon();
  });
  // WebSocket and other protocol switches (src/upgrade.ts): screened like any request, then tunnelled.
  if (options.upgrade !== false) {
    const upgrades = new UpgradeHandler(engine, options.upgrade);
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      socket.on('error', destroySocket);
      const res = upgrades.response(req, socket);
      const status = req.rawHeaders.length > maxFields ? 431 : screenRequest(req);
      if (status !== 0) {
        refuse(socket, res, status, metrics, logger);
        return;
      }
      upgrades.handle(req, res, socket, head);
    });
  }

  let listener: Listener & { address: AddressInfo };
  try {
    // Plain HTTP/1.1 listens on `server` itself; TLS and h2c go through src/listeners.ts.
    listener = await openListener(server, {
      host: listen.host,
      port: listen.port,
      options,
      engine,
      maxHeaderSize: limits.maxHeaderSize,
      maxHeadersCount: limits.maxHeadersCount,
      keepAliveTimeout: limits.keepAliveTimeout,
      headersTimeout: limits.headersTimeout,
    });
  } catch (error) {
    for (const service of services) await service.stop();
    throw error;
  }
  const address = listener.address;
  const bound: ListenAddress = { host: address.address, port: address.port };

  let admin: AdminServer | undefined;
  let adminAddress: ListenAddress | undefined;
  let closeWorkerAdmin: (() => Promise<void>) | undefined;
  if (cluster.isWorker) {
    // The primary serves the admin listener and asks each worker for its metrics. prom-client
    // answers those requests only once an AggregatorRegistry has been made in the worker (its
    // constructor adds the message listener); without one, every scrape timed out with a 500.
    new AggregatorRegistry();
    AggregatorRegistry.setRegistries([metrics.registry]);
    // Routes whose state each worker holds (the upstream API) run here, forwarded by the primary.
    if (options.admin !== undefined && options.admin !== false && process.env[CLUSTER_WORKER_ENV] === '1') {
      const own = new AdminServer(
        () => metrics.registry.metrics(),
        () => !engine.draining,
        metrics.registry.contentType,
      );
      options.adminRoutes?.(own);
      if (own.hasEveryWorkerRoutes) closeWorkerAdmin = await serveWorkerAdmin(own, logger);
    }
  } else if (options.admin !== undefined && options.admin !== false) {
    admin = new AdminServer(
      () => metrics.registry.metrics(),
      () => !engine.draining,
      metrics.registry.contentType,
    );
    options.adminRoutes?.(admin);
    const where = parseAddress(options.admin, 'admin');
    const info = await admin.listen(where.host, where.port);
    adminAddress = { host: info.address, port: info.port };
  }
  logger.info({ listen: `${bound.host}:${bound.port}`, admin: adminAddress }, 'listening');
  const flusher = startFlushing(logger);

  const shutdownTimeout = options.shutdownTimeout ?? 10_000;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= shutdown(listener, engine, admin, logger, shutdownTimeout, services)
      .then(() => closeWorkerAdmin?.())
      .finally(() => clearInterval(flusher));
    return closing;
  };
  if (options.signals === true || cluster.isWorker) installSignals(close, logger);
  return { address: bound, adminAddress, metrics, logger, close };
}

async function shutdown<Ctx>(
  server: Listener,
  engine: Engine<Ctx>,
  admin: AdminServer | undefined,
  logger: Logger,
  timeout: number,
  services: readonly CairnService[] = [],
): Promise<void> {
  engine.draining = true;
  const closed = server.close();
  server.closeIdle();
  // Logged (and flushed at once) only now that the listener is closed: whoever reads 'draining'
  // can rely on new connections being refused.
  logger.info({ timeoutMs: timeout }, 'draining');
  flushQuietly(logger);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), timeout);
  });
  const timedOut = await Promise.race([closed.then(() => false), expired]);
  clearTimeout(timer);
  if (timedOut) {
    logger.warn('shutdown deadline passed: closing remaining connections');
    server.closeAll();
    await engine.pools.destroy();
  } else {
    await engine.pools.close();
  }
  for (const service of services) await service.stop();
  await admin?.close();
  logger.info('stopped');
  await flushLogger(logger);
}

function installSignals(close: () => Promise<void>, logger: Logger): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'signal received');
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

/** Set by Node (not in its types) on the response to the last request maxRequestsPerSocket allows. */
type NodeServerResponse = ServerResponse & { maxRequestsOnConnectionReached?: boolean };

/** Fill in defaults and check the limits Node would otherwise reject with a bare RangeError. */
function resolveLimits(given: Partial<ServerLimits> = {}): ServerLimits {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...given };
  // Node requires headersTimeout <= requestTimeout. A shorter requestTimeout alone lowers the
  // default header deadline with it; both given and inconsistent is a configuration error.
  if (limits.requestTimeout > 0 && limits.headersTimeout > limits.requestTimeout) {
    if (given.headersTimeout !== undefined) {
      throw new CairnError(
        'CAIRN_ERR_CONFIG_INVALID',
        `limits.headersTimeout: must be <= limits.requestTimeout (${limits.headersTimeout} > ${limits.requestTimeout})`,
      );
    }
    return { ...limits, headersTimeout: limits.requestTimeout };
  }
  return limits;
}

/** Flush buffered log lines every second, so a quiet proxy's lines do not wait for the next 4 KiB. */
function startFlushing(logger: Logger): NodeJS.Timeout {
  logger.flush();
  const timer = setInterval(flushQuietly, 1000, logger);
  timer.unref();
  return timer;
}

function flushQuietly(logger: Logger): void {
  try {
    logger.flush();
  } catch {
    // A destination that cannot flush (closed stdout) must not take the proxy down.
  }
}

// RFC 3986 §3.2.2 host (IP-literal or reg-name, percent-encoded allowed) and §3.2.3 port: what a
// Host field value (RFC 9110 §7.2) or an absolute-form authority may be. No userinfo.
const HOST_VALUE = /^(?:\[[0-9A-Za-z:._~%!$&'()*+,;=-]+\]|[0-9A-Za-z._~%!$&'()*+,;=-]*)(?::[0-9]*)?$/;
/** The last Host value that passed HOST_VALUE: most requests repeat it, and it stays valid. */
let lastGoodHost = '';
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^#]*)$/i;

/** Connections on which a request was refused: anything pipelined after it is dropped. */
const refusedSockets = new WeakSet<Socket>();

/**
 * What Node's parser lets through but a proxy must not forward, because the origin (or a cache)
 * could read the request differently from us. Returns the status to refuse with, or 0.
 * Rewrites an absolute-form target to origin-form, taking the authority as Host.
 */
function screenRequest(req: IncomingMessage): number {
  // RFC 9112 §2.3: this listener speaks HTTP/1.x. An HTTP/0.9 request line has no version: malformed.
  if (req.httpVersionMajor !== 1) return req.httpVersionMajor === 0 ? 400 : 505;
  const headers = req.headers;
  const te = headers['transfer-encoding'];
  if (te !== undefined) {
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing. Any coding list
    // other than a lone `chunked` (`identity, chunked`, `gzip` + `chunked`, …) is framing another
    // parser may read differently: refuse it rather than guess (the body is re-framed upstream anyway).
    if (req.httpVersionMinor === 0 || te.toLowerCase() !== 'chunked') return 400;
  }
  // RFC 9112 §3.2: 400 for more than one Host field line or an invalid Host value.
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++;
  }
  const host = headers.host;
  if (hosts > 1) return 400;
  if (host === undefined) {
    if (req.httpVersionMinor === 1) return 400;
  } else if (host !== lastGoodHost) {
    if (!HOST_VALUE.test(host)) return 400;
    lastGoodHost = host;
  }
  const target = req.url ?? '';
  if (target.charCodeAt(0) === 0x2f /* '/' */) return 0;
  // RFC 9112 §3.2.4: asterisk-form is for OPTIONS only.
  if (target === '*') return req.method === 'OPTIONS' ? 0 : 400;
  // RFC 9112 §3.2.2: a server must accept absolute-form, and then use its authority, not Host, so
  // the origin and the cache key see the same host.
  const match = ABSOLUTE_FORM.exec(target);
  const authority = match?.[1];
  if (match === null || authority === undefined || authority === '' || !HOST_VALUE.test(authority))
    return 400;
  const rest = match[2] ?? '';
  req.url = rest === '' ? '/' : rest.charCodeAt(0) === 0x3f /* '?' */ ? `/${rest}` : rest;
  headers.host = authority;
  return 0;
}

const REFUSAL_BODY: Readonly<Record<number, string>> = {
  400: '400 Bad Request\n',
  431: '431 Request Header Fields Too Large\n',
  505: '505 HTTP Version Not Supported\n',
};

/** Answer a parsed request that must not be proxied, and close its connection. */
function refuse(
  socket: Socket,
  res: ServerResponse,
  status: number,
  metrics: CairnMetrics,
  logger: Logger,
): void {
  refusedSockets.add(socket);
  metrics.rejected(status === 431 ? 'headers_too_large' : 'bad_request');
  if (logger.isLevelEnabled('info')) {
    logger.info({ status, client: socket.remoteAddress }, 'request rejected');
  }
  const body = REFUSAL_BODY[status] ?? `${status}\n`;
  res.shouldKeepAlive = false;
  res.writeHead(status, {
    'content-type': 'text/plain',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    connection: 'close',
  });
  res.end(body);
}

function destroySocket(this: Socket): void {
  this.destroy();
}

const CLIENT_ERROR_STATUS: Readonly<Record<string, number>> = {
  HPE_HEADER_OVERFLOW: 431,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
  HPE_HEADERS_TIMEOUT: 408,
};

/**
 * A request Node's parser refused (bad framing, bad headers, too large, too slow): answer with a
 * status and close, and forward nothing. Smuggling attempts (CL + TE, conflicting CL, bad chunk
 * sizes) all end here.
 */
function rejectClient(
  error: NodeJS.ErrnoException,
  socket: Socket,
  metrics: CairnMetrics,
  logger: Logger,
): void {
  const code = error.code ?? '';
  if (code === 'ECONNRESET' || code === 'EPIPE' || !socket.writable) {
    socket.destroy();
    return;
  }
  // Already refused (and counted) when it was parsed; its body turned out bad too. The refusal
  // is on its way out: just close once it is written.
  if (refusedSockets.has(socket)) {
    socket.destroySoon();
    return;
  }
  refusedSockets.add(socket);
  const status = CLIENT_ERROR_STATUS[code] ?? 400;
  metrics.rejected(status === 431 ? 'headers_too_large' : status === 408 ? 'timeout' : 'bad_request');
  if (logger.isLevelEnabled('info')) {
    logger.info({ err: code, status, client: socket.remoteAddress }, 'request rejected');
  }
  // A response already under way on this socket cannot be replaced: cut the connection.
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (inFlight !== undefined && inFlight !== null && inFlight.headersSent) {
    socket.destroy();
    return;
  }
  const reason =
    status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  // The head was good, so the engine may already be sending this request upstream while its body
  // turned out malformed (a bad chunk size in the same packet, a timeout mid-body). Abort the body
  // stream now, synchronously, so the origin gets nothing more (usually nothing at all) and sees
  // the request end abnormally, never complete. (This closes the socket once the reply is written
  // to it: Node destroys the connection of an aborted request.)
  const req = inFlight?.req;
  if (req !== undefined && !req.complete) req.destroy();
  else socket.destroySoon();
}

/** The cluster primary: forks workers, serves aggregated metrics, relays shutdown. */
async function servePrimary(count: number, options: ServeOptions): Promise<CairnServer> {
  const logger = options.logger ?? createLogger(options.logLevel ?? 'info');
  const metrics = new CairnMetrics();
  const aggregator = new AggregatorRegistry();
  const listen = parseAddress(options.listen ?? '127.0.0.1:8080');
  const workers: Worker[] = [];
  let stopping = false;
  // Each worker has its own memory tier: a purge one of them (or the admin API here) makes must
  // reach the others too.
  relayPurgesAsPrimary();
  // Made before the workers fork: each tells it where its private admin socket is as it starts.
  const adminRelay =
    options.admin !== undefined && options.admin !== false ? new WorkerAdminRelay(logger) : undefined;
  let bound: ListenAddress | undefined;
  const fork = (): Worker => {
    const worker = cluster.fork({ [CLUSTER_WORKER_ENV]: '1' });
    worker.on('exit', (code, signal) => {
      const index = workers.indexOf(worker);
      if (index >= 0) workers.splice(index, 1);
      if (!stopping) {
        logger.error({ workerPid: worker.process.pid, code, signal }, 'worker died: starting another');
        workers.push(fork());
      }
    });
    return worker;
  };
  for (let i = 0; i < count; i++) workers.push(fork());
  const listening = workers.map(async (worker) => {
    const [address] = (await once(worker, 'listening')) as [AddressInfo & { address: string | null }];
    bound ??= { host: address.address ?? listen.host, port: address.port };
  });
  await Promise.all(listening);
  let admin: AdminServer | undefined;
  let adminAddress: ListenAddress | undefined;
  if (options.admin !== undefined && options.admin !== false) {
    // Only the workers' metrics, summed: the primary serves no requests, and appending its own
    // registry would repeat every metric family, which Prometheus refuses to scrape.
    admin = new AdminServer(
      () => aggregator.clusterMetrics(),
      () => !stopping,
      aggregator.contentType,
    );
    options.adminRoutes?.(admin);
    if (adminRelay !== undefined && admin.hasEveryWorkerRoutes) admin.forwardEveryWorker(adminRelay.forward);
    const where = parseAddress(options.admin, 'admin');
    const info = await admin.listen(where.host, where.port);
    adminAddress = { host: info.address, port: info.port };
  }
  logger.info({ workers: count, listen: bound, admin: adminAddress }, 'cluster listening');
  const flusher = startFlushing(logger);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    clearInterval(flusher);
    closing ??= (async () => {
      stopping = true;
      const exits = workers.map((w) => once(w, 'exit'));
      for (const worker of workers) worker.process.kill('SIGTERM');
      await Promise.all(exits);
      await admin?.close();
      await flushLogger(logger);
    })();
    return closing;
  };
  if (options.signals === true) installSignals(close, logger);
  return { address: bound ?? listen, adminAddress, metrics, logger, close };
}
