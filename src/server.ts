/**
 * `serve(proxy, options)`: run a proxy — the downstream listener, the admin listener, limits,
 * graceful shutdown, and `workers > 1` as one process per core with `node:cluster`.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { AdminServer } from './admin.ts';
import { Engine } from './engine.ts';
import { CairnError } from './errors.ts';
import type { LogLevel } from './logger.ts';
import { createLogger, flushLogger } from './logger.ts';
import { CairnMetrics } from './metrics.ts';
import type { ProxyHttp } from './proxy-http.ts';

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

export interface ServeOptions {
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
    throw new CairnError('CAIRN_ERR_CONFIG_INVALID', `workers: must be a whole number >= 1 (got ${String(workers)})`);
  }
  if (workers > 1 && cluster.isPrimary) return servePrimary(workers, options);
  return serveProcess(proxy, options);
}

async function serveProcess<Ctx>(proxy: ProxyHttp<Ctx>, options: ServeOptions): Promise<CairnServer> {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const logger = options.logger ?? createLogger(options.logLevel ?? 'info');
  const metrics = new CairnMetrics();
  const engine = new Engine(proxy, metrics, logger, 'http');
  const listen = parseAddress(options.listen ?? '127.0.0.1:8080');
  const server = createServer({
    maxHeaderSize: limits.maxHeaderSize,
    keepAliveTimeout: limits.keepAliveTimeout,
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    requireHostHeader: true,
    insecureHTTPParser: false,
  });
  // Node truncates headers past maxHeadersCount silently; allow one more so an overflow is seen
  // (and refused with 431) instead of being forwarded with fields missing.
  server.maxHeadersCount = limits.maxHeadersCount + 1;
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
  const maxFields = limits.maxHeadersCount * 2;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.rawHeaders.length > maxFields) {
      metrics.rejected('headers_too_large');
      res.shouldKeepAlive = false;
      res.writeHead(431, { 'content-type': 'text/plain', connection: 'close' });
      res.end('431 Request Header Fields Too Large\n');
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

  await listenOn(server, listen);
  const address = server.address() as AddressInfo;
  const bound: ListenAddress = { host: address.address, port: address.port };

  let admin: AdminServer | undefined;
  let adminAddress: ListenAddress | undefined;
  if (cluster.isWorker) {
    // The primary serves the admin listener and asks each worker for its metrics.
    AggregatorRegistry.setRegistries([metrics.registry]);
  } else if (options.admin !== undefined && options.admin !== false) {
    admin = new AdminServer(() => metrics.registry.metrics(), () => !engine.draining, metrics.registry.contentType);
    options.adminRoutes?.(admin);
    const where = parseAddress(options.admin, 'admin');
    const info = await admin.listen(where.host, where.port);
    adminAddress = { host: info.address, port: info.port };
  }
  logger.info({ listen: `${bound.host}:${bound.port}`, admin: adminAddress }, 'listening');

  const shutdownTimeout = options.shutdownTimeout ?? 10_000;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= shutdown(server, engine, admin, logger, shutdownTimeout);
    return closing;
  };
  if (options.signals === true || cluster.isWorker) installSignals(close, logger);
  return { address: bound, adminAddress, metrics, logger, close };
}

async function shutdown<Ctx>(
  server: Server,
  engine: Engine<Ctx>,
  admin: AdminServer | undefined,
  logger: Logger,
  timeout: number,
): Promise<void> {
  logger.info({ timeoutMs: timeout }, 'draining');
  engine.draining = true;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), timeout);
  });
  const timedOut = await Promise.race([closed.then(() => false), expired]);
  clearTimeout(timer);
  if (timedOut) {
    logger.warn('shutdown deadline passed: closing remaining connections');
    server.closeAllConnections();
    await engine.pools.destroy();
  } else {
    await engine.pools.close();
  }
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
function rejectClient(error: NodeJS.ErrnoException, socket: Socket, metrics: CairnMetrics, logger: Logger): void {
  const code = error.code ?? '';
  if (code === 'ECONNRESET' || code === 'EPIPE' || !socket.writable) {
    socket.destroy();
    return;
  }
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
  const reason = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  socket.destroySoon();
}

function listenOn(server: Server, where: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(where.port, where.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** The cluster primary: forks workers, serves aggregated metrics, relays shutdown. */
async function servePrimary(count: number, options: ServeOptions): Promise<CairnServer> {
  const logger = options.logger ?? createLogger(options.logLevel ?? 'info');
  const metrics = new CairnMetrics();
  const aggregator = new AggregatorRegistry();
  const listen = parseAddress(options.listen ?? '127.0.0.1:8080');
  const workers: Worker[] = [];
  let stopping = false;
  let bound: ListenAddress | undefined;
  const fork = (): Worker => {
    const worker = cluster.fork({ CAIRN_WORKER: '1' });
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
    admin = new AdminServer(
      async () => {
        const own = await metrics.registry.metrics();
        const all = await aggregator.clusterMetrics();
        return `${all}\n${own}`;
      },
      () => !stopping,
      aggregator.contentType,
    );
    options.adminRoutes?.(admin);
    const where = parseAddress(options.admin, 'admin');
    const info = await admin.listen(where.host, where.port);
    adminAddress = { host: info.address, port: info.port };
  }
  logger.info({ workers: count, listen: bound, admin: adminAddress }, 'cluster listening');
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
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
